/**
 * A small root as an unprivileged install leaves it (everything owned by the installing user,
 * device nodes only recorded), plus the overlay the installer DB would supply for it, plus the
 * listing a correct image must show. Shared by the tar and squashfs tests.
 */
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import {
  makeDev,
  tableOverlay,
  type EntryMeta,
  type MetadataOverlay,
} from '../../src/image/meta.js';

export const EPOCH = 1_700_000_000;
/** The uid/gid the files have on disk (as root we chown to it to mimic a user install). */
export const USER_ID = 12345;

export interface Expected {
  type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'hardlink';
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  linkTarget?: string;
  dev?: [number, number];
}

const LONG =
  'a-rather-long-directory-name-that-goes-on/'.repeat(3) + 'and-a-file-name-past-100-bytes.txt';

export interface Fixture {
  root: string;
  overlay: MetadataOverlay;
  overlayPaths: string[];
  /** Every path the image must contain (excluding the root itself), with its attributes. */
  expected: Map<string, Expected>;
  excludes: string[];
}

export async function makeFixture(dir: string): Promise<Fixture> {
  const root = path.join(dir, 'root');
  const w = async (rel: string, data: string | Buffer, mode = 0o644): Promise<void> => {
    await fsp.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await fsp.writeFile(path.join(root, rel), data);
    await fsp.chmod(path.join(root, rel), mode);
  };
  await fsp.mkdir(root, { recursive: true });
  await w('etc/hostname', 'cpm\n');
  await w('etc/shadow', 'root:*:19000:0:99999:7:::\n', 0o600);
  await w('usr/bin/sudo', Buffer.alloc(70_000, 7), 0o755);
  await w('usr/bin/tool', '#!/bin/sh\necho tool\n', 0o755);
  await fsp.link(path.join(root, 'usr/bin/tool'), path.join(root, 'usr/bin/tool-alias'));
  await fsp.symlink('../usr/bin/tool', path.join(root, 'etc/tool-link'));
  await w('usr/share/é ü/name with spaces', 'x');
  await w(LONG, 'long');
  await fsp.mkdir(path.join(root, 'home/user'), { recursive: true });
  await fsp.mkdir(path.join(root, 'dev'), { recursive: true });
  // Unprivileged installs leave an empty placeholder where they could not mknod.
  await w('dev/console', '', 0o600);
  spawnSync('mkfifo', [path.join(root, 'run-fifo')]);
  await w('proc/1/status', 'excluded');
  await w('var/cache/big.bin', Buffer.alloc(10_000, 1));
  // Directory modes last (a 0o700 dir must still be writable while we fill it — we are done).
  for (const d of [
    'etc',
    'usr',
    'usr/bin',
    'usr/share',
    'usr/share/é ü',
    'home',
    'dev',
    'proc',
    'var',
  ]) {
    await fsp.chmod(path.join(root, d), 0o755);
  }
  await fsp.chmod(path.join(root, 'home/user'), 0o700);
  // Old mtimes stay, new ones are clamped to EPOCH.
  await fsp.utimes(path.join(root, 'etc/hostname'), 1_000_000_000, 1_000_000_000);
  if (process.getuid?.() === 0) {
    spawnSync('chown', ['-hR', `${USER_ID}:${USER_ID}`, root]);
  }

  const records: Record<string, EntryMeta> = {
    '': { type: 'dir', uid: 0, gid: 0, mode: 0o755 },
    etc: { type: 'dir', uid: 0, gid: 0, mode: 0o755 },
    'etc/shadow': { type: 'file', uid: 0, gid: 42, mode: 0o640 },
    'usr/bin/sudo': {
      type: 'file',
      uid: 0,
      gid: 0,
      mode: 0o4755,
      xattrs: { 'security.capability': Buffer.from([1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0]) },
    },
    'home/user': { type: 'dir', uid: 1000, gid: 1000, mode: 0o700 },
    dev: { type: 'dir', uid: 0, gid: 0, mode: 0o755 },
    'dev/console': { type: 'char', uid: 0, gid: 5, mode: 0o600, rdev: makeDev(5, 1) },
    'dev/null': { type: 'char', uid: 0, gid: 0, mode: 0o666, rdev: makeDev(1, 3) },
    'dev/loop0': { type: 'block', uid: 0, gid: 6, mode: 0o660, rdev: makeDev(7, 0) },
    'dev/pts': { type: 'dir', uid: 0, gid: 0, mode: 0o755 },
    'dev/stdin': { type: 'symlink', uid: 0, gid: 0, mode: 0o777, linkTarget: '/proc/self/fd/0' },
    'dev/initctl': { type: 'fifo', uid: 0, gid: 0, mode: 0o600 },
  };
  // A table like the DB's (the worker thread can walk with it).
  const overlay: MetadataOverlay = tableOverlay({
    records: new Map(Object.entries(records)),
    defaultDirs: new Set(),
  });
  const u = USER_ID;
  const own = process.getuid?.() === 0 ? u : (process.getuid?.() ?? 0);
  const ownG = process.getuid?.() === 0 ? u : (process.getgid?.() ?? 0);
  const e = (type: Expected['type'], mode: number, more: Partial<Expected> = {}): Expected => ({
    type,
    mode,
    uid: own,
    gid: ownG,
    ...more,
  });
  const expected = new Map<string, Expected>([
    ['dev', e('dir', 0o755, { uid: 0, gid: 0 })],
    ['dev/console', e('char', 0o600, { uid: 0, gid: 5, dev: [5, 1] })],
    ['dev/initctl', e('fifo', 0o600, { uid: 0, gid: 0 })],
    ['dev/loop0', e('block', 0o660, { uid: 0, gid: 6, dev: [7, 0] })],
    ['dev/null', e('char', 0o666, { uid: 0, gid: 0, dev: [1, 3] })],
    ['dev/pts', e('dir', 0o755, { uid: 0, gid: 0 })],
    ['dev/stdin', e('symlink', 0o777, { uid: 0, gid: 0, linkTarget: '/proc/self/fd/0' })],
    ['etc', e('dir', 0o755, { uid: 0, gid: 0 })],
    ['etc/hostname', e('file', 0o644, { size: 4 })],
    ['etc/shadow', e('file', 0o640, { uid: 0, gid: 42, size: 26 })],
    ['etc/tool-link', e('symlink', 0o777, { linkTarget: '../usr/bin/tool' })],
    ['home', e('dir', 0o755)],
    ['home/user', e('dir', 0o700, { uid: 1000, gid: 1000 })],
    ['proc', e('dir', 0o755)],
    ['run-fifo', e('fifo', 0o644)],
    ['usr', e('dir', 0o755)],
    ['usr/bin', e('dir', 0o755)],
    ['usr/bin/sudo', e('file', 0o4755, { uid: 0, gid: 0, size: 70_000 })],
    ['usr/bin/tool', e('file', 0o755, { size: 20 })],
    ['usr/bin/tool-alias', e('hardlink', 0o755, { size: 20, linkTarget: 'usr/bin/tool' })],
    ['usr/share', e('dir', 0o755)],
    ['usr/share/é ü', e('dir', 0o755)],
    ['usr/share/é ü/name with spaces', e('file', 0o644, { size: 1 })],
    ['var', e('dir', 0o755)],
  ]);
  const parts = LONG.split('/');
  for (let i = 1; i < parts.length; i++) expected.set(parts.slice(0, i).join('/'), e('dir', 0o755));
  expected.set(LONG, e('file', 0o644, { size: 4 }));
  return {
    root,
    overlay,
    overlayPaths: Object.keys(records).filter((k) => k !== ''),
    expected,
    excludes: ['/proc/*', '/var/cache'],
  };
}
