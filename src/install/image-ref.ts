/**
 * Installing an image reference as a package (`cpm install oci:DIR[:TAG]`, `cpm install
 * HOST/REPO:TAG`) and distribution bases (`cpm rootfs init --from IMAGE`, `install --base IMAGE`).
 * The image is pulled into the blob store cache (layouts are read in place), and its layers become
 * the LayerSources of one InstallStep, so ownership, conflicts and transactions work as for any
 * repository package. Identity: the cpm metadata in the image when present, otherwise derived from
 * the reference (docs/bases.md).
 *
 * The puller, the layer code and the transaction are imported when an image is pulled: every
 * install loads this module (looksLikeImageRef, installedImage), and a no-op needs none of them
 * (tar-stream, zlib, the worker threads: ≈ 10 ms of a ≈ 130 ms no-op, docs/performance.md).
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { cacheStore } from '../oci/blobstore.js';
import { RegistryEndpoint, openSource, type EndpointOptions } from '../oci/endpoint.js';
import type { PulledImage } from '../oci/image.js';
import { parseImageRef, formatRef, manifestReference, type ImageRef } from '../oci/reference.js';
import type { Platform } from '../oci/types.js';
import { finalizeFromJson } from '../package/finalize.js';
import {
  createSpec,
  familyKey,
  packageId,
  type InstallReason,
  type PackageSpec,
} from '../package/package.js';
import { parseRef } from '../package/ref.js';
import { isValidVersion } from '../package/version.js';
import { InstalledDb, resolveDbDir } from '../rootfs/db.js';
import { silentReporter, type Reporter } from '../util/progress.js';
import { interruptible } from '../util/signals.js';
import type { TransactionOptions, TransactionResult } from '../rootfs/transaction.js';
import type { InstallStep, InstalledPackage } from '../rootfs/types.js';

/** Category of packages whose identity comes from an image reference. */
export const IMAGE_CATEGORY = 'images';

/**
 * Whether a command-line argument names an image rather than a package: `oci:…`, `docker://…`,
 * or a first path component that is a registry host (has "." or ":" or is "localhost"), the same
 * rule the reference parser uses. Package references (`system/cos-setup@1.0`) never match.
 */
export function looksLikeImageRef(arg: string): boolean {
  if (arg.startsWith('oci:') || arg.startsWith('docker://')) return true;
  const slash = arg.indexOf('/');
  if (slash <= 0) return false;
  const host = arg.slice(0, slash);
  if (host.includes('@')) return false; // "cat@1.0/x" is not a host
  return host.includes('.') || host.includes(':') || host === 'localhost' || host.startsWith('[');
}

/**
 * The installed package `refText` names as it is now, found without pulling: a package installed
 * from the same reference whose recorded digest is the one the reference points at — for a digest
 * reference the DB alone answers; a tag costs one HEAD request to the registry (or a read of the
 * layout's index.json). Same reference and same manifest give the same package, so the pull and
 * the transaction would change nothing. undefined otherwise (also when the tag names an index:
 * the DB records the platform manifest), and the caller pulls as usual.
 */
export async function installedImage(
  refText: string,
  db: InstalledDb,
  opts: EndpointOptions = {},
): Promise<InstalledPackage | undefined> {
  const ref = parseImageRef(refText);
  const origin = formatRef(ref);
  const candidates = db.list().filter((p) => !p.base && p.imageDigest && p.origin === origin);
  if (candidates.length === 0) return undefined;
  let digest = ref.kind === 'registry' ? ref.digest : undefined;
  if (!digest) {
    const src = await openSource(ref, opts);
    try {
      digest =
        src instanceof RegistryEndpoint
          ? await src.client.headManifest(src.ref.repository, manifestReference(src.ref))
          : (await src.getManifest()).digest;
    } finally {
      await src.close();
    }
  }
  return candidates.find((p) => p.imageDigest === digest);
}

export interface ImageStepOptions extends EndpointOptions {
  /** Blob store cache directory (config cache_dir). */
  cacheDir: string;
  platform?: Platform;
  /** Parallel layer downloads (default 4). */
  concurrency?: number;
  reason?: InstallReason;
  /** Mark the package as the root's distribution base. */
  base?: boolean;
  /** Override the identity ("category/name@version"), e.g. to name a base "bases/debian@12". */
  id?: string;
  reporter?: Reporter;
}

/** Version for an image without cpm metadata: the tag when it is a valid version, else "0+TAG". */
function versionFrom(ref: ImageRef, pulled: PulledImage): string {
  const tag = ref.tag;
  if (tag && isValidVersion(tag)) return tag;
  const labelled =
    pulled.config.config?.Labels?.['org.opencontainers.image.version'] ??
    pulled.manifest.annotations?.['org.opencontainers.image.version'];
  if (!tag && labelled && isValidVersion(labelled)) return labelled;
  const word = tag ?? `sha256.${pulled.manifestDescriptor.digest.slice(7, 19)}`;
  return `0+${word.replace(/_/g, '.')}`;
}

/** Name for an image without cpm metadata: last path component of the repository or layout dir. */
function nameFrom(ref: ImageRef): string {
  const raw = ref.kind === 'registry' ? ref.repository : path.basename(path.resolve(ref.dir));
  const base = raw.slice(raw.lastIndexOf('/') + 1).toLowerCase();
  const name = base.replace(/[^a-z0-9._+-]+/g, '-').replace(/^[^a-z0-9]+/, '');
  return name === '' ? 'image' : name;
}

/** The identity given with `id` ("category/name@version"). */
function specFromId(id: string): PackageSpec {
  const r = parseRef(id);
  if (!r.category || !r.version || !isValidVersion(r.version))
    throw new CpmError('E_USAGE', `"${id}" must be category/name@version with a valid version`, {
      context: { id },
    });
  return createSpec({ category: r.category, name: r.name, version: r.version });
}

/**
 * Resolves `refText` (manifest, or index → platform), pulls config and layers into the blob store
 * (already-stored blobs are not fetched again; sizes and digests are verified) and returns an
 * InstallStep over the stored layer blobs, in order.
 */
export async function imageInstallStep(
  refText: string,
  opts: ImageStepOptions,
): Promise<InstallStep> {
  const ref = parseImageRef(refText);
  const reporter = opts.reporter ?? silentReporter();
  const [{ pullImage }, { readPackageMetadata }, { fileLayer }] = await Promise.all([
    import('../oci/image.js'),
    import('../oci/package-image.js'),
    import('../rootfs/index.js'),
  ]);
  const store = cacheStore(opts.cacheDir);
  const src = await openSource(ref, opts);
  let pulled: PulledImage;
  // A layout is a blob store already: its layers are read in place, not copied into the cache.
  const blobs = src.localStore ?? store;
  try {
    reporter.step(`pull ${formatRef(ref)}`);
    pulled = await interruptible(() =>
      pullImage(src, blobs, {
        ...(opts.platform ? { platform: opts.platform } : {}),
        ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
        reporter,
        label: formatRef(ref),
      }),
    );
  } catch (e) {
    // the transaction that would end the display does not start
    reporter.end(e);
    throw e;
  } finally {
    await src.close();
  }
  const meta = readPackageMetadata(pulled.config, pulled.manifest);
  let spec: PackageSpec;
  let finalize: InstallStep['finalize'];
  if (opts.id) spec = specFromId(opts.id);
  else if (meta) {
    const { finalize: f, ...rest } = meta;
    spec = rest;
    finalize = finalizeFromJson(f);
  } else
    spec = createSpec({
      category: IMAGE_CATEGORY,
      name: nameFrom(ref),
      version: versionFrom(ref, pulled),
    });

  // OCI image spec: one diff_id per layer, the digest of its uncompressed tar
  const diffIds = pulled.config.rootfs?.diff_ids;
  if (!Array.isArray(diffIds) || diffIds.length !== pulled.manifest.layers.length)
    throw new CpmError(
      'E_IMAGE',
      `${formatRef(ref)}: the image config lists ${Array.isArray(diffIds) ? diffIds.length : 'no'} rootfs.diff_ids for ${pulled.manifest.layers.length} layers`,
      { context: { digest: pulled.manifest.config.digest } },
    );
  const layers = pulled.manifest.layers.map((l, i) => ({
    ...fileLayer(blobs.path(l.digest), l.mediaType, l.digest),
    size: l.size,
    diffId: String(diffIds[i]),
  }));
  const step: InstallStep = {
    spec,
    layers,
    origin: formatRef(ref),
    imageDigest: pulled.manifestDescriptor.digest,
    reason: opts.reason ?? 'explicit',
  };
  if (finalize) step.finalize = finalize;
  if (opts.base) step.base = true;
  return step;
}

/** The step for `--base IMAGE` / `rootfs init --from IMAGE`: an image step marked as the base. */
export function baseInstallStep(refText: string, opts: ImageStepOptions): Promise<InstallStep> {
  return imageInstallStep(refText, { ...opts, base: true, reason: 'explicit' });
}

/** Entries that do not make a root "non-empty": a fresh filesystem's lost+found. */
const IGNORED_ENTRIES = new Set(['lost+found']);

function rootEntries(root: string): string[] {
  try {
    return readdirSync(root).filter((e) => !IGNORED_ENTRIES.has(e));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR')
      throw new CpmError('E_USAGE', `${root} is not a directory`, { context: { path: root } });
    throw e;
  }
}

export interface RootfsInitOptions extends ImageStepOptions, Omit<TransactionOptions, 'reporter'> {
  /** Proceed with a non-empty root; files already there are taken over by the base. */
  force?: boolean;
}

export interface RootfsInitResult extends TransactionResult {
  /** Id of the base package. */
  base: string;
  imageDigest: string;
}

/**
 * `cpm rootfs init --from IMAGE --root DIR`: unpacks every layer of the image in order (whiteouts
 * applied) into DIR as one transaction and records it in the DB as the base. An existing base of
 * another family is replaced in the same transaction (with --force, since the root is not empty).
 */
export async function rootfsInit(
  root: string,
  refText: string,
  opts: RootfsInitOptions,
): Promise<RootfsInitResult> {
  const abs = path.resolve(root);
  const present = rootEntries(abs);
  if (present.length > 0 && !opts.force)
    throw new CpmError(
      'E_USAGE',
      `${abs} is not empty (${present.slice(0, 5).join(', ')}${present.length > 5 ? ', …' : ''})`,
      {
        context: { path: abs },
        hint: 'use an empty directory, or --force to unpack the base over what is there',
      },
    );
  const step = await baseInstallStep(refText, opts);
  const db = InstalledDb.load(resolveDbDir(abs, opts.dbDir));
  const remove = db
    .list()
    .filter((p) => p.base && familyKey(p.spec) !== familyKey(step.spec))
    .map((p) => p.id);
  const { applyTransaction } = await import('../rootfs/transaction.js');
  const r = await applyTransaction(abs, { install: [step], remove }, opts);
  return { ...r, base: packageId(step.spec), imageDigest: step.imageDigest };
}

/** The installed base of a root, if any. */
export function installedBase(root: string, dbDir?: string): string | undefined {
  const db = InstalledDb.load(resolveDbDir(path.resolve(root), dbDir));
  return db.list().find((p) => p.base)?.id;
}
