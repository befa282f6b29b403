/**
 * `cpm image oci`: an assembled root as an OCI image with one layer per installed package, so an
 * upgrade that changes one package changes one layer digest (container-style OTA pulls only that).
 *
 * Layers, bottom to top:
 *   1. the base package(s) (`base: true` in the DB, from `cpm rootfs init --from`), one each;
 *   2. every file no package owns (finalizer output, hand-made files), if any;
 *   3. one layer per other installed package, by package id;
 *   4. the installer DB (`DBDIR/installed` only), so the image can be read back as a cpm root.
 * A path several packages own (a shared directory) is in each of their layers. Each layer also
 * carries its entries' parent directories, so it unpacks on its own with the right owners/modes.
 * Every entry's mtime is SOURCE_DATE_EPOCH (default 0): directory mtimes change whenever any
 * package adds a file, and would otherwise leak into the layers of unchanged packages.
 * Owners, modes and device nodes come from the DB for packages installed without root.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CpmError } from '../errors.js';
import type { InstalledDb } from '../rootfs/db.js';
import type { BlobStore } from '../oci/blobstore.js';
import { HashingStream } from '../oci/hashing-stream.js';
import { openTarget, type EndpointOptions } from '../oci/endpoint.js';
import { mapLimit, pushImage } from '../oci/image.js';
import { layerMediaType, type LayerCompression } from '../oci/layer.js';
import { OciLayout } from '../oci/layout.js';
import { cacheStore } from '../oci/actions.js';
import { hostPlatform } from '../oci/platform.js';
import { formatRef, parseImageRef, type ImageRef } from '../oci/reference.js';
import {
  MEDIA,
  type Descriptor,
  type ImageConfig,
  type ImageManifest,
  type Platform,
} from '../oci/types.js';
import { createCompressor } from '../util/compress.js';
import { dbOverlay, loadRootDb } from './db-overlay.js';
import { sourceDateEpochFromEnv } from './meta.js';
import { tarChunks } from '../util/tar-encode.js';
import { tarHeader } from './tar-header.js';
import { RootWalker, type RootEntry } from './rootfs-walk.js';

/** Layer descriptor annotation naming what the layer holds. */
export const LAYER_ANNOTATION = 'io.cpm.image.layer';

export type OciLayerKind = 'base' | 'unowned' | 'package' | 'db';

export interface OciImageOptions {
  /** DB directory (default ROOT/var/lib/cpm, as the installer). */
  dbDir?: string;
  compression?: LayerCompression;
  level?: number;
  /** mtime of every entry and the image's created time; default $SOURCE_DATE_EPOCH or 0. */
  sourceDateEpoch?: number;
  excludes?: readonly string[];
  /** Read xattrs from disk (default true). */
  xattrs?: boolean;
  platform?: Platform;
  /** Layers built at the same time (default: CPUs, at most 4). */
  concurrency?: number;
  onWarning?: (message: string) => void;
}

export interface OciLayerInfo {
  kind: OciLayerKind;
  /** Package id for base/package layers. */
  package?: string;
  digest: string;
  diffId: string;
  size: number;
  entries: number;
}

export interface OciRootImage {
  descriptor: Descriptor;
  manifest: ImageManifest;
  config: ImageConfig;
  layers: OciLayerInfo[];
}

interface LayerPlan {
  kind: OciLayerKind;
  package?: string;
  entries: RootEntry[];
}

function isoDate(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

/** Root-relative DB dir, or undefined when the DB lives outside the root. */
function relInside(root: string, dir: string): string | undefined {
  const rel = path.relative(path.resolve(root), path.resolve(dir));
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return undefined;
  return rel.split(path.sep).join('/');
}

/** Splits the walk into layers (see the file comment). Pure apart from the entries given. */
export function planLayers(entries: RootEntry[], db: InstalledDb, dbRel?: string): LayerPlan[] {
  const byPath = new Map<string, RootEntry>();
  for (const e of entries) byPath.set(e.path, e);
  const plans = new Map<string, LayerPlan>();
  const included = new Map<string, Set<string>>();
  const dbFile = dbRel === undefined ? undefined : `${dbRel}/installed`;

  const add = (key: string, mk: () => LayerPlan, e: RootEntry): void => {
    let plan = plans.get(key);
    let seen = included.get(key);
    if (!plan || !seen) {
      plan = mk();
      seen = new Set();
      plans.set(key, plan);
      included.set(key, seen);
    }
    // Parents first, in walk order (they precede e in the walk, so the layer stays sorted).
    const parts = e.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (seen.has(dir)) continue;
      const d = byPath.get(dir);
      if (d) {
        plan.entries.push(d);
        seen.add(dir);
      }
    }
    if (!seen.has(e.path)) {
      plan.entries.push(e);
      seen.add(e.path);
    }
  };

  for (const e of entries) {
    if (dbRel !== undefined && (e.path === dbRel || e.path.startsWith(dbRel + '/'))) {
      // Only the DB itself: lock, journal and temp files are transaction state.
      if (e.path === dbFile) add('db', () => ({ kind: 'db', entries: [] }), e);
      continue;
    }
    const owners = db.owners(e.path);
    if (owners.length === 0) {
      add('unowned', () => ({ kind: 'unowned', entries: [] }), e);
      continue;
    }
    for (const id of owners) {
      const base = db.get(id)?.base === true;
      add(`p:${id}`, () => ({ kind: base ? 'base' : 'package', package: id, entries: [] }), e);
    }
  }

  const order = (p: LayerPlan): number =>
    p.kind === 'base' ? 0 : p.kind === 'unowned' ? 1 : p.kind === 'package' ? 2 : 3;
  const list = [...plans.values()].sort(
    (a, b) =>
      order(a) - order(b) ||
      ((a.package ?? '') < (b.package ?? '') ? -1 : (a.package ?? '') > (b.package ?? '') ? 1 : 0),
  );
  for (const p of list) p.entries = resolveHardlinks(p.entries, byPath);
  return list;
}

/** A hardlink whose first name is in another layer carries the data itself in this one. */
function resolveHardlinks(entries: RootEntry[], byPath: Map<string, RootEntry>): RootEntry[] {
  const here = new Set(entries.map((e) => e.path));
  const movedTo = new Map<string, string>();
  return entries.map((e) => {
    if (e.type !== 'hardlink' || here.has(e.linkTarget!)) return e;
    const first = e.linkTarget!;
    const other = movedTo.get(first);
    if (other !== undefined) return { ...e, linkTarget: other };
    const t = byPath.get(first);
    if (!t || t.type !== 'file') {
      throw new CpmError('E_IMAGE', `hardlink ${e.path} points at ${first}, which is not a file`, {
        context: { path: e.path },
      });
    }
    movedTo.set(first, e.path);
    const copy: RootEntry = { ...t, path: e.path, mode: e.mode, uid: e.uid, gid: e.gid };
    if (e.xattrs) copy.xattrs = e.xattrs;
    return copy;
  });
}

async function buildLayerBlob(
  entries: RootEntry[],
  store: BlobStore,
  compression: LayerCompression,
  level?: number,
): Promise<{ digest: string; diffId: string; size: number }> {
  const diff = new HashingStream();
  const compressed = new PassThrough({ highWaterMark: 1 << 20 });
  const flowing = pipeline(
    Readable.from(tarChunks(entries, tarHeader), { objectMode: false }),
    diff,
    createCompressor(compression, level),
    compressed,
  );
  const stored = store.put(compressed);
  const [, blob] = await Promise.all([flowing, stored]);
  return { digest: blob.digest, diffId: diff.digest(), size: blob.size };
}

function layerLabel(p: { kind: OciLayerKind; package?: string }): string {
  return p.package ? `${p.kind} ${p.package}` : p.kind;
}

/** Builds the image of `root` into `store` (layers, config, manifest blobs). Deterministic. */
export async function buildOciImage(
  root: string,
  store: BlobStore,
  opts: OciImageOptions = {},
): Promise<OciRootImage> {
  const { db, dbDir } = loadRootDb(root, opts.dbDir);
  const epoch = opts.sourceDateEpoch ?? sourceDateEpochFromEnv() ?? 0;
  const compression = opts.compression ?? 'gzip';
  const ov = dbOverlay(db);
  const walker = new RootWalker(root, {
    overlay: ov.overlay,
    overlayPaths: ov.overlayPaths,
    excludes: opts.excludes ?? [],
    sourceDateEpoch: epoch,
    xattrs: opts.xattrs ?? true,
    ...(opts.onWarning ? { onWarning: opts.onWarning } : {}),
  });
  const entries: RootEntry[] = [];
  for await (const e of walker.entries()) entries.push({ ...e, mtime: epoch });
  const rootInfo = await walker.rootInfo();
  const dbRel = relInside(root, dbDir);
  if (dbRel === undefined) {
    opts.onWarning?.(`the DB (${dbDir}) is outside the root: the image carries no DB`);
  }
  // The root directory itself: tar2sqfs-style "./" entry so the image root has the DB's owner.
  const rootEntry: RootEntry = {
    path: '.',
    type: 'dir',
    mode: rootInfo.mode,
    uid: rootInfo.uid,
    gid: rootInfo.gid,
    mtime: epoch,
    size: 0,
  };
  const plans = planLayers(entries, db, dbRel);
  if (plans.length === 0) plans.push({ kind: 'unowned', entries: [] });
  plans[0]!.entries.unshift(rootEntry);

  const limit = opts.concurrency ?? Math.min(4, os.availableParallelism());
  const blobs = await mapLimit(plans, limit, (p) =>
    buildLayerBlob(p.entries, store, compression, opts.level),
  );
  const layers: OciLayerInfo[] = plans.map((p, i) => ({
    kind: p.kind,
    ...(p.package ? { package: p.package } : {}),
    ...blobs[i]!,
    entries: p.entries.length,
  }));

  const created = isoDate(epoch);
  const platform = opts.platform ?? hostPlatform();
  const config: ImageConfig = {
    created,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Labels: {
        'io.cpm.image.packages': db
          .list()
          .map((p) => p.id)
          .join(' '),
      },
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: plans.map((p) => ({ created, created_by: `cpm image oci: ${layerLabel(p)}` })),
  };
  const cfg = await store.putBytes(Buffer.from(JSON.stringify(config)));
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    config: { mediaType: MEDIA.ociConfig, digest: cfg.digest, size: cfg.size },
    layers: layers.map((l) => ({
      mediaType: layerMediaType(compression),
      digest: l.digest,
      size: l.size,
      annotations: { [LAYER_ANNOTATION]: layerLabel(l) },
    })),
    annotations: { 'org.opencontainers.image.created': created },
  };
  const man = await store.putBytes(Buffer.from(JSON.stringify(manifest)));
  return {
    descriptor: { mediaType: MEDIA.ociManifest, digest: man.digest, size: man.size },
    manifest,
    config,
    layers,
  };
}

export interface WriteOciImageOptions extends OciImageOptions, EndpointOptions {
  /** The image name: a registry reference, or oci:DIR[:TAG]. */
  tag: string;
  /** Also write an OCI layout here (oci:DIR[:TAG]; the tag defaults to the reference's). */
  output?: string;
  /** Push to the registry reference `tag`. */
  push?: boolean;
  /** Blob store for push-only builds (cpm.yaml cache_dir); default a temp dir. */
  cacheDir?: string;
}

export interface WriteOciImageResult extends OciRootImage {
  digest: string;
  /** Where the image went, as references. */
  written: string[];
}

/** `cpm image oci`: builds the image of `root` and writes it to a layout and/or a registry. */
export async function writeOciImage(
  root: string,
  opts: WriteOciImageOptions,
): Promise<WriteOciImageResult> {
  const ref = parseImageRef(opts.tag);
  const targets: Array<{ ref: ImageRef; tag: string }> = [];
  const tagOf = (r: ImageRef): string => r.tag ?? ref.tag ?? 'latest';
  if (ref.kind === 'layout') {
    if (opts.push) {
      throw new CpmError('E_USAGE', '--push needs a registry reference as --tag', {
        context: { ref: opts.tag },
      });
    }
    targets.push({ ref, tag: tagOf(ref) });
  }
  if (opts.output) {
    const out = parseImageRef(opts.output);
    if (out.kind !== 'layout') {
      throw new CpmError('E_USAGE', `--output must be oci:DIR[:TAG], got "${opts.output}"`);
    }
    targets.push({ ref: out, tag: tagOf(out) });
  }
  if (ref.kind === 'registry') {
    if (ref.digest) throw new CpmError('E_USAGE', `--tag cannot name a digest: ${opts.tag}`);
    if (opts.push) targets.push({ ref, tag: ref.tag ?? 'latest' });
  }
  if (targets.length === 0) {
    throw new CpmError('E_USAGE', `nothing to write: ${opts.tag} is a registry reference`, {
      hint: 'add --push to push it, or --output oci:DIR to write a layout',
    });
  }
  // Build straight into the first layout, else into the cache (or a temp dir).
  const layoutTarget = targets.find((t) => t.ref.kind === 'layout');
  let tmp: string | undefined;
  let store: BlobStore;
  if (layoutTarget && layoutTarget.ref.kind === 'layout') {
    store = (await OciLayout.create(layoutTarget.ref.dir)).blobs;
  } else if (opts.cacheDir) {
    store = cacheStore(opts.cacheDir);
  } else {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'cpm-image-oci-'));
    store = cacheStore(tmp);
  }
  try {
    const image = await buildOciImage(root, store, opts);
    const written: string[] = [];
    for (const t of targets) {
      const target = await openTarget(t.ref, opts);
      try {
        await pushImage(store, image.descriptor, target, { tag: t.tag });
      } finally {
        await target.close();
      }
      written.push(
        t.ref.kind === 'layout' ? `oci:${t.ref.dir}:${t.tag}` : formatRef({ ...t.ref, tag: t.tag }),
      );
    }
    return { ...image, digest: image.descriptor.digest, written };
  } finally {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}
