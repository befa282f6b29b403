/**
 * Reading a repository of any type: fetch its index, name a package's image, open a layer.
 *   dir   OCI image layout on disk          (dir:///path or a plain path)
 *   http  the same layout on a static server (http(s)://host/path/)
 *   oci   a registry namespace               (oci://host[:port]/ns)
 *   luet  a luet disk/http repository        (path or http(s) URL), read-only, for migration
 */
import path from 'node:path';
import type { Readable, Transform, TransformCallback } from 'node:stream';
import { CpmError } from '../errors.js';
import { BlobStore } from '../oci/blobstore.js';
import { findCredentials } from '../oci/auth.js';
import { RegistryClient } from '../oci/registry.js';
import { REF_NAME } from '../oci/layout.js';
import type { RepoType } from './config.js';
import type { TransferProgress } from '../util/progress.js';
import { nodeCrypto, stream } from '../util/lazy-builtins.js';
import { sha256Hex } from '../util/sha256.js';
import { LocalFiles, openFiles, type RepoFiles } from './files.js';
import { indexLayerOf, parseIndexBlob } from './index-artifact.js';
import {
  serializeIndex,
  type IndexLayer,
  type IndexPackage,
  type RepoIndex,
} from './repo-index.js';
import { INDEX_TAG, layoutTag } from './tags.js';

export interface FetchedIndex {
  index: RepoIndex;
  /** The index bytes as fetched (compressed), for the cache. */
  data: Buffer;
  digest: string;
}

export interface RepoReader {
  readonly type: RepoType;
  readonly url: string;
  fetchIndex(): Promise<FetchedIndex>;
  /** A reference skopeo/crane understand where one exists (dir, oci); a URL otherwise. */
  imageRef(p: IndexPackage): string | undefined;
  /** A layer (or luet artifact) stream; it errors with E_DIGEST at the end on any mismatch. */
  openLayer(p: IndexPackage, layer: IndexLayer): Promise<Readable>;
  /**
   * openLayer() hashes what it streams (dir, http, luet) rather than handing over a cached copy
   * that was verified when it was fetched (oci): a reader of the stream need not hash it again.
   */
  readonly streamVerifies?: boolean;
  /** Drops the cached copy of a layer that failed verification (readers with a blob cache). */
  evictLayer?(p: IndexPackage, layer: IndexLayer): Promise<void>;
  /**
   * Where the layer's blob is (or will be, once fetched) a verified local file: the blob cache of
   * a registry reader. The extractor reads that file itself (LayerSource.file).
   */
  layerFile?(p: IndexPackage, layer: IndexLayer): string | undefined;
  /**
   * Repositories on disk (dir, luet): the layer's blob opened and checked to be a regular file
   * inside the repository (RepoFiles.openFd), as a descriptor at offset 0 that the extractor reads
   * itself and closes (LayerSource.openFile). Its digest and size are then checked by the
   * extractor alone, which names layerWhere() in a mismatch.
   */
  openLayerFile?(p: IndexPackage, layer: IndexLayer): Promise<number>;
  /** Where a layer's blob is read from (a path or URL), for messages. */
  layerWhere?(p: IndexPackage, layer: IndexLayer): string;
  /**
   * Readers that download into a cache: bytes of `layer` still to fetch (0 when cached), and the
   * download itself, reporting bytes as they arrive; `signal` abandons it (no partial kept).
   * openLayer() fetches too, without progress.
   */
  layerMissing?(p: IndexPackage, layer: IndexLayer): Promise<number>;
  fetchLayer?(
    p: IndexPackage,
    layer: IndexLayer,
    progress: TransferProgress,
    signal?: AbortSignal,
  ): Promise<void>;
  close(): Promise<void>;
}

export interface ReaderOptions {
  /** Verify TLS certificates (repo `verify`). */
  tlsVerify?: boolean;
  /** Credentials key (repo `auth`); default: the registry host. */
  auth?: string;
  /** Blob cache for registry downloads (cache_dir). */
  blobCache?: BlobStore;
  plainHttp?: boolean;
  /** Repo `insecure`: plain http to a non-loopback registry. */
  insecure?: boolean;
  /** Extra CA certificates (PEM) for https (repo `ca_file`). */
  ca?: string | Buffer;
}

function filesOptions(opts: ReaderOptions): { tlsVerify: boolean; ca?: string | Buffer } {
  return { tlsVerify: opts.tlsVerify ?? true, ...(opts.ca !== undefined ? { ca: opts.ca } : {}) };
}

/**
 * `body` through verifying(). A pipeline, not pipe(): a reader that stops early (a layer that
 * does not decompress) destroys the check and with it the body, which pipe() left open and
 * paused: an http:// response was then never consumed nor closed, and the command never ended.
 */
function checked(body: Readable, layer: IndexLayer, where: string): Readable {
  return stream().pipeline(body, verifying(layer.digest, layer.size, where), () => undefined);
}

/** Passes bytes through, failing at the end unless they hash to `digest` (and match `size`). */
export function verifying(digest: string, size: number | undefined, where: string): Transform {
  const h = nodeCrypto().createHash('sha256');
  let n = 0;
  return new (stream().Transform)({
    transform(chunk: Buffer, _e, cb: TransformCallback) {
      h.update(chunk);
      n += chunk.length;
      if (size !== undefined && n > size) {
        cb(
          new CpmError('E_DIGEST', `${where}: more than the expected ${size} bytes`, {
            context: { digest },
          }),
        );
        return;
      }
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      const got = `sha256:${h.digest('hex')}`;
      if (got !== digest || (size !== undefined && n !== size)) {
        cb(
          new CpmError('E_DIGEST', `${where}: content is ${got} (${n} bytes), expected ${digest}`, {
            context: { digest, path: where },
          }),
        );
        return;
      }
      cb();
    },
  });
}

function blobPath(digest: string): string {
  if (!/^sha256:[a-f0-9]{64}$/.test(digest))
    throw new CpmError('E_DIGEST', `invalid digest "${digest}"`);
  return `blobs/sha256/${digest.slice(7)}`;
}

/** dir and http: an OCI image layout read through RepoFiles. */
export class LayoutReader implements RepoReader {
  readonly streamVerifies = true;
  private readonly files: RepoFiles;
  constructor(
    readonly type: 'dir' | 'http',
    readonly url: string,
    opts: ReaderOptions = {},
  ) {
    const files = openFiles(url, filesOptions(opts));
    this.files = files;
    if (files instanceof LocalFiles)
      this.openLayerFile = (_p, layer) => files.openFd(blobPath(layer.digest));
  }

  async fetchIndex(): Promise<FetchedIndex> {
    const where = this.files.location;
    let idx: {
      manifests?: Array<{ digest: string; size: number; annotations?: Record<string, string> }>;
    };
    try {
      idx = JSON.parse((await this.files.read('index.json')).toString('utf8')) as typeof idx;
    } catch (e) {
      if (e instanceof CpmError && e.code === 'E_NOT_FOUND') {
        throw new CpmError(
          'E_REPO',
          `${where}: no index.json — not a cpm ${this.type} repository`,
          {
            hint: 'build one with `cpm repo create --tree DIR --output dir://PATH`',
            context: { path: where },
            cause: e,
          },
        );
      }
      if (e instanceof CpmError) throw e;
      throw new CpmError('E_REPO', `${where}index.json: ${(e as Error).message}`, {
        context: { path: where },
      });
    }
    const desc = idx.manifests?.find((m) => m.annotations?.[REF_NAME] === INDEX_TAG);
    if (!desc) {
      throw new CpmError(
        'E_REPO',
        `${where}: the layout has no "${INDEX_TAG}" entry — not a cpm repository`,
        {
          context: { path: where },
        },
      );
    }
    const manifest = await this.files.read(blobPath(desc.digest));
    if (`sha256:${sha256Hex(manifest)}` !== desc.digest) {
      throw new CpmError('E_DIGEST', `${where}: index manifest does not match ${desc.digest}`, {
        context: { digest: desc.digest },
      });
    }
    const layer = indexLayerOf(manifest, where);
    const data = layer.embedded ?? (await this.files.read(blobPath(layer.digest)));
    return { index: await parseIndexBlob(data, layer, where), data, digest: layer.digest };
  }

  imageRef(p: IndexPackage): string | undefined {
    if (!p.image) return undefined;
    const tag = layoutTag(p.image.repository, p.image.tag);
    return this.type === 'dir'
      ? `oci:${this.files.location}:${tag}`
      : `${this.files.location}#${tag}`;
  }

  async openLayer(p: IndexPackage, layer: IndexLayer): Promise<Readable> {
    return checked(await this.files.open(blobPath(layer.digest)), layer, this.layerWhere(p, layer));
  }

  layerWhere(_p: IndexPackage, layer: IndexLayer): string {
    return `${this.files.location}${this.type === 'dir' ? '/' : ''}${blobPath(layer.digest)}`;
  }

  readonly openLayerFile?: (p: IndexPackage, layer: IndexLayer) => Promise<number>;

  close(): Promise<void> {
    return this.files.close();
  }
}

/** `oci://host[:port]/namespace` → parts. */
export function parseOciUrl(url: string): { registry: string; namespace: string } {
  const m = /^oci:\/\/([^/]+)\/(.+?)\/*$/.exec(url);
  if (!m) {
    throw new CpmError('E_USAGE', `"${url}" is not an oci:// repository URL`, {
      hint: 'write oci://HOST[:PORT]/NAMESPACE',
    });
  }
  return { registry: m[1]!.toLowerCase(), namespace: m[2]! };
}

export class RegistryReader implements RepoReader {
  readonly type = 'oci' as const;
  readonly client: RegistryClient;
  readonly registry: string;
  readonly namespace: string;
  private readonly cache: BlobStore | undefined;

  constructor(
    readonly url: string,
    opts: ReaderOptions = {},
  ) {
    const { registry, namespace } = parseOciUrl(url);
    this.registry = registry;
    this.namespace = namespace;
    this.cache = opts.blobCache;
    this.client = new RegistryClient(registry, {
      tlsVerify: opts.tlsVerify ?? true,
      ...(opts.insecure ? { insecure: true } : {}),
      ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
      // `auth` names another credentials entry (e.g. a mirror sharing the upstream's login).
      ...(opts.auth ? { credentials: findCredentials(opts.auth) ?? null } : {}),
      ...(opts.plainHttp !== undefined ? { plainHttp: opts.plainHttp } : {}),
    });
  }

  async fetchIndex(): Promise<FetchedIndex> {
    const where = `${this.registry}/${this.namespace}:${INDEX_TAG}`;
    let m;
    try {
      m = await this.client.getManifest(this.namespace, INDEX_TAG);
    } catch (e) {
      if (e instanceof CpmError && e.code === 'E_NOT_FOUND') {
        throw new CpmError('E_REPO', `${where}: no repository index — not a cpm oci repository`, {
          hint: 'publish one with `cpm repo create --tree DIR --output oci://HOST/NS --push`',
          context: { path: where },
          cause: e,
        });
      }
      throw e;
    }
    const layer = indexLayerOf(m.bytes, where);
    let data = layer.embedded;
    if (!data) {
      const store = this.requireCache();
      await this.client.fetchBlob(
        this.namespace,
        { digest: layer.digest, size: layer.size },
        store,
      );
      data = await store.read(layer.digest);
    }
    return { index: await parseIndexBlob(data, layer, where), data, digest: layer.digest };
  }

  private requireCache(): BlobStore {
    if (!this.cache)
      throw new CpmError('E_CONFIG', 'reading from a registry needs a blob cache directory');
    return this.cache;
  }

  imageRef(p: IndexPackage): string | undefined {
    if (!p.image) return undefined;
    return `${this.registry}/${this.namespace}/${p.image.repository}:${p.image.tag}`;
  }

  async openLayer(p: IndexPackage, layer: IndexLayer): Promise<Readable> {
    if (!p.image) throw new CpmError('E_REPO', `${p.category}/${p.name}@${p.version} has no image`);
    const store = this.requireCache();
    // fetchBlob verifies digest and size while writing into the content-addressed cache.
    await this.client.fetchBlob(`${this.namespace}/${p.image.repository}`, layer, store);
    return store.open(layer.digest);
  }

  async evictLayer(_p: IndexPackage, layer: IndexLayer): Promise<void> {
    await this.cache?.delete(layer.digest);
  }

  layerFile(_p: IndexPackage, layer: IndexLayer): string | undefined {
    return this.cache?.path(layer.digest);
  }

  layerWhere(p: IndexPackage, layer: IndexLayer): string {
    return this.cache?.path(layer.digest) ?? this.imageRef(p) ?? this.url;
  }

  async layerMissing(_p: IndexPackage, layer: IndexLayer): Promise<number> {
    return (await this.requireCache().size(layer.digest)) === layer.size ? 0 : layer.size;
  }

  async fetchLayer(
    p: IndexPackage,
    layer: IndexLayer,
    progress: TransferProgress,
    signal?: AbortSignal,
  ): Promise<void> {
    if (!p.image) throw new CpmError('E_REPO', `${p.category}/${p.name}@${p.version} has no image`);
    const repo = `${this.namespace}/${p.image.repository}`;
    await this.client.fetchBlob(repo, layer, this.requireCache(), progress, signal);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

export class LuetReader implements RepoReader {
  readonly type = 'luet' as const;
  readonly streamVerifies = true;
  private readonly files: RepoFiles;
  constructor(
    readonly url: string,
    private readonly name: string,
    opts: ReaderOptions = {},
  ) {
    const files = openFiles(url, filesOptions(opts));
    this.files = files;
    if (files instanceof LocalFiles) this.openLayerFile = (p) => files.openFd(this.artifact(p));
  }

  async fetchIndex(): Promise<FetchedIndex> {
    // luet's tar and YAML readers load only for a luet repository whose index is fetched
    const { readLuetRepository } = await import('./luet.js');
    const index = await readLuetRepository(this.files, this.name);
    const s = await serializeIndex(index, 'gzip');
    return { index, data: s.data, digest: s.digest };
  }

  imageRef(p: IndexPackage): string | undefined {
    return p.artifact ? path.posix.join(this.files.location, p.artifact.file) : undefined;
  }

  async artifactSize(p: IndexPackage): Promise<number> {
    const size = p.artifact ? await this.files.size(p.artifact.file) : undefined;
    if (size === undefined) {
      throw new CpmError(
        'E_NOT_FOUND',
        `${this.files.location}: artifact ${p.artifact?.file} is missing`,
        {
          context: { path: p.artifact?.file, package: `${p.category}/${p.name}@${p.version}` },
        },
      );
    }
    return size;
  }

  private artifact(p: IndexPackage): string {
    if (!p.artifact)
      throw new CpmError('E_REPO', `${p.category}/${p.name}@${p.version} has no artifact`);
    return p.artifact.file;
  }

  async openLayer(p: IndexPackage, layer: IndexLayer): Promise<Readable> {
    return checked(await this.files.open(this.artifact(p)), layer, this.layerWhere(p, layer));
  }

  layerWhere(p: IndexPackage, _layer: IndexLayer): string {
    return this.files instanceof LocalFiles
      ? path.join(this.files.location, this.artifact(p))
      : new URL(this.artifact(p), this.files.location).toString();
  }

  readonly openLayerFile?: (p: IndexPackage, layer: IndexLayer) => Promise<number>;

  close(): Promise<void> {
    return this.files.close();
  }
}

/** Layers of a package as the installer sees them; luet artifacts become one tar layer. */
export async function layersOf(reader: RepoReader, p: IndexPackage): Promise<IndexLayer[]> {
  if (p.image) return p.image.layers;
  if (p.artifact && reader instanceof LuetReader) {
    const size = await reader.artifactSize(p);
    return [{ digest: p.artifact.digest, mediaType: p.artifact.mediaType, size }];
  }
  return [];
}

export function openReader(
  type: RepoType,
  url: string,
  name: string,
  opts: ReaderOptions = {},
): RepoReader {
  switch (type) {
    case 'dir':
    case 'http':
      return new LayoutReader(type, url, opts);
    case 'oci':
      return new RegistryReader(url, opts);
    case 'luet':
      return new LuetReader(url, name, opts);
  }
}
