/**
 * Moving whole images: pull (source → blob store, with platform selection), push (blob store →
 * target) and copy (both). Blobs move with bounded concurrency; manifests go last so a target
 * never references a blob it does not have.
 */
import { CpmError } from '../errors.js';
import type { Reporter } from '../util/progress.js';
import type { BlobRef, BlobStore } from './blobstore.js';
import type { ImageSource, ImageTarget } from './endpoint.js';
import { hostPlatform, selectPlatform } from './platform.js';
import {
  isIndexMediaType,
  isManifestMediaType,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type Platform,
} from './types.js';

export interface PullOptions {
  /** Platform to pick from an index (default linux + host arch). */
  platform?: Platform;
  /** Parallel blob downloads (default 4). */
  concurrency?: number;
  /** Called as each blob is present in the store. */
  onBlob?: (blob: Descriptor) => void;
  /**
   * Shows the layer downloads: a "download" phase over the layers not yet in the store (their
   * compressed sizes), a task per layer labelled `label`.
   */
  reporter?: Reporter;
  label?: string;
}

export interface PulledImage {
  /** The root the reference named: the index when it was one, else the manifest. */
  root: Descriptor;
  /** The (platform-selected) image manifest, stored in the blob store as a blob. */
  manifestDescriptor: Descriptor;
  manifest: ImageManifest;
  config: ImageConfig;
}

/** Runs `fn` over `items` with at most `limit` in flight; the first failure wins. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, signal: AbortSignal) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  // the first failure is the result: `signal` tells the calls still running to stop at once
  const stop = new AbortController();
  let first: unknown;
  const worker = async (): Promise<void> => {
    while (!stop.signal.aborted && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, stop.signal);
      } catch (e) {
        if (!stop.signal.aborted) {
          first = e;
          stop.abort(e);
        }
        return;
      }
    }
  };
  const n = Math.max(1, Math.min(limit, items.length));
  // every call has settled (cleaned up) before the error is reported
  await Promise.all(Array.from({ length: n }, worker));
  if (stop.signal.aborted) throw first;
  return out;
}

/** JSON bytes of an image part; E_IMAGE naming `what` and its digest when they do not parse. */
export function parseJson<T>(bytes: Buffer, what: string, digest: string): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (e) {
    throw new CpmError('E_IMAGE', `${what} ${digest} is not valid JSON: ${(e as Error).message}`, {
      context: { digest },
    });
  }
}

/** Reads and parses a JSON blob (manifest, index, config) from the store. */
export async function readJsonBlob<T>(store: BlobStore, digest: string, what = 'blob'): Promise<T> {
  return parseJson<T>(await store.read(digest), what, digest);
}

/**
 * Pulls one image into `store`: root manifest/index, the selected platform's manifest, config
 * and layers (all as blobs). Already-stored blobs are not fetched again.
 */
export async function pullImage(
  src: ImageSource,
  store: BlobStore,
  opts: PullOptions = {},
): Promise<PulledImage> {
  const rootRes = await src.getManifest();
  const root: Descriptor = {
    mediaType: rootRes.mediaType,
    digest: rootRes.digest,
    size: rootRes.bytes.length,
  };
  await store.putBytes(rootRes.bytes, { digest: root.digest, size: root.size });
  let manRes = rootRes;
  let manDesc = root;
  if (isIndexMediaType(rootRes.mediaType)) {
    const idx = parseJson<ImageIndex>(rootRes.bytes, 'index', root.digest);
    const pick = selectPlatform(idx.manifests ?? [], opts.platform ?? hostPlatform(), src.name);
    manRes = await src.getManifest(pick.digest);
    // OCI image spec: a descriptor's size is the exact length of the content it names
    if (manRes.bytes.length !== pick.size)
      throw new CpmError(
        'E_IMAGE',
        `${src.name}: manifest ${pick.digest} is ${manRes.bytes.length} bytes, but the index says ${pick.size}`,
        { context: { digest: pick.digest } },
      );
    manDesc = {
      mediaType: manRes.mediaType || pick.mediaType,
      digest: pick.digest,
      size: manRes.bytes.length,
    };
    if (pick.platform) manDesc.platform = pick.platform;
    await store.putBytes(manRes.bytes, { digest: pick.digest, size: pick.size });
  }
  if (!isManifestMediaType(manDesc.mediaType)) {
    throw new CpmError('E_IMAGE', `${src.name}: unsupported manifest type "${manDesc.mediaType}"`, {
      context: { digest: manDesc.digest },
    });
  }
  const manifest = parseJson<ImageManifest>(manRes.bytes, 'manifest', manDesc.digest);
  if (!manifest.config?.digest || !Array.isArray(manifest.layers)) {
    throw new CpmError(
      'E_IMAGE',
      `${src.name}: manifest ${manDesc.digest} lacks config or layers`,
      {
        context: { digest: manDesc.digest },
      },
    );
  }
  const blobs = [manifest.config, ...manifest.layers];
  const reporter = opts.reporter;
  // layers already stored are not fetched again: the download total is what is missing
  const missing = new Set<string>();
  if (reporter && src.localStore?.root !== store.root)
    for (const l of manifest.layers)
      if ((await store.size(l.digest)) !== l.size) missing.add(l.digest);
  if (reporter && missing.size > 0)
    reporter.phase('download', {
      total: [...missing].reduce(
        (n, d) => n + manifest.layers.find((l) => l.digest === d)!.size,
        0,
      ),
      items: missing.size,
      noun: 'layer',
    });
  await mapLimit(blobs, opts.concurrency ?? 4, async (b, signal) => {
    const task =
      // a digest listed twice is one download
      reporter && missing.delete(b.digest)
        ? reporter.task('download', opts.label ?? src.name, { total: b.size, digest: b.digest })
        : undefined;
    // a failed sibling stops this download (body released, partial removed); a task that did
    // not finish stays shown where it stopped
    await src.fetchBlob(b, store, task, signal);
    task?.finish();
    opts.onBlob?.(b);
  });
  const config = await readJsonBlob<ImageConfig>(store, manifest.config.digest, 'config');
  return { root, manifestDescriptor: manDesc, manifest, config };
}

export interface PushOptions {
  /** Parallel blob uploads (default 4). */
  concurrency?: number;
  /** Repository to cross-mount blobs from (registry targets). */
  mountFrom?: string;
  onBlob?: (blob: Descriptor, result: string) => void;
}

/**
 * Pushes the manifest or index `desc` (and everything it references) from `store` to `target`,
 * tagged with `tag` (default the target's tag; null = by digest only). Returns the digest.
 */
export async function pushImage(
  store: BlobStore,
  desc: BlobRef & { mediaType: string },
  target: ImageTarget,
  opts: PushOptions & { tag?: string | null } = {},
): Promise<string> {
  const bytes = await store.read(desc.digest);
  if (isIndexMediaType(desc.mediaType)) {
    const idx = parseJson<ImageIndex>(bytes, 'index', desc.digest);
    for (const m of idx.manifests) {
      // Children of an index may be absent when only one platform was pulled; skip those.
      if (await store.has(m.digest)) await pushImage(store, m, target, { ...opts, tag: null });
    }
  } else {
    const man = parseJson<ImageManifest>(bytes, 'manifest', desc.digest);
    await mapLimit([man.config, ...man.layers], opts.concurrency ?? 4, async (b) => {
      const r = await target.pushBlob(b, store, opts.mountFrom);
      opts.onBlob?.(b, r);
    });
  }
  const tag = opts.tag === null ? undefined : (opts.tag ?? target.tag);
  return target.putManifest(bytes, desc.mediaType, tag);
}

/** Pull from `src` then push to `dst`; uses the source's own store when it is local. */
export async function copyImage(
  src: ImageSource,
  dst: ImageTarget,
  store: BlobStore,
  opts: PullOptions & PushOptions = {},
): Promise<{ digest: string; pulled: PulledImage }> {
  const s = src.localStore ?? store;
  const pulled = await pullImage(src, s, opts);
  const digest = await pushImage(s, pulled.manifestDescriptor, dst, opts);
  return { digest, pulled };
}
