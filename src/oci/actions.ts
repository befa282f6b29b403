/**
 * The operations behind `cpm pack|pull|push|login|logout`, as plain library calls so other areas
 * (repo create, install) and tests use exactly what the CLI uses.
 */
import { CpmError } from '../errors.js';
import type { PackageSpec } from '../package/package.js';
import { removeCredentials, saveCredentials, defaultLoginFile, type Credentials } from './auth.js';
import { cacheStore } from './blobstore.js';
import { openSource, openTarget, type EndpointOptions } from './endpoint.js';
import { pullImage, pushImage, type PulledImage } from './image.js';
import type { FinalizeSpec } from '../package/finalize.js';
import { buildPackageImage, type PackageImage } from './package-image.js';
import type { LayerCompression } from './layer.js';
import { parseImageRef, parseRegistryRef, formatRef } from './reference.js';
import { RegistryClient } from './registry.js';
import type { Platform } from './types.js';
import { human, type Reporter } from '../util/progress.js';
import { interruptible } from '../util/signals.js';

export { cacheStore };

export interface PackOptions extends EndpointOptions {
  cacheDir: string;
  compression?: LayerCompression;
  level?: number;
  sourceDateEpoch?: number;
  finalize?: FinalizeSpec;
  platform?: Platform;
  /** Shows walking, reading and compressing, then the write; ended when the pack ends. */
  reporter?: Reporter;
}

export interface PackResult {
  image: PackageImage;
  /** Where it was written, as given. */
  output: string;
  digest: string;
}

/** Builds the package image of `spec` from `dir` and writes it to `output` (oci:DIR[:TAG] or a registry ref). */
export async function packTo(
  spec: PackageSpec,
  dir: string | null,
  output: string,
  opts: PackOptions,
): Promise<PackResult> {
  const ref = parseImageRef(output);
  const store = cacheStore(opts.cacheDir);
  const reporter = opts.reporter;
  let failure: unknown;
  try {
    return await interruptible(async () => {
      const image = await buildPackageImage(spec, dir, {
        store,
        ...(opts.compression ? { compression: opts.compression } : {}),
        ...(opts.level !== undefined ? { level: opts.level } : {}),
        ...(opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: opts.sourceDateEpoch } : {}),
        ...(opts.finalize ? { finalize: opts.finalize } : {}),
        ...(opts.platform ? { platform: opts.platform } : {}),
        ...(reporter ? { reporter, label: packageLabel(spec) } : {}),
      });
      const l = image.layer;
      reporter?.step(
        `layer ${l.digest} ${human(l.size)} (${opts.compression ?? 'gzip'}); write ${output}`,
      );
      const target = await openTarget(ref, opts);
      try {
        const digest = await pushImage(store, image.descriptor, target);
        return { image, output, digest };
      } finally {
        await target.close();
      }
    });
  } catch (e) {
    failure = e;
    throw e;
  } finally {
    reporter?.end(failure);
  }
}

function packageLabel(spec: PackageSpec): string {
  return `${spec.category ? `${spec.category}/` : ''}${spec.name}@${spec.version}`;
}

export interface PullCliOptions extends EndpointOptions {
  cacheDir: string;
  platform?: Platform;
  concurrency?: number;
  /** Also write the image to this oci:DIR[:TAG] layout. */
  output?: string;
  /** Shows the layer downloads; ended (summary line) when the pull ends. */
  reporter?: Reporter;
}

export interface PullResult {
  ref: string;
  pulled: PulledImage;
}

/** Pulls `ref` into the cache (and into `opts.output` when given). */
export async function pull(refText: string, opts: PullCliOptions): Promise<PullResult> {
  const ref = parseImageRef(refText);
  const store = cacheStore(opts.cacheDir);
  const src = await openSource(ref, opts);
  let failure: unknown;
  try {
    const pulled = await interruptible(() =>
      pullImage(src, src.localStore ?? store, {
        ...(opts.platform ? { platform: opts.platform } : {}),
        ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
        ...(opts.reporter ? { reporter: opts.reporter, label: formatRef(ref) } : {}),
      }),
    );
    if (opts.output) {
      const outRef = parseImageRef(opts.output);
      if (outRef.kind !== 'layout') {
        throw new CpmError('E_USAGE', `--output must be oci:DIR[:TAG], got "${opts.output}"`);
      }
      const dst = await openTarget(outRef);
      // Tag defaults to the source tag so `oci:DIR` alone keeps the name.
      const tag =
        outRef.tag ??
        (ref.kind === 'registry' ? (ref.tag ?? (ref.digest ? undefined : 'latest')) : ref.tag);
      await pushImage(
        src.localStore ?? store,
        pulled.manifestDescriptor,
        dst,
        tag ? { tag } : { tag: null },
      );
    }
    return { ref: formatRef(ref), pulled };
  } catch (e) {
    failure = e;
    throw e;
  } finally {
    opts.reporter?.end(failure);
    await src.close();
  }
}

export interface PushCliOptions extends EndpointOptions {
  cacheDir: string;
  platform?: Platform;
  concurrency?: number;
  mountFrom?: string;
}

/** Copies `source` (oci:DIR[:TAG] or a registry ref) to the registry ref `dest`; returns the manifest digest. */
export async function push(source: string, dest: string, opts: PushCliOptions): Promise<string> {
  const srcRef = parseImageRef(source);
  const dstRef = parseImageRef(dest);
  const store = cacheStore(opts.cacheDir);
  const src = await openSource(srcRef, opts);
  const dst = await openTarget(dstRef, opts);
  try {
    const s = src.localStore ?? store;
    const pulled = await pullImage(src, s, {
      ...(opts.platform ? { platform: opts.platform } : {}),
      ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
    });
    return await pushImage(s, pulled.manifestDescriptor, dst, {
      ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
      ...(opts.mountFrom ? { mountFrom: opts.mountFrom } : {}),
    });
  } finally {
    await src.close();
    await dst.close();
  }
}

/** Checks `creds` against the registry (GET /v2/, token flow included), then stores them. */
export async function login(
  registry: string,
  creds: Credentials,
  opts: EndpointOptions & { authFile?: string } = {},
): Promise<string> {
  const host = registry.includes('/')
    ? parseRegistryRef(registry).registry
    : registry.toLowerCase();
  const client = new RegistryClient(host, { ...opts, credentials: creds });
  try {
    await client.ping();
  } finally {
    await client.close();
  }
  const file = opts.authFile ?? defaultLoginFile();
  await saveCredentials(host, creds, file);
  return file;
}

export async function logout(registry: string, opts: { authFile?: string } = {}): Promise<boolean> {
  return removeCredentials(registry.toLowerCase(), opts.authFile ?? defaultLoginFile());
}
