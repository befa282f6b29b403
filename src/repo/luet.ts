/**
 * Read-only access to luet repositories (disk or http layout), for migration: repository.yaml →
 * tree.tar[.gz|.zst] (definition/collection/finalize.yaml) + repository.meta.yaml.tar[...] (the
 * artifact list) → a cpm RepoIndex whose packages point at `name-cat-ver.package.tar*` files.
 * Checksums luet records are verified; nothing is written.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import tar from 'tar-stream';
import { CpmError } from '../errors.js';
import { packageId, SPEC_FIELDS } from '../package/package.js';
import { createDecompressor, sniffCompression, type Compression } from '../util/compress.js';
import type { RepoFiles } from './files.js';
import {
  INDEX_SCHEMA_VERSION,
  canonicalJson,
  type IndexDep,
  type IndexPackage,
  type RepoIndex,
} from './repo-index.js';

interface LuetRepoFile {
  filename?: string;
  compressiontype?: string;
  checksums?: Record<string, string>;
}

const LAYER_MEDIA: Record<Compression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

function compressionOf(name: string | undefined, where: string): Compression {
  switch (name ?? 'none') {
    case '':
    case 'none':
      return 'none';
    case 'gzip':
      return 'gzip';
    case 'zstd':
      return 'zstd';
    default:
      throw new CpmError('E_REPO', `${where}: unknown luet compression type "${name}"`);
  }
}

async function decompress(data: Buffer, c: Compression): Promise<Buffer> {
  // luet sometimes labels files "none" that are compressed (and vice versa); trust the bytes.
  const actual = c === 'none' ? sniffCompression(data.subarray(0, 4)) : c;
  if (actual === 'none') return data;
  return buffer(Readable.from([data]).pipe(createDecompressor(actual)));
}

/** All regular files of a tar, by normalised path. */
async function tarFiles(data: Buffer): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const ex = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (h, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => chunks.push(c as Buffer));
      stream.on('end', () => {
        if (h.type === 'file')
          out.set(path.posix.normalize(h.name.replace(/^\.?\/+/, '')), Buffer.concat(chunks));
        next();
      });
      stream.on('error', reject);
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  Readable.from([data]).pipe(ex);
  await done;
  return out;
}

function deps(v: unknown, where: string): IndexDep[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new CpmError('E_REPO', `${where}: dependency list expected`);
  return v.map((d: Record<string, unknown>) => ({
    category: String(d?.category ?? ''),
    name: String(d?.name ?? ''),
    version: d?.version === undefined || d?.version === null ? '' : String(d.version),
  }));
}

// luet-internal fields that carry build-machine state, not package metadata.
const DROP_KEYS = new Set(['path', 'treedir', 'buildtimestamp', 'dockerfile', 'repository']);

function strMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out[k] = String(x);
  return out;
}

function toPackage(raw: Record<string, unknown>, where: string, finalize: unknown): IndexPackage {
  if (typeof raw.name !== 'string' || raw.name === '')
    throw new CpmError('E_REPO', `${where}: package without a name`, { context: { file: where } });
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw))
    if (!SPEC_FIELDS.has(k) && !DROP_KEYS.has(k)) extra[k] = v;
  const p: IndexPackage = {
    category: String(raw.category ?? ''),
    name: raw.name,
    version: String(raw.version ?? ''),
    requires: deps(raw.requires, where),
    conflicts: deps(raw.conflicts, where),
    provides: deps(raw.provides, where),
    labels: strMap(raw.labels),
    annotations: strMap(raw.annotations),
    uri: Array.isArray(raw.uri) ? raw.uri.map(String) : [],
    hidden: raw.hidden === true,
    extra,
    source: { file: where },
    contentKey: '',
  };
  if (typeof raw.description === 'string') p.description = raw.description;
  if (typeof raw.license === 'string') p.license = raw.license;
  if (finalize !== undefined) p.finalize = finalize;
  return p;
}

/** yaml's parse, loaded when a luet repository is read (not by every command that opens repos). */
let parseYaml: ((text: string) => unknown) | undefined;

function yamlOf(buf: Buffer, where: string): unknown {
  try {
    return parseYaml!(buf.toString('utf8'));
  } catch (e) {
    throw new CpmError('E_REPO', `${where}: ${(e as Error).message.split('\n')[0]}`, {
      context: { file: where },
    });
  }
}

async function fetchRepoFile(files: RepoFiles, f: LuetRepoFile, key: string): Promise<Buffer> {
  if (!f.filename)
    throw new CpmError('E_REPO', `${files.location}: repository.yaml has no repo_files.${key}`);
  const data = await files.read(f.filename);
  const want = f.checksums?.sha256;
  if (want) {
    const got = createHash('sha256').update(data).digest('hex');
    if (got !== want) {
      throw new CpmError(
        'E_DIGEST',
        `${files.location}${f.filename}: sha256 ${got}, repository.yaml says ${want}`,
        {
          context: { path: f.filename, digest: `sha256:${want}` },
        },
      );
    }
  }
  return decompress(data, compressionOf(f.compressiontype, f.filename));
}

/** Reads a luet repository into a cpm index (in memory). Packages carry `artifact`. */
export async function readLuetRepository(
  files: RepoFiles,
  fallbackName = 'luet',
): Promise<RepoIndex> {
  const where = `${files.location}${files.location.endsWith('/') ? '' : '/'}repository.yaml`;
  parseYaml ??= (await import('yaml')).parse;
  const spec = yamlOf(await files.read('repository.yaml'), where) as Record<string, unknown> | null;
  if (!spec || typeof spec !== 'object') throw new CpmError('E_REPO', `${where}: not a mapping`);
  const repoFiles = (spec.repo_files ?? {}) as Record<string, LuetRepoFile>;
  const treeFiles = await tarFiles(await fetchRepoFile(files, repoFiles.tree ?? {}, 'tree'));

  const byId = new Map<string, IndexPackage>();
  const add = (p: IndexPackage): void => {
    if (!byId.has(packageId(p))) byId.set(packageId(p), p);
  };
  for (const [file, buf] of [...treeFiles].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const base = path.posix.basename(file);
    if (base !== 'definition.yaml' && base !== 'collection.yaml') continue;
    const fin = treeFiles.get(path.posix.join(path.posix.dirname(file), 'finalize.yaml'));
    const finalize = fin ? yamlOf(fin, `tree:${file}`) : undefined;
    const doc = yamlOf(buf, `tree:${file}`) as Record<string, unknown> | null;
    if (base === 'definition.yaml') add(toPackage(doc ?? {}, file, finalize));
    else
      for (const [i, stanza] of ((doc?.packages as unknown[]) ?? []).entries())
        add(toPackage((stanza ?? {}) as Record<string, unknown>, `${file}#${i}`, finalize));
  }

  if (repoFiles.meta?.filename) {
    const metaTar = await tarFiles(await fetchRepoFile(files, repoFiles.meta, 'meta'));
    const metaFile = [...metaTar.keys()].find((k) => k.endsWith('repository.meta.yaml'));
    if (!metaFile)
      throw new CpmError('E_REPO', `${files.location}: meta tarball holds no repository.meta.yaml`);
    const meta = yamlOf(metaTar.get(metaFile)!, metaFile) as {
      artifacts?: Array<Record<string, unknown>>;
    };
    for (const [i, a] of (meta?.artifacts ?? []).entries()) {
      const cs = a.compilationspec as Record<string, unknown> | undefined;
      const pkgRaw = (cs?.package ?? a.runtime) as Record<string, unknown> | undefined;
      if (!pkgRaw || typeof a.path !== 'string') {
        throw new CpmError('E_REPO', `${metaFile}: artifacts[${i}] has no path or package`);
      }
      const fromMeta = toPackage(pkgRaw, `${metaFile}#${i}`, undefined);
      const id = packageId(fromMeta);
      const p = byId.get(id) ?? fromMeta;
      byId.set(id, p);
      const sum = (a.checksums as Record<string, string> | undefined)?.sha256;
      if (!sum || !/^[a-f0-9]{64}$/.test(sum))
        throw new CpmError('E_REPO', `${metaFile}: artifact ${id} has no sha256 checksum`);
      const file = path.posix.basename(a.path);
      const c = compressionOf(a.compressiontype as string | undefined, `${metaFile}#${i}`);
      p.artifact = { file, digest: `sha256:${sum}`, mediaType: LAYER_MEDIA[c] };
    }
  }

  const packages = [...byId.values()];
  for (const p of packages) {
    p.contentKey = `sha256:${createHash('sha256')
      .update(canonicalJson({ ...p, contentKey: '' }))
      .digest('hex')}`;
  }
  const lastUpdate = Number(spec.last_update ?? 0);
  return {
    schemaVersion: INDEX_SCHEMA_VERSION,
    repository: {
      name: typeof spec.name === 'string' && spec.name ? spec.name : fallbackName,
      ...(typeof spec.description === 'string' ? { description: spec.description } : {}),
      revision: Number(spec.revision ?? 0) || 0,
      timestamp: Number.isFinite(lastUpdate) ? lastUpdate : 0,
    },
    packages,
  };
}
