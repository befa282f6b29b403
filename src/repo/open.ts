/**
 * The configured repositories as one Universe, plus `locate(id)`: where the package the resolver
 * picked lives and how to stream its layers. Indexes come from the cache that `cpm repo update`
 * fills (`<cache_dir>/repos/<name>/`), fetched on first use; `dir` repositories are always read
 * live (they are local and a stale copy would hide a fresh `repo create`).
 */
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { formatAge, type CpmConfig } from '../config.js';
import { CpmError } from '../errors.js';
import { cacheStore } from '../oci/blobstore.js';
import type { PackageSpec } from '../package/package.js';
import type { TransferProgress } from '../util/progress.js';
import { loadRepoConfigs, type RepoConfig } from './config.js';
import { parseIndex, type IndexLayer, type IndexPackage, type RepoIndex } from './repo-index.js';
import {
  layersOf,
  openReader,
  type FetchedIndex,
  type ReaderOptions,
  type RepoReader,
} from './reader.js';
import { IndexUniverse } from './index-universe.js';

export { packageCount } from './repo-index.js';

export interface CachedState {
  name: string;
  type: string;
  url: string;
  digest: string;
  revision: number;
  timestamp: number;
  /** ISO time of the fetch (wall clock: cache bookkeeping only, never in outputs). */
  fetchedAt: string;
}

export interface LoadedRepo {
  config: RepoConfig;
  index: RepoIndex;
  /** The URL that answered. */
  url: string;
  fromCache: boolean;
  state: CachedState;
}

export interface LocatedPackage {
  id: string;
  repo: string;
  repoType: RepoConfig['type'];
  /** skopeo/crane reference (dir, oci) or URL (http, luet); undefined for metadata-only packages. */
  imageRef: string | undefined;
  manifestDigest: string | undefined;
  /** Empty for metadata-only packages. */
  layers: IndexLayer[];
  spec: PackageSpec;
  entry: IndexPackage;
  /** A verified stream of one of `layers`. */
  openLayer(digest: string): Promise<Readable>;
  /** Drops the cached copy of a layer (when the reader caches); see LayerSource.evict. */
  evictLayer?(digest: string): Promise<void>;
  /** The local file of a layer's blob, when the reader keeps one; see LayerSource.file. */
  layerFile?(digest: string): string | undefined;
  /** A layer's blob as a descriptor the caller reads and closes (on-disk repositories); see LayerSource.openFile. */
  openLayerFile?(digest: string): Promise<number>;
  /** openLayer() checks digest and size itself (see RepoReader.streamVerifies). */
  streamVerifies: boolean;
  /** Where a layer's blob is read from, for messages: the repository's name and the file or URL. */
  layerWhere(digest: string): string;
  /** Readers with a download cache: see LayerSource.fetch. */
  fetchLayer?: {
    missing(digest: string): Promise<number>;
    run(digest: string, progress: TransferProgress, signal?: AbortSignal): Promise<void>;
  };
}

export interface OpenedRepositories {
  universe: IndexUniverse;
  repos: LoadedRepo[];
  /** Per-repository failures (only with `tolerant`; otherwise the first one throws). */
  problems: CpmError[];
  locate(id: string): Promise<LocatedPackage>;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Use these instead of repos.conf.d (e.g. `--repo URL` one-offs). */
  repos?: RepoConfig[];
  /** Added to the configured ones. */
  extraRepos?: RepoConfig[];
  /** Ignore the cache and fetch every index. */
  refresh?: boolean;
  /** Report broken repositories in `problems` instead of throwing. */
  tolerant?: boolean;
  plainHttp?: boolean;
}

export function repoCacheDir(cfg: CpmConfig, name: string): string {
  return path.join(cfg.cache_dir, 'repos', name);
}

function readerOptions(
  cfg: CpmConfig,
  r: RepoConfig,
  opts: { plainHttp?: boolean },
): ReaderOptions {
  const o: ReaderOptions = { tlsVerify: r.verify, blobCache: cacheStore(cfg.cache_dir) };
  if (r.auth) o.auth = r.auth;
  if (r.insecure) o.insecure = true;
  if (r.ca_file) o.ca = readCaFile(r, r.ca_file);
  if (opts.plainHttp !== undefined) o.plainHttp = opts.plainHttp;
  return o;
}

function readCaFile(r: RepoConfig, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new CpmError(
      'E_CONFIG',
      `${r.file ?? r.name}${r.line ? `:${r.line}` : ''}: ca_file ${file}: ${(e as Error).message}`,
      { context: { file: r.file, line: r.line, path: file } },
    );
  }
}

/** Tries each URL in order; all failures are reported together when none answers. */
export async function fetchRepoIndex(
  cfg: CpmConfig,
  r: RepoConfig,
  opts: { plainHttp?: boolean } = {},
): Promise<{ fetched: FetchedIndex; url: string }> {
  const errors: string[] = [];
  const hints = new Set<string>();
  let last: unknown;
  for (const url of r.urls) {
    const reader = openReader(r.type, url, r.name, readerOptions(cfg, r, opts));
    try {
      return { fetched: await reader.fetchIndex(), url };
    } catch (e) {
      last = e;
      errors.push(`${url}: ${(e as Error).message}`);
      // the way out (`cpm login HOST` on a 401, --plain-http, …) must survive the wrapping
      if (e instanceof CpmError && e.hint) hints.add(e.hint);
    } finally {
      await reader.close();
    }
  }
  const code = last instanceof CpmError ? last.code : 'E_REPO';
  throw new CpmError(code, `repository "${r.name}": ${errors.join('; ')}`, {
    context: { repo: r.name, ...(r.file ? { file: r.file, line: r.line } : {}) },
    cause: last,
    ...(hints.size > 0 ? { hint: [...hints].join('; ') } : {}),
  });
}

export async function readCachedIndex(
  cfg: CpmConfig,
  name: string,
): Promise<{ index: RepoIndex; state: CachedState } | undefined> {
  const dir = repoCacheDir(cfg, name);
  let state: CachedState;
  let data: Buffer;
  try {
    state = JSON.parse(await fsp.readFile(path.join(dir, 'state.json'), 'utf8')) as CachedState;
    data = await fsp.readFile(path.join(dir, 'index'));
  } catch {
    return undefined;
  }
  return { index: await parseIndex(data, path.join(dir, 'index')), state };
}

export async function writeCachedIndex(
  cfg: CpmConfig,
  r: RepoConfig,
  url: string,
  f: FetchedIndex,
): Promise<CachedState> {
  const dir = repoCacheDir(cfg, r.name);
  await fsp.mkdir(dir, { recursive: true });
  const state: CachedState = {
    name: r.name,
    type: r.type,
    url,
    digest: f.digest,
    revision: f.index.repository.revision,
    timestamp: f.index.repository.timestamp,
    fetchedAt: new Date().toISOString(),
  };
  // Index first, state last: a state file always describes a complete index.
  const tmp = `.tmp-${process.pid}`;
  await fsp.writeFile(path.join(dir, `index${tmp}`), f.data);
  await fsp.rename(path.join(dir, `index${tmp}`), path.join(dir, 'index'));
  await fsp.writeFile(path.join(dir, `state.json${tmp}`), JSON.stringify(state, null, 2) + '\n');
  await fsp.rename(path.join(dir, `state.json${tmp}`), path.join(dir, 'state.json'));
  return state;
}

/** Loads one repository's index: live for dir, else the cache, else fetched (and cached). */
export async function loadRepo(
  cfg: CpmConfig,
  r: RepoConfig,
  opts: { refresh?: boolean; plainHttp?: boolean } = {},
): Promise<LoadedRepo> {
  let expired: { age: number; cached: { index: RepoIndex; state: CachedState } } | undefined;
  if (r.type !== 'dir' && !opts.refresh) {
    const cached = await readCachedIndex(cfg, r.name);
    const age = cached ? (Date.now() - Date.parse(cached.state.fetchedAt)) / 1000 : 0;
    // metadata_expire (dnf): an index older than that is fetched again before it is used
    if (
      cached &&
      r.urls.includes(cached.state.url) &&
      cfg.metadata_expire >= 0 &&
      age > cfg.metadata_expire
    )
      expired = { age, cached };
    else if (cached && r.urls.includes(cached.state.url)) {
      return {
        config: r,
        index: cached.index,
        url: cached.state.url,
        fromCache: true,
        state: cached.state,
      };
    }
  }
  let got: Awaited<ReturnType<typeof fetchRepoIndex>>;
  try {
    got = await fetchRepoIndex(cfg, r, opts);
  } catch (e) {
    if (!expired || !(e instanceof CpmError)) throw e;
    throw new CpmError(
      e.code,
      `${e.message} (its cached index, fetched ${formatAge(expired.age)} ago, is older than metadata_expire ${formatAge(cfg.metadata_expire)})`,
      {
        context: e.context,
        cause: e,
        hint: 'fix the repository or the network, or raise metadata_expire in cpm.yaml to use the cached index',
      },
    );
  }
  const { fetched, url } = got;
  const state =
    r.type === 'dir'
      ? {
          name: r.name,
          type: r.type,
          url,
          digest: fetched.digest,
          revision: fetched.index.repository.revision,
          timestamp: fetched.index.repository.timestamp,
          fetchedAt: new Date().toISOString(),
        }
      : await writeCachedIndex(cfg, r, url, fetched);
  return { config: r, index: fetched.index, url, fromCache: false, state };
}

/** The repositories to use: explicit ones, or the enabled ones of repos.conf.d (+ extras). */
export async function selectRepos(
  cfg: CpmConfig,
  opts: OpenOptions,
): Promise<{ repos: RepoConfig[]; problems: CpmError[] }> {
  if (opts.repos) return { repos: opts.repos, problems: [] };
  const loaded = await loadRepoConfigs(cfg.repos_confdir);
  return {
    repos: [...loaded.repos.filter((r) => r.enabled), ...(opts.extraRepos ?? [])],
    problems: loaded.problems,
  };
}

export async function openRepositories(
  cfg: CpmConfig,
  opts: OpenOptions = {},
): Promise<OpenedRepositories> {
  const { repos: configs, problems } = await selectRepos(cfg, opts);
  if (!opts.tolerant && problems.length > 0) throw problems[0]!;
  const loaded: LoadedRepo[] = [];
  const results = await Promise.allSettled(configs.map((r) => loadRepo(cfg, r, opts)));
  results.forEach((res, i) => {
    if (res.status === 'fulfilled') loaded.push(res.value);
    else {
      const e = res.reason;
      problems.push(
        e instanceof CpmError
          ? e
          : new CpmError('E_REPO', `repository "${configs[i]!.name}": ${(e as Error).message}`, {
              cause: e,
            }),
      );
    }
  });
  if (!opts.tolerant && problems.length > 0) {
    const first = problems[0]!;
    if (problems.length === 1) throw first;
    const hints = [...new Set(problems.map((p) => p.hint).filter((h) => h !== undefined))];
    throw new CpmError(first.code, problems.map((p) => p.message).join('\n'), {
      context: first.context,
      cause: first,
      ...(hints.length > 0 ? { hint: hints.join('; ') } : {}),
    });
  }
  const universe = new IndexUniverse(
    loaded.map((l) => ({ name: l.config.name, priority: l.config.priority, index: l.index })),
  );
  const byName = new Map(loaded.map((l) => [l.config.name, l]));
  const readers = new Map<string, RepoReader>();
  const readerFor = (l: LoadedRepo): RepoReader => {
    let rd = readers.get(l.config.name);
    if (!rd) {
      rd = openReader(l.config.type, l.url, l.config.name, readerOptions(cfg, l.config, opts));
      readers.set(l.config.name, rd);
    }
    return rd;
  };
  return {
    universe,
    repos: loaded,
    problems,
    async locate(id: string): Promise<LocatedPackage> {
      const offer = universe.offer(id);
      if (!offer) {
        throw new CpmError('E_NOT_FOUND', `package ${id} is in none of the repositories`, {
          hint: 'cpm search NAME lists what the repositories offer; cpm repo update refreshes them',
          context: { package: id },
        });
      }
      const l = byName.get(offer.repo)!;
      const reader = readerFor(l);
      const layers = await layersOf(reader, offer.entry);
      const layerOf = (digest: string): IndexLayer => {
        const layer = layers.find((x) => x.digest === digest);
        if (!layer)
          throw new CpmError('E_NOT_FOUND', `${id} has no layer ${digest}`, {
            context: { digest, package: id },
          });
        return layer;
      };
      return {
        id,
        repo: offer.repo,
        repoType: l.config.type,
        imageRef: reader.imageRef(offer.entry),
        manifestDigest: offer.entry.image?.manifestDigest,
        layers,
        spec: offer.spec,
        entry: offer.entry,
        async openLayer(digest: string): Promise<Readable> {
          const layer = layers.find((x) => x.digest === digest);
          if (!layer) {
            throw new CpmError('E_NOT_FOUND', `${id} has no layer ${digest}`, {
              context: { digest, package: id },
            });
          }
          return reader.openLayer(offer.entry, layer);
        },
        ...(reader.fetchLayer && reader.layerMissing
          ? {
              fetchLayer: {
                missing: (digest: string) => reader.layerMissing!(offer.entry, layerOf(digest)),
                run: (digest: string, progress: TransferProgress, signal?: AbortSignal) =>
                  reader.fetchLayer!(offer.entry, layerOf(digest), progress, signal),
              },
            }
          : {}),
        ...(reader.layerFile
          ? { layerFile: (digest: string) => reader.layerFile!(offer.entry, layerOf(digest)) }
          : {}),
        ...(reader.openLayerFile
          ? {
              openLayerFile: (digest: string) =>
                reader.openLayerFile!(offer.entry, layerOf(digest)),
            }
          : {}),
        streamVerifies: reader.streamVerifies === true,
        layerWhere(digest: string): string {
          const file = reader.layerWhere?.(offer.entry, layerOf(digest));
          return `repository ${offer.repo}${file ? `, ${file}` : ''}`;
        },
        ...(reader.evictLayer
          ? {
              async evictLayer(digest: string): Promise<void> {
                const layer = layers.find((x) => x.digest === digest);
                if (layer) await reader.evictLayer!(offer.entry, layer);
              },
            }
          : {}),
      };
    },
    async close(): Promise<void> {
      await Promise.all([...readers.values()].map((r) => r.close()));
    },
  };
}
