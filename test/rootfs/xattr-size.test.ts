/**
 * Xattr values of every size Linux takes (up to 64 KiB each), and many of them, reach the disk:
 * a real GNU tar layer (`--xattrs`) made from files on tmpfs, installed into a root on tmpfs (the
 * values went to the helper as hex arguments before, and one 64 KiB value alone exceeded the
 * 128 KiB limit of an argument: E2BIG failed the install). A value the filesystem refuses is an
 * error naming package, layer and path, and the root is left as it was.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { installPackages } from '../../src/rootfs/index.js';
import { listInstalled } from '../../src/upkeep/query.js';
import { silentReporter } from '../../src/util/progress.js';
import { failure, rawLayer, step, tmpDir } from '../install/helpers.js';
import { hasAttrTools, noXattrTmpfs, shmDir, xattrLayer } from '../support/tmpfs.js';

const skipReason = noXattrTmpfs();

/** A value of `n` printable bytes (the same text GNU tar and getfattr hand back). */
const text = (n: number, seed: string): string =>
  seed.repeat(Math.ceil(n / seed.length)).slice(0, n);

/** Every xattr below `dir`, as getfattr dumps them (one process): "rel name" → value. */
function xattrsBelow(dir: string): Map<string, string> {
  const dump = execFileSync(
    'getfattr',
    ['-h', '-R', '-d', '-m', '-', '-e', 'hex', '--absolute-names', dir],
    { encoding: 'utf8', maxBuffer: 64 << 20 },
  );
  const out = new Map<string, string>();
  let file = '';
  for (const line of dump.split('\n')) {
    if (line.startsWith('# file: ')) file = path.relative(dir, line.slice(8));
    else if (line.includes('=0x')) {
      const [k, v] = line.split('=0x') as [string, string];
      out.set(`${file} ${k}`, Buffer.from(v, 'hex').toString());
    }
  }
  return out;
}

describe('xattr values of any size the filesystem accepts', () => {
  it.skipIf(skipReason !== undefined)(
    `64 KiB values and 4 MiB of values in one layer are set (${skipReason ?? 'tmpfs'})`,
    async () => {
      // the payload, with real xattrs on tmpfs, tarred by GNU tar
      const src = shmDir('cpm-xattr-src-');
      const want: Record<string, Record<string, string>> = {
        'usr/bin/big': {
          'user.max': text(65536, 'max-'),
          'trusted.acl': text(60000, 'acl:'),
        },
      };
      for (let i = 0; i < 300; i++)
        want[`usr/share/acl/f${i}`] = { 'user.acl': text(14000, `a${i}-`) };
      for (const rel of Object.keys(want)) {
        mkdirSync(path.join(src, path.dirname(rel)), { recursive: true });
        writeFileSync(path.join(src, rel), rel);
      }
      const layer = xattrLayer(src, 'usr', want);

      const root = shmDir('cpm-xattr-root-');
      const rep = silentReporter();
      await installPackages(root, [step('app/acl@1', [layer])], { reporter: rep });
      expect(rep.warnings).toEqual([]);
      const have = xattrsBelow(root);
      for (const [rel, attrs] of Object.entries(want))
        for (const [k, v] of Object.entries(attrs)) expect(have.get(`${rel} ${k}`)).toBe(v);
      const rec = listInstalled({ root })[0]!.files.find((f) => f.path === 'usr/bin/big')!;
      expect(rec.xattrs).toEqual(want['usr/bin/big']);
    },
    60_000,
  );

  it.skipIf(!hasAttrTools)(
    'a value the filesystem refuses fails the install naming package, layer and path',
    async () => {
      // more than 64 KiB: no Linux filesystem takes it (E2BIG from the kernel)
      const layer = await rawLayer([
        { name: 'etc/ok', content: 'ok', pax: { 'SCHILY.xattr.user.small': 'fine' } },
        { name: 'usr/lib/huge', content: 'x', pax: { 'SCHILY.xattr.user.huge': text(70000, 'h') } },
      ]);
      const root = tmpDir('cpm-xattr-refused-');
      const err = await failure(installPackages(root, [step('app/huge@2', [layer])]));
      expect(err).toMatchObject({
        code: 'E_IO',
        context: { package: 'app/huge@2', digest: layer.digest, path: 'usr/lib/huge' },
      });
      expect(err.message).toContain(`/usr/lib/huge from layer ${layer.digest} of app/huge@2`);
      expect(err.message).toContain('user.huge (70000 bytes)');
      expect(err.hint).toMatch(/64 KiB/);
      // nothing of the package, no DB, no stage
      expect(existsSync(path.join(root, 'etc/ok'))).toBe(false);
      expect(existsSync(path.join(root, 'var/lib/cpm/installed'))).toBe(false);
      expect(existsSync(path.join(root, '.cpm-tx'))).toBe(false);
    },
  );

  // ext4 without ea_inode keeps a file's xattrs within one block: a 16 KiB value does not fit
  const ext4Refuses = ((): boolean => {
    if (!hasAttrTools) return false;
    const d = tmpDir('cpm-xattr-probe-');
    writeFileSync(path.join(d, 'f'), '');
    return (
      spawnSync('setfattr', ['-n', 'user.probe', '-v', `0x${'41'.repeat(16384)}`, 'f'], {
        cwd: d,
      }).status !== 0
    );
  })();
  it.skipIf(!ext4Refuses)(
    'a value too large for the filesystem of the root (ext4 without ea_inode) is an error too',
    async () => {
      const layer = await rawLayer([
        { name: 'usr/bin/tool', content: 't', pax: { 'SCHILY.xattr.user.acl': text(16384, 'v') } },
      ]);
      const root = tmpDir('cpm-xattr-ext4-');
      const err = await failure(installPackages(root, [step('app/tool@1', [layer])]));
      expect(err).toMatchObject({
        code: 'E_IO',
        context: { package: 'app/tool@1', digest: layer.digest, path: 'usr/bin/tool' },
      });
      expect(err.message).toMatch(/refuses them \(No space left on device\)/);
      expect(err.hint).toMatch(/ea_inode/);
      expect(existsSync(path.join(root, 'usr/bin/tool'))).toBe(false);
    },
  );
});
