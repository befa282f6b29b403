/**
 * The shared build cache in a registry (`cpm build --cache oci://REG/NS`), so CI runners share
 * results. Key scheme — one tag per build hash, in the package's own repository below NS:
 *
 *   REG/NS/<category>/<name>:build-<hex of the build hash>
 *
 * The tagged manifest is the package image itself, byte for byte what `cpm build` publishes, so a
 * hit is a finished package: its blobs are fetched (or found in the output) and indexed as if it
 * had just been built. Build hashes cover every input (hash.ts), so a tag is written once and
 * never moves; concurrent runners that build the same hash push the same bytes.
 *
 * Build roots that other packages start from (the root a package's steps left, for the packages
 * chained on it by build-time `requires` or copying from it) go to the same repository as one
 * zstd layer, owners kept, entry mtimes fixed:
 *
 *   REG/NS/<category>/<name>:root-<hex of the build hash>
 *
 * A runner that must build a dependant and lacks the root locally unpacks that image (cpm's
 * installer: path safety, whiteouts) instead of building the package again.
 *
 * Faults of the cache never fail a build: an unreachable cache or refused credentials give one
 * warning (with `cpm login` as the hint for 401/403) and the run goes on without it; a push that
 * fails is a warning and later pushes are not tried.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import type { BlobStore } from '../oci/blobstore.js';
import { buildLayer } from '../oci/layer.js';
import { hostPlatform } from '../oci/platform.js';
import { RegistryEndpoint } from '../oci/endpoint.js';
import { parseJson, pushImage, readJsonBlob } from '../oci/image.js';
import { readPackageMetadata } from '../oci/package-image.js';
import { RegistryClient, type RegistryOptions } from '../oci/registry.js';
import { MEDIA, type ImageConfig, type ImageManifest } from '../oci/types.js';
import { createSpec, packageId, type PackageSpec } from '../package/package.js';
import { fileLayer } from '../rootfs/index.js';
import { applyTransaction } from '../rootfs/transaction.js';
import { indexImageOf } from '../repo/create.js';
import { parseOciUrl } from '../repo/reader.js';
import type { IndexImage } from '../repo/repo-index.js';
import { packageRepository } from '../repo/tags.js';

/** The tag of a build result: `build-` and the 64 hex digits of the build hash. */
export function resultTag(hash: string): string {
  return `build-${hash.replace(/^sha256:/, '')}`;
}

/** The tag of a kept build root: `root-` and the 64 hex digits of the build hash. */
export function rootTag(hash: string): string {
  return `root-${hash.replace(/^sha256:/, '')}`;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class RemoteCache {
  readonly url: string;
  readonly registry: string;
  readonly namespace: string;
  private readonly client: RegistryClient;
  /** Set once reading failed: no more lookups this run. */
  private readOff = false;
  /** Set once writing failed: no more pushes this run. */
  private writeOff = false;
  /** Results pushed in this run (package ids), for reports and tests. */
  readonly pushed: string[] = [];

  private constructor(
    url: string,
    opts: RegistryOptions,
    private readonly warn: (line: string) => void,
  ) {
    const { registry, namespace } = parseOciUrl(url);
    this.url = `oci://${registry}/${namespace}`;
    this.registry = registry;
    this.namespace = namespace;
    // A cache is an optimisation: give up on a dead one quickly instead of the download budget.
    this.client = new RegistryClient(registry, {
      ...opts,
      retries: Math.min(opts.retries ?? 2, 2),
      retryBudgetMs: Math.min(opts.retryBudgetMs ?? 10_000, 10_000),
    });
  }

  /**
   * Opens the cache and checks that it answers (GET /v2/). Never throws for the registry's
   * faults: the cache is then off, with one warning. A malformed URL is E_USAGE.
   */
  static async open(
    url: string,
    opts: RegistryOptions,
    warn: (line: string) => void,
  ): Promise<RemoteCache> {
    if (!url.startsWith('oci://'))
      throw new CpmError('E_USAGE', `--cache ${url}: expected oci://HOST[:PORT]/NAMESPACE`, {
        hint: 'the build cache is a registry namespace, e.g. --cache oci://registry.example.com/cos-cache',
      });
    const c = new RemoteCache(url, opts, warn);
    try {
      await c.client.ping();
    } catch (e) {
      c.fault(e, 'is not usable', 'both');
    }
    return c;
  }

  /** False once the cache could not be read (no lookups are made). */
  get enabled(): boolean {
    return !this.readOff;
  }

  private fault(e: unknown, what: string, side: 'read' | 'write' | 'both'): void {
    if (e instanceof CpmError && e.code === 'E_INTERRUPTED') throw e;
    const already = side === 'write' ? this.writeOff : this.readOff;
    if (side !== 'write') this.readOff = true;
    if (side !== 'read') this.writeOff = true;
    if (already) return;
    const auth = e instanceof CpmError && e.code === 'E_AUTH';
    const then =
      side === 'write' ? 'results of this run are not stored there' : 'building without it';
    this.warn(
      `build cache ${this.url} ${what}: ${message(e)}; ${then}` +
        (auth ? ` (log in with: cpm login ${this.registry})` : ''),
    );
  }

  private repo(p: Pick<PackageSpec, 'category' | 'name'>): string {
    return `${this.namespace}/${packageRepository(p)}`;
  }

  /**
   * The cached result of `pkg` for `hash`, with its manifest and config in `store` (layers are
   * fetched by `fetchLayers` when they are needed). Undefined on a miss, when the cache is off,
   * or when what is there is not this package's image (a warning says so).
   */
  async lookup(pkg: PackageSpec, hash: string, store: BlobStore): Promise<IndexImage | undefined> {
    if (this.readOff) return undefined;
    const repo = this.repo(pkg);
    const tag = resultTag(hash);
    let m;
    try {
      m = await this.client.getManifest(repo, tag);
    } catch (e) {
      if (e instanceof CpmError && e.code === 'E_NOT_FOUND') return undefined;
      this.fault(e, 'lookup failed', 'read');
      return undefined;
    }
    try {
      if (m.mediaType !== MEDIA.ociManifest)
        throw new Error(`unexpected manifest type ${m.mediaType}`);
      const manifest = parseJson<ImageManifest>(m.bytes, `manifest of ${repo}:${tag}`, m.digest);
      if (!manifest.config?.digest || !Array.isArray(manifest.layers))
        throw new Error('manifest lacks config or layers');
      await this.client.fetchBlob(repo, manifest.config, store);
      const config = await readJsonBlob<ImageConfig>(store, manifest.config.digest, 'config');
      const meta = readPackageMetadata(config, manifest);
      if (!meta || packageId(meta) !== packageId(pkg))
        throw new Error(`it is not the image of ${packageId(pkg)}`);
      await store.putBytes(m.bytes, { digest: m.digest, size: m.bytes.length });
      return indexImageOf(pkg, {
        descriptor: { digest: m.digest, mediaType: m.mediaType, size: m.bytes.length },
        manifest,
      });
    } catch (e) {
      if (e instanceof CpmError && e.code === 'E_INTERRUPTED') throw e;
      if (e instanceof CpmError && (e.code === 'E_NETWORK' || e.code === 'E_AUTH')) {
        this.fault(e, 'lookup failed', 'read');
        return undefined;
      }
      this.warn(`build cache ${this.url}: ${repo}:${tag} ignored: ${message(e)}`);
      return undefined;
    }
  }

  /**
   * Makes the layers of a looked-up result present in `store` (verified by digest), except those
   * `elsewhere` says need not be; true when all of them are in `store`.
   */
  async fetchLayers(
    pkg: PackageSpec,
    img: IndexImage,
    store: BlobStore,
    elsewhere?: (digest: string) => Promise<boolean>,
  ): Promise<boolean> {
    const repo = this.repo(pkg);
    let all = true;
    for (const l of img.layers) {
      if ((await store.size(l.digest)) === l.size) continue;
      if (elsewhere && (await elsewhere(l.digest))) {
        all = false;
        continue;
      }
      await this.client.fetchBlob(repo, { digest: l.digest, size: l.size }, store);
    }
    return all;
  }

  /** Stores `img` (blobs in `store`) as the result of `pkg` for `hash`. Faults are warnings. */
  async put(pkg: PackageSpec, hash: string, img: IndexImage, store: BlobStore): Promise<void> {
    if (this.writeOff) return;
    const repo = this.repo(pkg);
    const tag = resultTag(hash);
    try {
      // Written once per hash: a tag already naming these bytes needs no upload.
      if ((await this.client.headManifest(repo, tag)) === img.manifestDigest) return;
      const endpoint = new RegistryEndpoint(this.client, {
        kind: 'registry',
        registry: this.registry,
        repository: repo,
        tag,
      });
      await pushImage(
        store,
        { digest: img.manifestDigest, size: img.manifestSize, mediaType: img.manifestMediaType },
        endpoint,
        { tag },
      );
      this.pushed.push(packageId(pkg));
    } catch (e) {
      this.fault(e, 'push failed', 'write');
    }
  }

  /** True when the cache holds the build root of `pkg` for `hash`. */
  async hasRoot(pkg: PackageSpec, hash: string): Promise<boolean> {
    if (this.readOff) return false;
    try {
      return (await this.client.headManifest(this.repo(pkg), rootTag(hash))) !== undefined;
    } catch (e) {
      this.fault(e, 'lookup failed', 'read');
      return false;
    }
  }

  /**
   * Stores the build root at `dir` (and the image Env it runs with) for `pkg` and `hash`. The
   * layer goes through `store` (cpm's blob cache, not the output) and is dropped from it after
   * the push: the root stays on disk as a directory. Faults are warnings.
   */
  async putRoot(
    pkg: PackageSpec,
    hash: string,
    dir: string,
    env: string[],
    store: BlobStore,
  ): Promise<void> {
    if (this.writeOff) return;
    const repo = this.repo(pkg);
    const tag = rootTag(hash);
    let layerDigest: string | undefined;
    try {
      if ((await this.client.headManifest(repo, tag)) !== undefined) return;
      const layer = await buildLayer(dir, store, {
        compression: 'zstd',
        sourceDateEpoch: 0,
        preserveOwners: process.getuid?.() === 0,
      });
      layerDigest = layer.digest;
      const config: ImageConfig = {
        architecture: hostPlatform().architecture,
        os: hostPlatform().os,
        config: { Env: env, Labels: { 'io.cpm.build.root': packageId(pkg) } },
        rootfs: { type: 'layers', diff_ids: [layer.diffId] },
      };
      const cfg = await store.putBytes(Buffer.from(JSON.stringify(config)));
      const manifest: ImageManifest = {
        schemaVersion: 2,
        mediaType: MEDIA.ociManifest,
        config: { mediaType: MEDIA.ociConfig, digest: cfg.digest, size: cfg.size },
        layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
      };
      const man = await store.putBytes(Buffer.from(JSON.stringify(manifest)));
      const endpoint = new RegistryEndpoint(this.client, {
        kind: 'registry',
        registry: this.registry,
        repository: repo,
        tag,
      });
      await pushImage(store, { ...man, mediaType: MEDIA.ociManifest }, endpoint, { tag });
      this.pushed.push(`${packageId(pkg)} root`);
    } catch (e) {
      this.fault(e, 'push failed', 'write');
    } finally {
      if (layerDigest) await store.delete(layerDigest).catch(() => undefined);
    }
  }

  /**
   * Unpacks the cached build root of `pkg` for `hash` into `dest/root` with cpm's installer (its
   * DB in `dest/db`, outside the root) and returns the image Env. Throws when it cannot: the
   * caller then fails that package (or builds the provider again).
   */
  async fetchRoot(
    pkg: PackageSpec,
    hash: string,
    dest: string,
    store: BlobStore,
  ): Promise<string[]> {
    const repo = this.repo(pkg);
    const tag = rootTag(hash);
    const m = await this.client.getManifest(repo, tag);
    const manifest = parseJson<ImageManifest>(m.bytes, `manifest of ${repo}:${tag}`, m.digest);
    if (!manifest.config?.digest || !Array.isArray(manifest.layers) || manifest.layers.length !== 1)
      throw new CpmError('E_IMAGE', `${repo}:${tag} is not a cpm build root image`);
    await this.client.fetchBlob(repo, manifest.config, store);
    const config = await readJsonBlob<ImageConfig>(store, manifest.config.digest, 'config');
    const layer = manifest.layers[0]!;
    try {
      await this.client.fetchBlob(repo, layer, store);
      await fsp.rm(dest, { recursive: true, force: true });
      await fsp.mkdir(path.join(dest, 'root'), { recursive: true });
      await applyTransaction(
        path.join(dest, 'root'),
        {
          install: [
            {
              spec: createSpec({
                category: 'build-roots',
                name: packageRepository(pkg).replace(/\//g, '-'),
                version: `0+${m.digest.slice(7, 19)}`,
              }),
              layers: [fileLayer(store.path(layer.digest), layer.mediaType, layer.digest)],
              origin: `${this.registry}/${repo}:${tag}`,
              imageDigest: m.digest,
              reason: 'explicit',
              base: true,
            },
          ],
          remove: [],
        },
        { dbDir: path.join(dest, 'db'), noFinalizers: true },
      );
    } finally {
      await store.delete(layer.digest).catch(() => undefined);
    }
    return config.config?.Env ?? [];
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
