/**
 * Small real filesystems for environment-fault tests (a full disk is a tmpfs of a few MiB).
 * Mounting needs root: `cannotMountWhy` says why not, and under CPM_TEST_REALFS=1 (CI) a test
 * file that cannot mount fails instead of skipping, since a skip there would hide a regression.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { afterAll } from 'vitest';
import { fileLayer } from '../../src/rootfs/index.js';
import type { LayerSource } from '../../src/rootfs/types.js';
import { digestOf, tmpDir } from '../install/helpers.js';

/** Why mounting is impossible here, or '' when it works. */
function cannotMount(): string {
  if (process.getuid?.() !== 0) return 'not running as root (mount needs it)';
  const d = tmpDir('cpm-mnt-probe-');
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', d], { encoding: 'utf8' });
  if (r.status !== 0) return `mount -t tmpfs fails here: ${(r.stderr || r.error?.message) ?? ''}`;
  spawnSync('umount', [d]);
  return '';
}

/** '' when real-filesystem tests can run; else the reason (warned, or thrown under CI). */
export function realFsUnavailable(): string {
  const why = cannotMount();
  if (why && process.env.CPM_TEST_REALFS === '1')
    throw new Error(`CPM_TEST_REALFS=1 but real-filesystem tests cannot run: ${why}`);
  if (why) console.warn(`skipping real-filesystem fault tests: ${why}`);
  return why;
}

const mounts: string[] = [];
// Registered after tmpDir's clean-up, so it runs before it (after-hooks run in reverse).
afterAll(() => {
  for (const m of mounts.reverse()) spawnSync('umount', ['-l', m]);
});

/** A fresh tmpfs of `size` (e.g. "2m"), unmounted after the file's tests. */
export function tmpfs(size: string): string {
  const d = tmpDir('cpm-tmpfs-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', d]);
  mounts.push(d);
  return d;
}

/** `dir` bind-mounted onto itself read-only, undone after the file's tests. */
export function readOnlyBind(dir: string): void {
  execFileSync('mount', ['--bind', dir, dir]);
  mounts.push(dir);
  execFileSync('mount', ['-o', 'remount,bind,ro', dir]);
}

const TMPFS_MAGIC = 0x01021994;
const SHM = '/dev/shm';

/** setfattr and getfattr (package attr) are on the PATH. */
export const hasAttrTools =
  spawnSync('sh', ['-c', 'command -v setfattr && command -v getfattr']).status === 0;

/**
 * Why xattr tests on tmpfs (which takes user.* values up to 64 KiB, as ext4 does not) cannot run
 * here, or undefined when they can.
 */
export function noXattrTmpfs(): string | undefined {
  if (!hasAttrTools) return 'setfattr/getfattr (package attr) are not installed';
  try {
    if (statfsSync(SHM).type !== TMPFS_MAGIC) return `${SHM} is not tmpfs`;
  } catch {
    return `${SHM} does not exist`;
  }
  return undefined;
}

const shmMade: string[] = [];
afterAll(() => {
  for (const d of shmMade) rmSync(d, { recursive: true, force: true });
});

/** A new directory on /dev/shm (tmpfs without mounting), removed after the file's tests. */
export function shmDir(prefix: string): string {
  const d = mkdtempSync(path.join(SHM, prefix));
  shmMade.push(d);
  return d;
}

/**
 * A real GNU tar layer (`--xattrs`, plus `tarArgs`) of `top` below `src` (on tmpfs, see shmDir),
 * after setting `attrs` (path below src → xattr name → value) in one setfattr --restore.
 */
export function xattrLayer(
  src: string,
  top: string,
  attrs: Record<string, Record<string, string>>,
  tarArgs: string[] = [],
): LayerSource {
  let dump = '';
  for (const [rel, values] of Object.entries(attrs)) {
    dump += `# file: ${rel}\n`;
    for (const [k, v] of Object.entries(values))
      dump += `${k}=0x${Buffer.from(v).toString('hex')}\n`;
    dump += '\n';
  }
  execFileSync('setfattr', ['--restore=-'], { cwd: src, input: dump });
  const out = path.join(tmpDir('cpm-xattr-layer-'), 'layer.tar');
  execFileSync('tar', [
    '--xattrs',
    '--xattrs-include=*',
    ...tarArgs,
    '--sort=name',
    '--numeric-owner',
    '-C',
    src,
    '-cf',
    out,
    top,
  ]);
  return fileLayer(out, 'application/vnd.oci.image.layer.v1.tar', digestOf(out));
}
