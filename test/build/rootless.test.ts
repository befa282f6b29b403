/**
 * `cpm build` run by an ordinary user (nobody, through setpriv): the steps run in a user
 * namespace where that user is root, the roots are copies (no overlay without root), and the
 * package's files are owned by 0:0 in the image, as a root build writes them. Then root installs
 * the result from the dir:// output and finds the files and their owners. Needs root (to drop to
 * nobody), setpriv, and unprivileged user namespaces; skipped with the reason otherwise.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tmpDir } from '../install/helpers.js';
import { CPM_BIN, requireBuild, runCpm } from '../support/cli.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';
import { hostToolsRoot, pushRoot, writeFiles } from './fixtures.js';

const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

/** Why an unprivileged build cannot be tried here, or '' when it can. */
function cannotDrop(): string {
  if (process.getuid?.() !== 0) return 'not running as root (nothing to drop from)';
  const r = spawnSync(NOBODY[0]!, [...NOBODY.slice(1), 'unshare', '--user', 'true']);
  if (r.error) return `setpriv: ${r.error.message}`;
  if (r.status !== 0) return 'unprivileged user namespaces are off on this kernel';
  return '';
}
const why = cannotDrop();
if (why) console.warn(`skipping the rootless build test: ${why}`);

let reg: RegistryInstance;
let work: string;

/** Every directory under `dir` writable by nobody (the test's files are made by root). */
function openUp(dir: string): void {
  chmodSync(dir, 0o777);
  for (const e of readdirSync(dir, { withFileTypes: true }))
    if (e.isDirectory()) openUp(path.join(dir, e.name));
}

beforeAll(async () => {
  if (why) return;
  requireBuild();
  reg = await startRegistry();
  work = tmpDir('cpm-build-rootless-');
  const base = pushRoot(hostToolsRoot(path.join(work, 'tools-root')), work, reg.host, 'b/t', '1');
  writeFiles(path.join(work, 'tree'), {
    'apps/hi/definition.yaml': 'category: apps\nname: hi\nversion: "1.0"\n',
    'apps/hi/build.yaml': [
      `image: ${base}`,
      'steps:',
      '- mkdir -p /usr/share/hi && cat note.txt > /usr/share/hi/note && chmod 0640 /usr/share/hi/note',
      '',
    ].join('\n'),
    'apps/hi/note.txt': 'built without root\n',
  });
  writeFileSync(path.join(work, 'cpm.yaml'), `cache_dir: ${path.join(work, 'cache')}\n`);
  openUp(work);
});
afterAll(async () => {
  await reg?.stop();
});

describe.skipIf(why !== '')('cpm build as an ordinary user', () => {
  it('builds in a user namespace, writes 0:0 entries, and root installs the result', () => {
    const env = { ...process.env, CPM_CONFIG: path.join(work, 'cpm.yaml'), HOME: work };
    const out = `dir://${path.join(work, 'repo')}`;
    const b = spawnSync(
      NOBODY[0]!,
      [...NOBODY.slice(1), process.execPath, CPM_BIN, 'build', '--tree', 'tree', '--output', out],
      { cwd: work, env, encoding: 'utf8' },
    );
    expect(b.status, `${b.stdout}\n${b.stderr}`).toBe(0);
    const log = readFileSync(path.join(work, 'repo/build-logs/apps_hi_1.0.log'), 'utf8');
    expect(log).toContain('build root (image) ready'); // a copy: overlays need root
    expect(log).not.toContain('overlay');
    // the output belongs to the user who built it
    expect(lstatSync(path.join(work, 'repo')).uid).toBe(65534);
    return runCpm(['install', 'apps/hi', '--repo', out, '--root', path.join(work, 'root'), '-y'], {
      env: { ...env, HOME: process.env.HOME },
    }).then((i) => {
      expect(i.code, i.err).toBe(0);
      const note = path.join(work, 'root/usr/share/hi/note');
      expect(readFileSync(note, 'utf8')).toBe('built without root\n');
      const st = lstatSync(note);
      expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([0, 0, 0o640]);
      expect(lstatSync(path.dirname(note)).uid).toBe(0);
    });
  });
});
