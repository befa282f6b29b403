/**
 * Build-test fixtures: a tiny real root made of the host's /bin/sh and a few coreutils with their
 * shared libraries (found by ldd), pushed to the test registry as an OCI image by umoci + skopeo;
 * and small luet trees written from a map of files.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { skopeoPush, tarOf, umociImage } from '../install/base-images.js';

export const TOOLS = ['sh', 'mkdir', 'cat', 'cp', 'rm', 'ln', 'ls', 'chmod', 'touch'];

/** The host's tools and their libraries under `dir`, merged-/usr style. */
export function hostToolsRoot(dir: string): string {
  mkdirSync(path.join(dir, 'usr/bin'), { recursive: true });
  mkdirSync(path.join(dir, 'usr/lib'), { recursive: true });
  symlinkSync('usr/bin', path.join(dir, 'bin'));
  symlinkSync('usr/lib', path.join(dir, 'lib'));
  const libs = new Set<string>();
  for (const t of TOOLS) {
    const bin = execFileSync('sh', ['-c', `command -v ${t}`], { encoding: 'utf8' }).trim();
    copyFileSync(bin, path.join(dir, 'usr/bin', t));
    chmodSync(path.join(dir, 'usr/bin', t), 0o755);
    const out = execFileSync('ldd', [bin], { encoding: 'utf8' });
    for (const m of out.matchAll(/(\/\S+\.so[.\d]*)/g)) libs.add(m[1]!);
  }
  for (const lib of libs) {
    const rel = lib.replace(/^\/(usr\/)?/, '');
    // lib/… and lib64/… land under usr/ (lib is a symlink); lib64 gets its own directory.
    const dest = rel.startsWith('lib64/') ? path.join(dir, rel) : path.join(dir, 'usr', rel);
    mkdirSync(path.dirname(dest), { recursive: true });
    copyFileSync(lib, dest);
  }
  for (const d of ['etc', 'tmp', 'root', 'var/lib'])
    mkdirSync(path.join(dir, d), { recursive: true });
  writeFileSync(path.join(dir, 'etc/os-release'), 'ID=cpmtools\n');
  chmodSync(path.join(dir, 'tmp'), 0o1777);
  return dir;
}

/** Pushes the root at `dir` as `<registry>/<repo>:<tag>`; returns the reference. */
export function pushRoot(
  dir: string,
  work: string,
  registry: string,
  repo: string,
  tag: string,
): string {
  const tar = tarOf(dir, `${dir}.tar`);
  const layout = path.join(work, `layout-${repo.replace(/\//g, '-')}`);
  umociImage(layout, tag, [tar]);
  const ref = `${registry}/${repo}:${tag}`;
  skopeoPush(`${layout}:${tag}`, ref);
  return ref;
}

export type Files = Record<string, string>;

/** Writes `files` (relative path → content) under `dir`. */
export function writeFiles(dir: string, files: Files): void {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(dir, rel);
    mkdirSync(path.dirname(p), { recursive: true });
    writeFileSync(p, content);
  }
}
