/**
 * Xattrs of directory entries reach the disk, as files' do: a real GNU tar layer
 * (`--xattrs --format=posix`) made from directories on tmpfs, installed into a root on tmpfs; a
 * later package changing the xattrs of a directory that exists; a value the filesystem refuses
 * for its size; and a directory entry reached through a symlink of the layer, which gets its
 * xattrs inside the root and never outside.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { installPackages } from '../../src/rootfs/index.js';
import { listInstalled } from '../../src/upkeep/query.js';
import { silentReporter } from '../../src/util/progress.js';
import { failure, rawLayer, step, tmpDir } from '../install/helpers.js';
import { hasAttrTools, noXattrTmpfs, shmDir, xattrLayer } from '../support/tmpfs.js';

const skipReason = noXattrTmpfs();

/** The xattrs of `p` itself (not below it), name → value. */
function xattrsOf(p: string): Record<string, string> {
  const dump = execFileSync(
    'getfattr',
    ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', p],
    {
      encoding: 'utf8',
    },
  );
  const out: Record<string, string> = {};
  for (const line of dump.split('\n')) {
    if (!line.includes('=0x')) continue;
    const [k, v] = line.split('=0x') as [string, string];
    out[k] = Buffer.from(v, 'hex').toString();
  }
  return out;
}

const recordOf = (root: string, id: string, p: string) =>
  listInstalled({ root })
    .find((x) => x.id === id)!
    .files.find((f) => f.path === p);

describe('xattrs of directory entries', () => {
  it.skipIf(skipReason !== undefined)(
    `a GNU tar layer's directory xattrs are set, on new and on existing directories (${skipReason ?? 'tmpfs'})`,
    async () => {
      const src = shmDir('cpm-dirx-src-');
      mkdirSync(path.join(src, 'opt/app/share'), { recursive: true });
      writeFileSync(path.join(src, 'opt/app/share/f'), 'f');
      const layer = xattrLayer(
        src,
        'opt',
        {
          'opt/app': { 'user.dir': 'app dir', 'user.big': 'b'.repeat(3000) },
          'opt/app/share': { 'user.share': 'share' },
          'opt/app/share/f': { 'user.file': 'file' },
        },
        ['--format=posix'],
      );

      const root = shmDir('cpm-dirx-root-');
      // a directory already there (no package's): the second package's entry changes it
      mkdirSync(path.join(root, 'srv'));
      const rep = silentReporter();
      await installPackages(root, [step('app/dirs@1', [layer])], { reporter: rep });
      expect(rep.warnings).toEqual([]);
      expect(xattrsOf(path.join(root, 'opt/app'))).toEqual({
        'user.big': 'b'.repeat(3000),
        'user.dir': 'app dir',
      });
      expect(xattrsOf(path.join(root, 'opt/app/share'))).toEqual({ 'user.share': 'share' });
      expect(xattrsOf(path.join(root, 'opt/app/share/f'))).toEqual({ 'user.file': 'file' });
      expect(recordOf(root, 'app/dirs@1', 'opt/app')?.xattrs).toEqual({
        'user.big': 'b'.repeat(3000),
        'user.dir': 'app dir',
      });

      // a later package with the same directories: its values are set on the existing ones,
      // and its record says what it set
      const later = await rawLayer([
        { name: 'opt/app/', type: 'directory', pax: { 'SCHILY.xattr.user.dir': 'changed' } },
        { name: 'srv/', type: 'directory', pax: { 'SCHILY.xattr.user.srv': 'srv' } },
      ]);
      const rep2 = silentReporter();
      await installPackages(root, [step('app/later@1', [later])], { reporter: rep2 });
      expect(rep2.warnings).toEqual([]);
      expect(xattrsOf(path.join(root, 'opt/app'))).toEqual({
        'user.big': 'b'.repeat(3000),
        'user.dir': 'changed',
      });
      expect(xattrsOf(path.join(root, 'srv'))).toEqual({ 'user.srv': 'srv' });
      expect(recordOf(root, 'app/later@1', 'opt/app')?.xattrs).toEqual({ 'user.dir': 'changed' });
      expect(recordOf(root, 'app/later@1', 'srv')?.xattrs).toEqual({ 'user.srv': 'srv' });
      expect(existsSync(path.join(root, '.cpm-tx'))).toBe(false);
    },
    60_000,
  );

  it.skipIf(skipReason !== undefined)(
    'a directory entry reached through a symlink of the layer gets its xattrs inside the root only',
    async () => {
      const outside = shmDir('cpm-dirx-outside-');
      const root = shmDir('cpm-dirx-esc-root-');
      const layer = await rawLayer([
        { name: 'esc', type: 'symlink', linkname: outside },
        { name: 'esc/d/', type: 'directory', pax: { 'SCHILY.xattr.user.esc': 'abs' } },
      ]);
      const rep = silentReporter();
      await installPackages(root, [step('evil/dirs@1', [layer])], { reporter: rep });
      // nothing outside: no directory made there, no xattr on it
      expect(existsSync(path.join(outside, 'd'))).toBe(false);
      expect(xattrsOf(outside)).toEqual({});
      // the absolute link resolves inside the root, where the directory got them
      expect(xattrsOf(path.join(root, outside.slice(1), 'd'))).toEqual({ 'user.esc': 'abs' });

      // a symlink already on disk in the root: the same, resolved inside the root
      const root3 = shmDir('cpm-dirx-esc-root3-');
      symlinkSync(outside, path.join(root3, 'srv'));
      const viaDisk = await rawLayer([
        { name: 'srv/x/', type: 'directory', pax: { 'SCHILY.xattr.user.x': 'disk' } },
      ]);
      await installPackages(root3, [step('evil/disk@1', [viaDisk])]);
      expect(existsSync(path.join(outside, 'x'))).toBe(false);
      expect(xattrsOf(path.join(root3, outside.slice(1), 'x'))).toEqual({ 'user.x': 'disk' });

      // a relative link above the root: the layer is refused, nothing gets the xattrs
      const root2 = shmDir('cpm-dirx-esc-root2-');
      const up = await rawLayer([
        { name: 'up', type: 'symlink', linkname: '../../../../..' },
        { name: 'up/', type: 'directory', pax: { 'SCHILY.xattr.user.up': 'rel' } },
      ]);
      const err = await failure(installPackages(root2, [step('evil/up@1', [up])]));
      expect(err.code).toBe('E_UNSAFE_ENTRY');
      expect(xattrsOf(path.dirname(root2))).toEqual({});
      expect(existsSync(path.join(root2, 'up'))).toBe(false);
    },
  );

  it.skipIf(!hasAttrTools)(
    "a directory's value the filesystem refuses fails the install naming package, layer and path",
    async () => {
      const layer = await rawLayer([
        { name: 'etc/ok', content: 'ok' },
        {
          name: 'usr/share/big/',
          type: 'directory',
          pax: { 'SCHILY.xattr.user.huge': 'h'.repeat(70000) },
        },
      ]);
      const root = tmpDir('cpm-dirx-refused-');
      const err = await failure(installPackages(root, [step('app/bigdir@1', [layer])]));
      expect(err).toMatchObject({
        code: 'E_IO',
        context: { package: 'app/bigdir@1', digest: layer.digest, path: 'usr/share/big' },
      });
      expect(err.message).toContain(`/usr/share/big from layer ${layer.digest} of app/bigdir@1`);
      expect(err.message).toContain('user.huge (70000 bytes)');
      expect(existsSync(path.join(root, 'usr'))).toBe(false);
      expect(existsSync(path.join(root, 'etc/ok'))).toBe(false);
      expect(existsSync(path.join(root, '.cpm-tx'))).toBe(false);
    },
  );
});
