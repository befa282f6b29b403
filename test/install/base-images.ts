/**
 * Base-image fixtures for the image-ref and rootfs tests: real root trees (host binaries, or a
 * Debian minbase from mmdebstrap) turned into OCI images by umoci and pushed by skopeo.
 */
import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTree } from '../support/layers.js';

export const PROJECT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export function sh(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, ...opts });
}

/** An uncompressed tar of `dir` as GNU tar writes it (numeric owners root:root, sorted). */
export function tarOf(dir: string, out: string): string {
  sh('tar', [
    '--sort=name',
    '--numeric-owner',
    '--owner=0',
    '--group=0',
    '-C',
    dir,
    '-cf',
    out,
    '.',
  ]);
  return out;
}

/**
 * A small but real base root: merged-/usr symlinks, a few host binaries and libraries-free files,
 * docs that a later layer makes opaque, a file a later layer whites out.
 */
export async function smallBaseLayers(work: string): Promise<{ lower: string; upper: string }> {
  const lower = path.join(work, 'lower');
  await writeTree(lower, {
    bin: { symlink: 'usr/bin' },
    lib: { symlink: 'usr/lib' },
    'etc/os-release': 'PRETTY_NAME="cpm test base"\nID=cpmtest\n',
    'etc/hostname': 'base\n',
    'etc/motd': 'welcome\n',
    'usr/share/doc/base/copyright': 'old copyright\n',
    'usr/share/doc/base/changelog': 'old changelog\n',
    tmp: { dir: true, mode: 0o1777 },
    'var/lib/dpkg/status': 'Package: base\n',
  });
  mkdirSync(path.join(lower, 'usr/bin'), { recursive: true });
  mkdirSync(path.join(lower, 'usr/lib'), { recursive: true });
  for (const b of ['/usr/bin/env', '/usr/bin/true', '/bin/sh'])
    copyFileSync(b, path.join(lower, 'usr/bin', path.basename(b)));
  // whiteout of etc/motd, opaque usr/share/doc with one new file
  const upper = path.join(work, 'upper');
  await writeTree(upper, {
    'etc/.wh.motd': '',
    'usr/share/doc/.wh..wh..opq': '',
    'usr/share/doc/base/README': 'new docs\n',
    'etc/hostname': 'upper\n',
  });
  return { lower: tarOf(lower, `${lower}.tar`), upper: tarOf(upper, `${upper}.tar`) };
}

/** An OCI layout image `layout:tag` made by umoci from uncompressed layer tars, bottom first. */
export function umociImage(layout: string, tag: string, layerTars: string[]): string {
  if (!existsSync(path.join(layout, 'oci-layout'))) sh('umoci', ['init', '--layout', layout]);
  sh('umoci', ['new', '--image', `${layout}:${tag}`]);
  for (const t of layerTars) sh('umoci', ['raw', 'add-layer', '--image', `${layout}:${tag}`, t]);
  return `${layout}:${tag}`;
}

/** skopeo copy oci:LAYOUT:TAG docker://REF (plain http to the loopback test registry). */
export function skopeoPush(layoutTag: string, ref: string): void {
  sh('skopeo', [
    'copy',
    '--quiet',
    '--dest-tls-verify=false',
    `oci:${layoutTag}`,
    `docker://${ref}`,
  ]);
}

/**
 * `mmdebstrap --variant=minbase bookworm` as a tar, made once a day and cached in bench/.work/
 * (~30–60 s with a warm apt cache on the mirror side).
 */
export function minbaseTar(): string {
  const day = new Date().toISOString().slice(0, 10);
  const dir = path.join(PROJECT, 'bench', '.work');
  const out = path.join(dir, `base-minbase-bookworm-${day}.tar`);
  if (existsSync(out)) return out;
  mkdirSync(dir, { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    sh('mmdebstrap', ['--quiet', '--variant=minbase', '--format=tar', 'bookworm', tmp]);
    renameSync(tmp, out);
  } finally {
    rmSync(tmp, { force: true });
  }
  return out;
}

/**
 * The smallest base a finalizer can run in: the host's sh, mkdir, chmod, rm and their shared
 * libraries (from ldd) in a merged-/usr layout, as an uncompressed tar.
 */
export function shellBaseTar(work: string): string {
  const dir = path.join(work, 'shell-base');
  rmSync(dir, { recursive: true, force: true });
  for (const d of ['usr/bin', 'usr/lib', 'usr/lib64', 'etc', 'tmp'])
    mkdirSync(path.join(dir, d), { recursive: true });
  for (const [l, t] of [
    ['bin', 'usr/bin'],
    ['lib', 'usr/lib'],
    ['lib64', 'usr/lib64'],
  ])
    symlinkSync(t!, path.join(dir, l!));
  writeFileSync(path.join(dir, 'etc/os-release'), 'PRETTY_NAME="cpm shell base"\nID=cpmshell\n');
  const libs = new Set<string>();
  for (const prog of ['sh', 'mkdir', 'chmod', 'rm']) {
    const bin = sh('sh', ['-c', `command -v ${prog}`]).trim();
    copyFileSync(bin, path.join(dir, 'usr/bin', prog));
    for (const m of sh('ldd', [bin]).matchAll(/(\/\S+\.so[.\d]*)/g)) libs.add(m[1]!);
  }
  for (const lib of libs) {
    // keep the path the binaries ask for: /lib64/ld-linux… and /lib/<triplet>/… (both under usr/)
    const rel = lib.replace(/^\/(usr\/)?/, 'usr/');
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    copyFileSync(realpathSync(lib), path.join(dir, rel));
  }
  return tarOf(dir, `${dir}.tar`);
}
