/**
 * Build-test fixtures: a tiny real root made of the host's /bin/sh and a few coreutils with their
 * shared libraries (found by ldd), pushed to the test registry as an OCI image by umoci + skopeo;
 * and small luet trees written from a map of files.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import type { BuildOptions } from '../../src/build/build.js';
import { skopeoPush, tarOf, umociImage } from '../install/base-images.js';
import { tmpDir } from '../install/helpers.js';
import { requireBuild, runCpm, type CliResult } from '../support/cli.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';

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

/** What a build test works with once `buildWorld`'s beforeAll ran. */
export interface BuildWorld {
  reg: RegistryInstance;
  /** the test's temp dir: cpm.yaml, the tree, outputs, roots */
  work: string;
  /** the luet tree to build (empty: the test writes it) */
  tree: string;
  /** the cache of cpm.yaml and of `opts()` */
  cacheDir: string;
  /** the environment the CLI runs with (CPM_CONFIG = work/cpm.yaml) */
  env: NodeJS.ProcessEnv;
  /** the host tools root pushed to the registry: `<registry>/<baseRepo>:1` */
  baseRef: string;
  /** `cpm ARGS` with `env` */
  cpm: (...args: string[]) => Promise<CliResult>;
  /** build options for `output` with the world's tree and cache, 2 jobs, no network */
  opts: (output: string, more?: Partial<BuildOptions>) => BuildOptions;
  /** `cpm install PKGS --repo REPO --root ROOT -y`, which must succeed: a reader of ROOT's files */
  install: (repo: string, root: string, ...pkgs: string[]) => Promise<(rel: string) => string>;
}

/**
 * A real registry holding the host tools root as `baseRepo:1`, a temp dir and a config, set up
 * by a beforeAll this registers (so before the test file's own) and stopped by an afterAll.
 */
export function buildWorld(prefix: string, baseRepo: string): BuildWorld {
  const w = {
    cpm: (...args: string[]) => runCpm(args, { env: w.env }),
    opts: (output: string, more: Partial<BuildOptions> = {}) => ({
      tree: w.tree,
      output,
      cacheDir: w.cacheDir,
      jobs: 2,
      network: false,
      ...more,
    }),
    install: async (repo: string, root: string, ...pkgs: string[]) => {
      const r = await w.cpm('install', ...pkgs, '--repo', repo, '--root', root, '-y');
      if (r.code !== 0) throw new Error(`cpm install ${pkgs.join(' ')} → ${r.code}\n${r.err}`);
      return (rel: string) => readFileSync(path.join(root, rel), 'utf8');
    },
  } as BuildWorld;
  beforeAll(async () => {
    requireBuild();
    w.reg = await startRegistry();
    w.work = tmpDir(prefix);
    w.cacheDir = path.join(w.work, 'cache');
    w.env = { ...process.env, CPM_CONFIG: path.join(w.work, 'cpm.yaml') };
    writeFileSync(w.env.CPM_CONFIG!, `cache_dir: ${w.cacheDir}\n`);
    const root = hostToolsRoot(path.join(w.work, 'tools-root'));
    w.baseRef = pushRoot(root, w.work, w.reg.host, baseRepo, '1');
    w.tree = path.join(w.work, 'tree');
  });
  afterAll(async () => {
    await w.reg?.stop();
  });
  return w;
}
