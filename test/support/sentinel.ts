/**
 * A sentinel tree outside a root: shaped like what cpm's directories hold (bin/hello, hello.conf,
 * lib/cpm/installed, stage/…), so a write that escapes the root lands on a name that is there,
 * and compared byte for byte before and after an operation.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Names, types, modes, sizes, link targets and content hashes of everything under `dir`. */
export function sentinelSnapshot(dir: string): string {
  return execFileSync(
    'sh',
    [
      '-c',
      `cd "$1" && find . -printf '%p %y %m %s %U:%G %l\\n' | LC_ALL=C sort && find . -type f -exec sha256sum {} + | LC_ALL=C sort`,
      'sh',
      dir,
    ],
    { encoding: 'utf8' },
  );
}

/** A tree outside the root shaped like what the swapped directories hold, so a write shows. */
export function makeSentinel(dir: string, dbText: string): void {
  const files: Record<string, string> = {
    'bin/hello': 'outside hello\n',
    'lib/hello/data': 'outside data',
    'lib/hello/state': 'outside state',
    'hello/state': 'outside state',
    'hello.conf': 'outside conf\n',
    'hello.conf.cpmsave': 'outside save\n',
    'lib/cpm/installed': dbText,
    installed: dbText,
    'stage/f0': 'outside stage',
    'bk-0': 'outside backup',
    keep: 'keep',
  };
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), content, { mode: 0o640 });
  }
  symlinkSync('bin/hello', path.join(dir, 'link'));
}
