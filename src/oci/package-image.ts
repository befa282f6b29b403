/**
 * Package images (docs/package-format.md): a plain OCI image with one layer holding the package
 * files; the package metadata rides along as config labels and manifest annotations under
 * `io.cpm.package.*`, plus the full metadata as one JSON value (`io.cpm.package.metadata`), which
 * is what readPackageMetadata() trusts.
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { sortedRecord, specFromJson, specToJson, type SpecJson } from '../package/codec.js';
import { finalizeFromJson, type FinalizeSpec } from '../package/finalize.js';
import type { Dep, PackageSpec } from '../package/package.js';
import type { BlobStore } from './blobstore.js';
import {
  buildLayer,
  defaultSourceDateEpoch,
  type LayerOptions,
  type LayerResult,
} from './layer.js';
import { hostPlatform } from './platform.js';
import {
  MEDIA,
  type Descriptor,
  type ImageConfig,
  type ImageManifest,
  type Platform,
} from './types.js';

export const NS = 'io.cpm.package';
export const METADATA_KEY = `${NS}.metadata`;
export const FORMAT_VERSION = 1;

/** What a package image carries: the PackageSpec plus its finalize spec. */
export interface PackageMetadata extends PackageSpec {
  finalize?: FinalizeSpec;
}

export interface PackageImageOptions extends LayerOptions {
  store: BlobStore;
  finalize?: FinalizeSpec;
  /** Platform recorded in the config (default linux + host arch). */
  platform?: Platform;
}

export interface PackageImage {
  /** The manifest descriptor (push or tag this). */
  descriptor: Descriptor;
  manifest: ImageManifest;
  manifestBytes: Buffer;
  config: ImageConfig;
  layer: LayerResult;
}

/** The JSON document stored under io.cpm.package.metadata. */
interface MetadataJson extends SpecJson {
  formatVersion: number;
  finalize?: FinalizeSpec;
}

const depText = (d: Dep): string =>
  `${d.category ? `${d.category}/` : ''}${d.name}${d.version ? ` ${d.version}` : ''}`;

function toJson(spec: PackageSpec, finalize?: FinalizeSpec): MetadataJson {
  return {
    formatVersion: FORMAT_VERSION,
    ...specToJson(spec, 'image'),
    ...(finalize ? { finalize } : {}),
  };
}

/** The flat `io.cpm.package.*` labels (also used as manifest annotations). */
export function packageLabels(spec: PackageSpec, finalize?: FinalizeSpec): Record<string, string> {
  const l: Record<string, string> = {
    [`${NS}.category`]: spec.category,
    [`${NS}.name`]: spec.name,
    [`${NS}.version`]: spec.version,
    [`${NS}.hidden`]: String(spec.hidden),
    [METADATA_KEY]: JSON.stringify(toJson(spec, finalize)),
  };
  if (spec.requires.length) l[`${NS}.requires`] = spec.requires.map(depText).join(', ');
  if (spec.conflicts.length) l[`${NS}.conflicts`] = spec.conflicts.map(depText).join(', ');
  if (spec.provides.length) l[`${NS}.provides`] = spec.provides.map(depText).join(', ');
  if (spec.description !== undefined) l[`${NS}.description`] = spec.description;
  if (spec.license !== undefined) l[`${NS}.license`] = spec.license;
  if (spec.uri.length) l[`${NS}.uri`] = spec.uri.join(' ');
  if (finalize) l[`${NS}.finalize`] = JSON.stringify(finalize);
  for (const [k, v] of Object.entries(spec.labels)) l[`${NS}.label.${k}`] = v;
  for (const [k, v] of Object.entries(spec.annotations)) l[`${NS}.annotation.${k}`] = v;
  return sortedRecord(l);
}

function isoDate(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

/**
 * Builds the package image for `spec` from the files in `payloadDir` (null = a package without
 * files) into `opts.store`: layer, config and manifest blobs. Deterministic for equal inputs.
 */
export async function buildPackageImage(
  spec: PackageSpec,
  payloadDir: string | null,
  opts: PackageImageOptions,
): Promise<PackageImage> {
  let dir = payloadDir;
  let tmp: string | undefined;
  if (dir === null) {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-empty-'));
    dir = tmp;
  } else if (!(await fsp.stat(dir).catch(() => undefined))?.isDirectory()) {
    throw new CpmError('E_USAGE', `payload ${dir} is not a directory`, { context: { path: dir } });
  }
  let layer: LayerResult;
  try {
    layer = await buildLayer(dir, opts.store, opts);
  } finally {
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  }
  const epoch = opts.sourceDateEpoch ?? defaultSourceDateEpoch();
  const created = isoDate(epoch);
  const platform = opts.platform ?? hostPlatform();
  const labels = packageLabels(spec, opts.finalize);
  const id = `${spec.category ? `${spec.category}/` : ''}${spec.name}@${spec.version}`;
  const config: ImageConfig = {
    created,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: { Labels: labels },
    rootfs: { type: 'layers', diff_ids: [layer.diffId] },
    history: [{ created, created_by: `cpm pack ${id}` }],
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const cfg = await opts.store.putBytes(configBytes);
  const annotations: Record<string, string> = sortedRecord({
    ...labels,
    'org.opencontainers.image.title': id,
    'org.opencontainers.image.version': spec.version,
    'org.opencontainers.image.created': created,
    ...(spec.description !== undefined
      ? { 'org.opencontainers.image.description': spec.description }
      : {}),
    ...(spec.license !== undefined ? { 'org.opencontainers.image.licenses': spec.license } : {}),
  });
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    config: { mediaType: MEDIA.ociConfig, digest: cfg.digest, size: cfg.size },
    layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
    annotations,
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const man = await opts.store.putBytes(manifestBytes);
  return {
    descriptor: { mediaType: MEDIA.ociManifest, digest: man.digest, size: man.size },
    manifest,
    manifestBytes,
    config,
    layer,
  };
}

function bad(msg: string): CpmError {
  return new CpmError('E_IMAGE', `invalid package metadata: ${msg}`);
}

/**
 * The package metadata of an image, from the config label (preferred) or the manifest
 * annotation; undefined when the image is not a cpm package. E_IMAGE when it is malformed.
 */
export function readPackageMetadata(
  config?: Pick<ImageConfig, 'config'> | null,
  manifest?: Pick<ImageManifest, 'annotations'> | null,
): PackageMetadata | undefined {
  const raw = config?.config?.Labels?.[METADATA_KEY] ?? manifest?.annotations?.[METADATA_KEY];
  if (raw === undefined) return undefined;
  let j: Partial<MetadataJson>;
  try {
    j = JSON.parse(raw) as Partial<MetadataJson>;
  } catch (e) {
    throw bad(`${METADATA_KEY} is not JSON (${(e as Error).message})`);
  }
  if (typeof j !== 'object' || j === null) throw bad('not an object');
  if (typeof j.formatVersion !== 'number' || j.formatVersion > FORMAT_VERSION) {
    throw bad(
      `unsupported formatVersion ${String(j.formatVersion)} (this cpm reads ≤ ${FORMAT_VERSION})`,
    );
  }
  if (typeof j.name !== 'string' || j.name === '') throw bad('no name');
  if (typeof j.version !== 'string' || j.version === '') throw bad('no version');
  const spec: PackageMetadata = specFromJson(j, bad);
  const finalize = finalizeFromJson(j.finalize);
  if (finalize) spec.finalize = finalize;
  return spec;
}
