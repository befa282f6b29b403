/**
 * Where install operations get packages from: the configured repositories (repos.conf.d), one-off
 * repository URLs (`--repo`), or a packages tree (`--tree`) built into a cached dir:// repository
 * under the cache dir. `repo create` is incremental, so a repeat run over an unchanged tree only
 * re-hashes payloads and packs nothing.
 */
import { realpathSync } from 'node:fs';
import path from 'node:path';
import type { CpmConfig } from '../config.js';
import { CpmError } from '../errors.js';
import { repoTypeOfUrl, type RepoConfig, type RepoType } from '../repo/config.js';
import type { OpenedRepositories } from '../repo/open.js';
import { nodeCrypto } from '../util/lazy-builtins.js';

export type PackageSource =
  | { kind: 'configured' }
  | { kind: 'repo'; urls: string[] }
  /** Trees merged as luet's repeated `--tree`, rendered with `values` files (later win). */
  | { kind: 'tree'; dirs: string[]; values?: string[]; lenient?: boolean };

export interface OpenSourceOptions {
  plainHttp?: boolean;
  /** Configured repositories: fetch every index now (`--refresh`). */
  refresh?: boolean;
  /** Progress lines of the tree build. */
  log?: (line: string) => void;
}

function typeOfUrl(url: string): RepoType {
  return repoTypeOfUrl(url, `--repo ${url}`);
}

/**
 * A repository name from a URL: the origin recorded in the DB (and the index cache key). A dir
 * repository is named by its last path component, so the DB does not depend on where it sits.
 */
export function repoNameOfUrl(url: string): string {
  let bare = url.replace(/^[a-z]+:\/\//, '');
  if (typeOfUrl(url) === 'dir') bare = path.basename(bare);
  const name = bare.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[^A-Za-z0-9]+/, '');
  return name === '' ? 'repo' : name;
}

/** RepoConfigs for `--repo` one-offs: priority 0 in the order given. */
export function oneOffRepos(urls: readonly string[]): RepoConfig[] {
  return urls.map((u) => {
    const type = typeOfUrl(u);
    const url =
      type !== 'dir'
        ? u
        : u.startsWith('dir://')
          ? `dir://${path.resolve(u.slice(6))}`
          : path.resolve(u);
    return {
      name: repoNameOfUrl(url),
      type,
      urls: [url],
      priority: 0,
      enabled: true,
      verify: true,
    };
  });
}

function realTreeDir(treeDir: string): string {
  try {
    return realpathSync(treeDir);
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new CpmError(
      missing ? 'E_NOT_FOUND' : 'E_USAGE',
      missing
        ? `packages tree ${treeDir} does not exist`
        : `--tree ${treeDir}: ${(e as Error).message}`,
      {
        context: { path: treeDir },
        ...(missing ? { hint: 'pass --tree DIR: the directory of definition.yaml files' } : {}),
      },
    );
  }
}

/**
 * The cached dir:// repository trees are built into: one per set of tree directories (and values
 * files), so two flavours of one tree do not repack each other's packages on every switch.
 */
export function treeRepoDir(
  cfg: CpmConfig,
  treeDirs: string | readonly string[],
  values: readonly string[] = [],
): string {
  const dirs = typeof treeDirs === 'string' ? [treeDirs] : treeDirs;
  const h = nodeCrypto().createHash('sha256');
  // One tree without values keeps the key it always had (the tree's real path).
  h.update(dirs.map(realTreeDir).join('\0'));
  for (const v of values) h.update(`\0values\0${path.resolve(v)}`);
  return path.join(cfg.cache_dir, 'trees', h.digest('hex').slice(0, 16));
}

/** Opens the package source as repositories: universe + locate. Close it after use. */
export async function openPackageSource(
  cfg: CpmConfig,
  source: PackageSource,
  opts: OpenSourceOptions = {},
): Promise<OpenedRepositories> {
  const plain = opts.plainHttp !== undefined ? { plainHttp: opts.plainHttp } : {};
  // loaded on use: the readers bring the HTTP client, which a no-op never needs
  const { openRepositories } = await import('../repo/open.js');
  switch (source.kind) {
    case 'configured':
      return openRepositories(cfg, { ...plain, ...(opts.refresh ? { refresh: true } : {}) });
    case 'repo':
      // an explicit one-off URL is read fresh: a cached index could hide what was just pushed
      return openRepositories(cfg, { ...plain, repos: oneOffRepos(source.urls), refresh: true });
    case 'tree': {
      const values = source.values ?? [];
      const dir = treeRepoDir(cfg, source.dirs, values);
      // the origin recorded in the DB: the tree's directory name (names joined for several)
      const name = source.dirs.map((d) => repoNameOfUrl(path.resolve(d))).join('_');
      // imported here: packing pulls in the image writer, which a no-op install never needs
      const { createFromTree } = await import('../repo/create.js');
      await createFromTree(
        source.dirs.map((d) => path.resolve(d)),
        {
          strict: true,
          ...(values.length ? { values: values.map((v) => path.resolve(v)) } : {}),
          ...(source.lenient ? { lenient: true } : {}),
          output: `dir://${dir}`,
          name,
          cacheDir: cfg.cache_dir,
          ...(opts.log ? { log: opts.log } : {}),
        },
      );
      return openRepositories(cfg, {
        repos: [{ name, type: 'dir', urls: [dir], priority: 0, enabled: true, verify: true }],
      });
    }
  }
}
