/**
 * The repository index: repository metadata plus every package's full metadata and image
 * location, as canonical JSON (sorted keys, packages in a fixed order) compressed with gzip or
 * zstd. Identical input gives byte-identical output, so its digest names its content.
 * Format described in docs/repository.md.
 */
import { isAscii } from 'node:buffer';
import { CpmError } from '../errors.js';
import { depFromJson, depToJson, type DepJson } from '../package/codec.js';
import {
  createSpec,
  familyKey,
  packageId,
  type Dep,
  type PackageSpec,
  type SpecFields,
} from '../package/package.js';
import { compareVersions } from '../package/version.js';
import type { PackageTable } from './index-table.js';
import { encodeV4, gzipMembers, gzipParts, isV4Text, openV4, V4Index } from './index-v4.js';
import {
  createCompressor,
  createDecompressor,
  sniffCompression,
  type Compression,
} from '../util/compress.js';
import { zlib } from '../util/lazy-builtins.js';
import { sha256Hex } from '../util/sha256.js';

/**
 * 4: columns a reader need not parse whole (index-v4.ts); gzip as one member per column.
 * 3: as 2, with fields at their default left out of each package (empty labels, annotations,
 * extra, uri and dependency lists, hidden false); readers put the defaults back.
 * 2: each of requires/conflicts/provides is one string of compact dependencies joined by "|"
 * ("category/name selector|…", "" for none), or a list of entries when one of them has no compact
 * form. 1: lists of objects. 1 and 2 are still read.
 */
export const INDEX_SCHEMA_VERSION = 4;
const READABLE_SCHEMA_VERSIONS = [1, 2, 3, 4];

/** The defaults schema 3 leaves out, shared by every package that has them (never mutated). */
const EMPTY_MAP: Record<string, never> = Object.freeze({});
const EMPTY_LIST: string[] = Object.freeze([]) as unknown as string[];
/** OCI 1.1 artifactType of the index manifest, and the base media type of the index blob. */
export const INDEX_ARTIFACT_TYPE = 'application/vnd.cpm.repository.index.v1';
export const INDEX_MEDIA_TYPE = 'application/vnd.cpm.repository.index.v1+json';

export interface IndexLayer {
  digest: string;
  mediaType: string;
  size: number;
}

/**
 * Where a package's image is, relative to the repository root so a mirrored copy stays valid:
 * registry repository `<ns>/<repository>:<tag>`, layout ref name `layoutTag(repository, tag)`.
 */
export interface IndexImage {
  /** "category/name" ("name" for an empty category). */
  repository: string;
  /** encodeTag(version). */
  tag: string;
  manifestDigest: string;
  manifestMediaType: string;
  manifestSize: number;
  layers: IndexLayer[];
}

export interface IndexArtifact {
  /** File name relative to the repository root. */
  file: string;
  digest: string;
  /** The tar's media type as if it were an OCI layer (tar, tar+gzip, tar+zstd). */
  mediaType: string;
}

/** A dependency in object form (package/codec.ts). */
export type IndexDep = DepJson;

/**
 * A dependency as the index holds it: the compact text "category/name selector" ("name" alone for
 * an empty category and selector), or the object form when the text would not round-trip. Text
 * keeps the index JSON small and fast to parse; it is turned into a Dep only when the resolver
 * touches the package.
 */
export type IndexDepEntry = string | IndexDep;
/** A dependency list as the index holds it: compact entries joined by "|", or a list of entries. */
export type IndexDepList = string | IndexDepEntry[];

/** One package as stored in the index: the PackageSpec fields, finalize, image, content key. */
export interface IndexPackage extends SpecFields<IndexDepList> {
  extra: Record<string, unknown>;
  /** Definition file relative to the tree root (and line), for `cpm info`. */
  source?: { file: string; line?: number };
  /** The finalize spec (finalize.yaml) as loaded by the tree, verbatim JSON. */
  finalize?: unknown;
  /** Absent for metadata-only (meta) packages: nothing to fetch. */
  image?: IndexImage;
  /** Packages of a luet repository: a plain `name-cat-ver.package.tar*` file instead of an image. */
  artifact?: IndexArtifact;
  /** sha256 over everything that goes into the image; equal keys → the image is reused. */
  contentKey: string;
}

export interface RepoMeta {
  name: string;
  description?: string;
  /** Bumped by `repo create` only when the package set changed. */
  revision: number;
  /** Unix seconds: SOURCE_DATE_EPOCH or the newest tree file, never the wall clock. */
  timestamp: number;
}

export interface RepoIndex {
  schemaVersion: number;
  repository: RepoMeta;
  packages: IndexPackage[];
}

/** JSON with object keys sorted at every level: the one serialisation that makes bytes stable. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(o).sort()) if (o[k] !== undefined) out[k] = sortKeys(o[k]);
    return out;
  }
  return v;
}

/** The package order inside an index: family key, then version oldest → newest. */
export function comparePackages(a: IndexPackage, b: IndexPackage): number {
  const fa = familyKey(a);
  const fb = familyKey(b);
  if (fa !== fb) return fa < fb ? -1 : 1;
  return (
    compareVersions(a.version, b.version) ||
    (a.version < b.version ? -1 : a.version > b.version ? 1 : 0)
  );
}

export const depToIndex: (d: Dep) => IndexDep = depToJson;

const plainPart = (s: string): boolean => !s.includes('/') && !s.includes(' ');

/** The compact form of a dependency: its text when that parses back to the same fields. */
export function compactDep(d: IndexDepEntry): IndexDepEntry {
  if (typeof d === 'string') return d;
  if (d.name === '' || !plainPart(d.name) || !plainPart(d.category)) return d;
  const fam = d.category ? `${d.category}/${d.name}` : d.name;
  return d.version ? `${fam} ${d.version}` : fam;
}

const SEP = '|';

/** The entries of a dependency list, whichever form it has. */
export function indexDeps(list: IndexDepList): IndexDepEntry[] {
  if (typeof list !== 'string') return list;
  return list === '' ? [] : list.split(SEP);
}

/** The compact form of a dependency list: one joined string when every entry allows it. */
export function compactDeps(list: IndexDepList): IndexDepList {
  if (typeof list === 'string') return list;
  const out = list.map(compactDep);
  return out.every((e) => typeof e === 'string' && e !== '' && !e.includes(SEP))
    ? out.join(SEP)
    : out;
}

/** The object form of an index dependency entry. */
export function indexDep(e: IndexDepEntry): IndexDep {
  if (typeof e !== 'string') return e;
  const sp = e.indexOf(' ');
  const fam = sp < 0 ? e : e.slice(0, sp);
  const slash = fam.indexOf('/');
  return {
    category: slash < 0 ? '' : fam.slice(0, slash),
    name: slash < 0 ? fam : fam.slice(slash + 1),
    version: sp < 0 ? '' : e.slice(sp + 1),
  };
}

/** familyKey() of an index dependency entry, without building the object. */
export function indexDepFamily(e: IndexDepEntry): string {
  if (typeof e !== 'string') return familyKey(e);
  const sp = e.indexOf(' ');
  return sp < 0 ? e : e.slice(0, sp);
}

/** "category/name selector" for display, whichever form the entry has. */
export function indexDepText(e: IndexDepEntry): string {
  if (typeof e === 'string') return e;
  const fam = familyKey(e);
  return e.version ? `${fam} ${e.version}` : fam;
}

/** An index entry with every dependency in object form (for display and JSON output). */
export type ExpandedIndexPackage = Omit<IndexPackage, 'requires' | 'conflicts' | 'provides'> & {
  requires: IndexDep[];
  conflicts: IndexDep[];
  provides: IndexDep[];
};

export function expandIndexPackage(p: IndexPackage): ExpandedIndexPackage {
  return {
    ...p,
    requires: indexDeps(p.requires).map(indexDep),
    conflicts: indexDeps(p.conflicts).map(indexDep),
    provides: indexDeps(p.provides).map(indexDep),
  };
}

const isEmptyMap = (o: unknown): boolean =>
  o !== null && typeof o === 'object' && !Array.isArray(o) && Object.keys(o).length === 0;

/**
 * An index entry as serializeIndex writes it: dependencies in compact form, fields at their
 * default left out (schema 3). parseIndex puts them back, so the result reads as the input.
 */
export function compactIndexPackage(p: IndexPackage): IndexPackage {
  const out = {
    ...p,
    requires: compactDeps(p.requires),
    conflicts: compactDeps(p.conflicts),
    provides: compactDeps(p.provides),
  } as Partial<IndexPackage>;
  for (const k of ['requires', 'conflicts', 'provides'] as const) if (out[k] === '') delete out[k];
  for (const k of ['labels', 'annotations', 'extra'] as const)
    if (isEmptyMap(out[k])) delete out[k];
  if (Array.isArray(out.uri) && out.uri.length === 0) delete out.uri;
  if (out.hidden === false) delete out.hidden;
  return out as IndexPackage;
}

/** An output chunk for inflating `gz` whole: ISIZE (last member's size mod 4 GiB), bounded. */
function gzipChunk(gz: Buffer): number {
  const isize = gz.length >= 18 ? gz.readUInt32LE(gz.length - 4) : 0;
  return Math.min(Math.max(isize + 1, 64 * 1024), 256 * 1024 * 1024);
}

/** Media type of the index blob for a compression. */
export function indexMediaType(c: Compression): string {
  return c === 'none' ? INDEX_MEDIA_TYPE : `${INDEX_MEDIA_TYPE}+${c}`;
}

export function compressionOfIndexMediaType(mt: string): Compression {
  if (mt === INDEX_MEDIA_TYPE) return 'none';
  if (mt === `${INDEX_MEDIA_TYPE}+gzip`) return 'gzip';
  if (mt === `${INDEX_MEDIA_TYPE}+zstd`) return 'zstd';
  throw new CpmError('E_REPO', `unknown repository index media type "${mt}"`);
}

/** Runs bytes through a (de)compressor; chunks collected by hand (stream/consumers goes via a Blob, an extra copy). */
async function transform(data: Buffer, t: NodeJS.ReadWriteStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await new Promise<void>((res, rej) => {
    t.on('data', (c: Buffer) => chunks.push(c));
    t.on('end', res);
    t.on('error', rej);
    t.end(data);
  });
  return Buffer.concat(chunks);
}

/**
 * Serialises an index in the current schema (index-v4.ts): packages compact and sorted, in
 * columns, compressed (level fixed → stable bytes; gzip one member per column).
 */
export async function serializeIndex(
  index: RepoIndex,
  compression: Compression = 'gzip',
): Promise<{ data: Buffer; digest: string; mediaType: string }> {
  const packages = index.packages.map(compactIndexPackage).sort(comparePackages);
  for (let i = 1; i < packages.length; i++) {
    if (packageId(packages[i - 1]!) === packageId(packages[i]!))
      throw new CpmError('E_REPO', `duplicate package ${packageId(packages[i]!)} in index`);
  }
  const parts = encodeV4(index.repository, packages);
  let data: Buffer;
  if (compression === 'gzip') data = gzipParts(parts, 9);
  else {
    const text = Buffer.from(parts.join(''), 'utf8');
    data = compression === 'none' ? text : await transform(text, createCompressor(compression, 19));
  }
  return {
    data,
    digest: `sha256:${sha256Hex(data)}`,
    mediaType: indexMediaType(compression),
  };
}

/** The compact table of a schema 4 index (index-table.ts), or undefined for other indexes. */
export function tableOfIndex(index: RepoIndex): PackageTable | undefined {
  return index instanceof V4Index ? index.table : undefined;
}

/** How many packages an index holds, without reading every entry of a schema 4 index. */
export function packageCount(index: RepoIndex): number {
  return index instanceof V4Index ? index.table.size : index.packages.length;
}

/** Parses index bytes (compression sniffed) and validates the shape; `where` names the source. */
export async function parseIndex(data: Buffer, where: string): Promise<RepoIndex> {
  const c = sniffCompression(data.subarray(0, 4));
  // schema 4 in gzip: inflate only the members that are used, as they are used
  const members = c === 'gzip' ? gzipMembers(data) : undefined;
  if (members) return openV4(data, members, where, READABLE_SCHEMA_VERSIONS);
  let json: Buffer;
  try {
    // gzip in one synchronous call with one output chunk of the size the trailer gives: the
    // stream (or zlib.gunzip) inflates 16 KiB at a time, each a thread-pool round trip (1,600 for
    // the 26 MB Debian index). zstd may be a process.
    json =
      c === 'none'
        ? data
        : c === 'gzip'
          ? zlib().gunzipSync(data, { chunkSize: gzipChunk(data) })
          : await transform(data, createDecompressor(c));
  } catch (e) {
    throw new CpmError(
      'E_REPO',
      `${where}: cannot decompress repository index: ${(e as Error).message}`,
      {
        context: { path: where },
        cause: e,
      },
    );
  }
  if (isV4Text(json)) return openV4(json, undefined, where, READABLE_SCHEMA_VERSIONS);
  let raw: unknown;
  try {
    // ASCII (the usual index) decodes as latin1: a plain copy, no UTF-8 decoding.
    raw = JSON.parse(json.toString(isAscii(json) ? 'latin1' : 'utf8'));
  } catch (e) {
    throw new CpmError(
      'E_REPO',
      `${where}: repository index is not JSON: ${(e as Error).message}`,
      {
        context: { path: where },
      },
    );
  }
  return validateIndex(raw, where);
}

function validateIndex(raw: unknown, where: string): RepoIndex {
  const fail = (msg: string): never => {
    throw new CpmError('E_REPO', `${where}: invalid repository index: ${msg}`, {
      context: { path: where },
    });
  };
  if (typeof raw !== 'object' || raw === null) return fail('not an object');
  const r = raw as Record<string, unknown>;
  if (!READABLE_SCHEMA_VERSIONS.includes(r.schemaVersion as number))
    fail(
      `schemaVersion ${String(r.schemaVersion)} (this cpm reads ${READABLE_SCHEMA_VERSIONS.join(', ')})`,
    );
  const repo = r.repository as Record<string, unknown> | undefined;
  if (!repo || typeof repo.name !== 'string') fail('repository.name missing');
  if (typeof repo!.revision !== 'number' || typeof repo!.timestamp !== 'number')
    fail('repository.revision/timestamp must be numbers');
  if (!Array.isArray(r.packages)) fail('packages must be a list');
  const defaults = (r.schemaVersion as number) >= 3;
  (r.packages as unknown[]).forEach((p, i) => {
    const o = p as Record<string, unknown>;
    if (
      typeof o?.name !== 'string' ||
      typeof o.category !== 'string' ||
      typeof o.version !== 'string'
    )
      fail(`packages[${i}]: category/name/version must be strings`);
    if (defaults) {
      // Schema 3 leaves out what is at its default: put it back (shared, frozen empties).
      o.requires ??= '';
      o.conflicts ??= '';
      o.provides ??= '';
      o.labels ??= EMPTY_MAP;
      o.annotations ??= EMPTY_MAP;
      o.extra ??= EMPTY_MAP;
      o.uri ??= EMPTY_LIST;
      o.hidden ??= false;
    }
    for (const k of ['requires', 'conflicts', 'provides'])
      if (!Array.isArray(o[k]) && typeof o[k] !== 'string')
        fail(`packages[${i}] (${o.name}): "${k}" must be a list or a string`);
    if (!Array.isArray(o.uri)) fail(`packages[${i}] (${o.name}): "uri" must be a list`);
    const img = o.image as Record<string, unknown> | undefined;
    if (img !== undefined) {
      if (typeof img.repository !== 'string' || typeof img.tag !== 'string')
        fail(`packages[${i}] (${o.name}): image.repository/tag missing`);
      if (
        typeof img.manifestDigest !== 'string' ||
        !/^sha256:[a-f0-9]{64}$/.test(img.manifestDigest)
      )
        fail(`packages[${i}] (${o.name}): image.manifestDigest is not a sha256 digest`);
      if (!Array.isArray(img.layers)) fail(`packages[${i}] (${o.name}): image.layers missing`);
    }
  });
  return raw as RepoIndex;
}

/**
 * The resolver's view of an index entry. Not specFromJson: parseIndex checked the shape once, and
 * this runs for every package the resolver touches.
 */
export function toPackageSpec(p: IndexPackage): PackageSpec {
  const deps = (list: IndexDepList): Dep[] =>
    indexDeps(list).map((e) => {
      const d = depFromJson(e);
      if (!d)
        throw new CpmError('E_REPO', `${packageId(p)}: dependency "${String(e)}" has no name`);
      return d;
    });
  return createSpec({
    category: p.category,
    name: p.name,
    version: p.version,
    requires: deps(p.requires),
    conflicts: deps(p.conflicts),
    provides: deps(p.provides),
    labels: p.labels ?? {},
    annotations: p.annotations ?? {},
    uri: p.uri ?? [],
    hidden: p.hidden ?? false,
    extra: p.extra ?? {},
    ...(p.description !== undefined ? { description: p.description } : {}),
    ...(p.license !== undefined ? { license: p.license } : {}),
    ...(p.source ? { source: { ...p.source } } : {}),
  });
}
