/**
 * Build roots. An `image:` is resolved and pulled with cpm's registry client into the blob store,
 * unpacked once per manifest digest by cpm's installer (whiteouts, safety checks, DB kept outside
 * the root) into `<cache>/build/images/<digest>`, and copied for every build that starts from it.
 * Results of earlier builds (the root after their steps) are kept the same way under
 * `<cache>/build/roots/<key>` for packages chained on them by build-time `requires`.
 */
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { openSource, type EndpointOptions } from '../oci/endpoint.js';
import { pullImage } from '../oci/image.js';
import { cacheStore } from '../oci/actions.js';
import { formatRef, parseImageRef } from '../oci/reference.js';
import { DiskView, UnsafePathError, resolveUserPath } from '../rootfs/fs-path.js';
import { fileLayer } from '../rootfs/index.js';
import { applyTransaction } from '../rootfs/transaction.js';
import { createSpec } from '../package/package.js';
import { CONTEXT_DIR } from './sandbox.js';

export interface ImageInfo {
  /** The reference as written in the spec. */
  ref: string;
  /** Digest of what the reference names (index or manifest): part of the build hash. */
  digest: string;
}

/** Resolves `ref` to its digest with one manifest request (no layers pulled). */
export async function resolveImage(ref: string, opts: EndpointOptions): Promise<ImageInfo> {
  let parsed;
  try {
    parsed = parseImageRef(ref);
  } catch (e) {
    throw new CpmError('E_USAGE', `image "${ref}": ${(e as Error).message}`, { cause: e });
  }
  const src = await openSource(parsed, opts);
  try {
    const m = await src.getManifest();
    return { ref, digest: m.digest };
  } finally {
    await src.close();
  }
}

export interface UnpackedImage {
  dir: string;
  digest: string;
  /** The image config's Env (KEY=VALUE), applied before the spec's env as docker build does. */
  env: string[];
}

const unpacking = new Map<string, Promise<UnpackedImage>>();

async function exists(p: string): Promise<boolean> {
  return fsp.stat(p).then(
    () => true,
    () => false,
  );
}

/** Pulls and unpacks an image once (per cache dir and digest); concurrent callers share it. */
export function unpackImage(
  ref: string,
  cacheDir: string,
  opts: EndpointOptions,
): Promise<UnpackedImage> {
  const key = `${cacheDir}\0${ref}`;
  let p = unpacking.get(key);
  if (!p) {
    p = doUnpack(ref, cacheDir, opts);
    unpacking.set(key, p);
    p.catch(() => unpacking.delete(key));
  }
  return p;
}

async function doUnpack(
  ref: string,
  cacheDir: string,
  opts: EndpointOptions,
): Promise<UnpackedImage> {
  const parsed = parseImageRef(ref);
  const store = cacheStore(cacheDir);
  const src = await openSource(parsed, opts);
  const blobs = src.localStore ?? store;
  let pulled;
  try {
    pulled = await pullImage(src, blobs);
  } finally {
    await src.close();
  }
  const digest = pulled.root.digest;
  const env = pulled.config.config?.Env ?? [];
  const base = path.join(cacheDir, 'build', 'images');
  const dir = path.join(base, digest.replace(':', '-'));
  if (await exists(path.join(dir, '.cpm-complete')))
    return { dir: path.join(dir, 'root'), digest, env };
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(dir, { recursive: true });
  const root = path.join(dir, 'root');
  await fsp.mkdir(root);
  const layers = pulled.manifest.layers.map((l) =>
    fileLayer(blobs.path(l.digest), l.mediaType, l.digest),
  );
  await applyTransaction(
    root,
    {
      install: [
        {
          spec: createSpec({
            category: 'images',
            name: 'build-base',
            version: `0+${digest.slice(7, 19)}`,
          }),
          layers,
          origin: formatRef(parsed),
          imageDigest: pulled.manifestDescriptor.digest,
          reason: 'explicit',
          base: true,
        },
      ],
      remove: [],
    },
    { dbDir: path.join(dir, 'db'), noFinalizers: true },
  );
  await fsp.writeFile(path.join(dir, '.cpm-complete'), `${ref}\n`);
  return { dir: root, digest, env };
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.once('error', (e) =>
      reject(new CpmError('E_TOOL_MISSING', `cannot run ${cmd}: ${e.message}`)),
    );
    child.once('close', (code) =>
      code === 0
        ? resolve()
        : reject(new CpmError('E_IO', `${cmd} ${args.join(' ')} failed: ${err.trim()}`)),
    );
  });
}

/** A full copy of `src` at `dst` (owners, modes, times, links, xattrs; reflinks where possible). */
export async function copyTree(src: string, dst: string): Promise<void> {
  await fsp.mkdir(path.dirname(dst), { recursive: true });
  await run('cp', ['-a', '--reflink=auto', '--no-target-directory', src, dst]);
}

/** Copies the contents of `src` into the existing directory `dst`. */
export async function copyInto(src: string, dst: string): Promise<void> {
  await run('cp', ['-a', '--reflink=auto', '--no-target-directory', `${src}/.`, dst]);
}

/**
 * Makes the mount points bwrap needs and the build context. Done before the "before" snapshot, so
 * none of it counts as the package's. The context is copied fresh (luet's `COPY . /luetbuild`).
 */
export async function prepareRoot(root: string, contextDir: string): Promise<void> {
  for (const d of ['proc', 'dev', 'tmp', 'etc']) {
    const p = path.join(root, d);
    const st = await fsp.lstat(p).catch(() => undefined);
    if (!st) await fsp.mkdir(p, { mode: d === 'tmp' ? 0o1777 : 0o755 });
  }
  const ctx = path.join(root, CONTEXT_DIR.slice(1));
  // rm never follows a symlink there: a link the image put at /luetbuild is replaced, not used.
  if (await fsp.lstat(ctx).catch(() => undefined))
    await fsp.rm(ctx, { recursive: true, force: true });
  await fsp.mkdir(ctx, { recursive: true });
  await copyInto(contextDir, ctx);
}

/** Directory under the cache where the result root of a build (by key) is kept. */
export function resultRootDir(cacheDir: string, key: string): string {
  return path.join(cacheDir, 'build', 'roots', key);
}

export async function hasResultRoot(cacheDir: string, key: string): Promise<boolean> {
  return exists(path.join(resultRootDir(cacheDir, key), '.cpm-complete'));
}

/** Keeps `root` (moved, not copied) as the result root under `key`. */
export async function keepResultRoot(cacheDir: string, key: string, root: string): Promise<void> {
  const dir = resultRootDir(cacheDir, key);
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(dir, { recursive: true });
  await fsp.rename(root, path.join(dir, 'root'));
  await fsp.writeFile(path.join(dir, '.cpm-complete'), '');
}

/**
 * A path of a spec (package_dir, copy source or destination) as a host path inside `root`:
 * symlinks resolved with chroot semantics (an absolute target restarts at the root), never
 * leaving it. E_UNSAFE_ENTRY when it would.
 */
export function pathInRoot(root: string, p: string, what: string): string {
  try {
    const rel = resolveUserPath(new DiskView(root), p, true);
    return rel === '' ? root : path.join(root, rel);
  } catch (e) {
    if (!(e instanceof UnsafePathError)) throw e;
    throw new CpmError('E_UNSAFE_ENTRY', `${what} ${p}: ${e.message}`, { context: { path: p } });
  }
}

/**
 * Copies `src` (a host path: file, symlink or directory tree) to `dest` inside `root`, entry by
 * entry through the root's path resolver, so a symlink in the root (`/etc -> /host`) can never
 * redirect a write outside it. Modes and, for root, owners are kept; `dest` is created as needed.
 */
export async function copyIntoRoot(
  root: string,
  src: string,
  dest: string,
  what: string,
): Promise<void> {
  const owners = process.getuid?.() === 0;
  const place = async (from: string, to: string): Promise<void> => {
    const st = await fsp.lstat(from);
    let rel: string;
    try {
      rel = resolveUserPath(new DiskView(root), to, false);
    } catch (e) {
      if (!(e instanceof UnsafePathError)) throw e;
      throw new CpmError('E_UNSAFE_ENTRY', `${what} ${to}: ${e.message}`, {
        context: { path: to },
      });
    }
    const abs = path.join(root, rel);
    const cur = await fsp.lstat(abs).catch(() => undefined);
    if (st.isDirectory()) {
      if (!cur?.isDirectory()) {
        if (cur) await fsp.rm(abs, { force: true });
        await fsp.mkdir(abs);
      }
      await fsp.chmod(abs, st.mode & 0o7777);
      if (owners) await fsp.lchown(abs, st.uid, st.gid);
      for (const n of (await fsp.readdir(from)).sort())
        await place(path.join(from, n), `${to}/${n}`);
      return;
    }
    if (cur?.isDirectory()) await fsp.rm(abs, { recursive: true, force: true });
    else if (cur) await fsp.rm(abs, { force: true });
    if (st.isSymbolicLink()) await fsp.symlink(await fsp.readlink(from), abs);
    else if (st.isFile()) {
      await fsp.copyFile(from, abs);
      await fsp.chmod(abs, st.mode & 0o7777);
    } else return; // devices, fifos, sockets: not copied
    if (owners) await fsp.lchown(abs, st.uid, st.gid);
  };
  const parent = path.posix.dirname(path.posix.normalize(`/${dest}`));
  const parentAbs = pathInRoot(root, parent, what);
  await fsp.mkdir(parentAbs, { recursive: true });
  await place(src, path.posix.normalize(`/${dest}`));
}
