/** Test helpers: real layers made by GNU tar + zstd/gzip, hostile ones by tar-stream. */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tar from 'tar-stream';
import { afterAll } from 'vitest';
import { CpmError } from '../../src/errors.js';
import { fileLayer } from '../../src/rootfs/index.js';
import type { InstallStep, LayerSource } from '../../src/rootfs/types.js';
import { parseSelector } from '../../src/package/version.js';
import { createSpec, type PackageSpec } from '../../src/package/package.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

export function tmpDir(prefix = 'cpm-install-'): string {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(d);
  return d;
}

export function spec(
  id: string,
  extra: Partial<Pick<PackageSpec, 'annotations' | 'requires'>> = {},
): PackageSpec {
  const [fam, version] = id.split('@') as [string, string];
  const [category, name] = fam.split('/') as [string, string];
  return createSpec({ category, name, version, ...extra });
}

export function dep(fam: string, version = ''): PackageSpec['requires'][number] {
  const [category, name] = fam.split('/') as [string, string];
  return { category, name, version, selector: parseSelector(version) };
}

export function digestOf(file: string): string {
  return `sha256:${createHash('sha256').update(readFileSync(file)).digest('hex')}`;
}

/**
 * A layer from a directory tree via GNU tar (numeric owners, sorted), compressed by the zstd or
 * gzip program. `files` maps relative paths to contents; a value starting with "->" is a symlink.
 */
export function layerFromFiles(
  files: Record<string, string>,
  compression: 'zstd' | 'gzip' | 'none' = 'zstd',
  modes: Record<string, number> = {},
): LayerSource {
  const dir = tmpDir('cpm-layer-');
  const src = path.join(dir, 'src');
  execFileSync('mkdir', ['-p', src]);
  for (const [rel, content] of Object.entries(files)) {
    const abs = path.join(src, rel);
    execFileSync('mkdir', ['-p', path.dirname(abs)]);
    if (rel.endsWith('/')) continue;
    if (content.startsWith('->')) execFileSync('ln', ['-s', content.slice(2), abs]);
    else writeFileSync(abs, content);
  }
  for (const [rel, mode] of Object.entries(modes))
    execFileSync('chmod', [mode.toString(8), path.join(src, rel)]);
  const out = path.join(
    dir,
    'layer.tar' + (compression === 'none' ? '' : compression === 'zstd' ? '.zst' : '.gz'),
  );
  const tarCmd = `tar --sort=name --numeric-owner --owner=0 --group=0 -C ${src} -cf - .`;
  const comp =
    compression === 'zstd' ? ' | zstd -q -c' : compression === 'gzip' ? ' | gzip -n -c' : '';
  execFileSync('sh', ['-c', `${tarCmd}${comp} > ${out}`]);
  const mediaType =
    compression === 'zstd'
      ? 'application/vnd.oci.image.layer.v1.tar+zstd'
      : compression === 'gzip'
        ? 'application/vnd.oci.image.layer.v1.tar+gzip'
        : 'application/vnd.oci.image.layer.v1.tar';
  return fileLayer(out, mediaType, digestOf(out));
}

export interface RawEntry {
  name: string;
  type?: tar.Header['type'];
  content?: string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  devmajor?: number;
  devminor?: number;
  pax?: Record<string, string>;
}

/** A layer with exactly the given entries (shapes GNU tar refuses to write). Uncompressed. */
export async function rawLayer(
  entries: RawEntry[],
  opts: { truncate?: number } = {},
): Promise<LayerSource> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((r) => pack.on('end', () => r()));
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: new Date(1_700_000_000_000),
      ...(e.linkname !== undefined ? { linkname: e.linkname } : {}),
      ...(e.devmajor !== undefined ? { devmajor: e.devmajor, devminor: e.devminor ?? 0 } : {}),
      ...(e.pax ? { pax: e.pax } : {}),
      ...(e.size !== undefined ? { size: e.size } : {}),
    };
    if (type === 'file') pack.entry(header, e.content ?? '');
    else pack.entry(header);
  }
  pack.finalize();
  await done;
  let buf = Buffer.concat(chunks);
  if (opts.truncate !== undefined) buf = buf.subarray(0, opts.truncate);
  const dir = tmpDir('cpm-raw-');
  const out = path.join(dir, 'layer.tar');
  writeFileSync(out, buf);
  return fileLayer(out, 'application/vnd.oci.image.layer.v1.tar', digestOf(out));
}

export function step(
  id: string,
  layers: LayerSource[],
  extra: Partial<InstallStep> = {},
): InstallStep {
  return {
    spec: extra.spec ?? spec(id),
    layers,
    origin: 'test',
    imageDigest:
      extra.imageDigest ??
      `sha256:${createHash('sha256')
        .update(id + layers.map((l) => l.digest).join())
        .digest('hex')}`,
    reason: 'explicit',
    ...extra,
  };
}

/** The CpmError a promise rejects with; fails the test when it resolves. */
export async function failure(p: Promise<unknown>): Promise<CpmError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof CpmError) return e;
    throw e;
  }
  throw new Error('expected a CpmError, but the operation succeeded');
}

export const CPM_BIN = path.resolve(
  path.dirname(new URL(import.meta.url).pathname),
  '../../bin/cpm.js',
);

/**
 * `node bin/cpm.js` as a Dockerfile RUN calls it (no TTY), with CPM_CONFIG from `config()` (read
 * at call time, so a beforeAll can set it). `ok` throws with the output on a non-zero exit.
 */
export function cpmCli(config: () => string): {
  cpm: (...args: string[]) => { code: number; out: string; err: string };
  ok: (...args: string[]) => string;
} {
  const cpm = (...args: string[]): { code: number; out: string; err: string } => {
    const r = spawnSync(process.execPath, [CPM_BIN, ...args], {
      encoding: 'utf8',
      env: { ...process.env, CPM_CONFIG: config() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
  };
  const ok = (...args: string[]): string => {
    const r = cpm(...args);
    if (r.code !== 0) throw new Error(`cpm ${args.join(' ')} → ${r.code}\n${r.out}\n${r.err}`);
    return r.out;
  };
  return { cpm, ok };
}
