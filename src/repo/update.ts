/**
 * `cpm repo update`: fetch every (or the named) repository's index into the cache and report,
 * per repository, what changed and whether it looks stale. One repository failing never hides
 * the others, and its error is returned, not swallowed.
 */
import type { CpmConfig } from '../config.js';
import { CpmError } from '../errors.js';
import { loadRepoConfigs, type RepoConfig } from './config.js';
import { fetchRepoIndex, readCachedIndex, writeCachedIndex } from './open.js';
import { packageCount } from './repo-index.js';

export interface UpdateResult {
  name: string;
  type: RepoConfig['type'];
  url?: string;
  status: 'new' | 'updated' | 'unchanged' | 'error';
  revision?: number;
  previousRevision?: number;
  packages?: number;
  /** Hours between the index timestamp and now. */
  ageHours?: number;
  stale: boolean;
  /** Why it is stale: older than the limit and/or revision unchanged. */
  staleReasons: string[];
  error?: CpmError;
}

export interface UpdateOptions {
  /** Only these repositories (default: all enabled). */
  names?: string[];
  /** An index older than this is reported stale (default 168 h = one week). */
  staleHours?: number;
  plainHttp?: boolean;
  /** Clock for tests (ms). */
  now?: number;
}

export async function updateRepositories(
  cfg: CpmConfig,
  opts: UpdateOptions = {},
): Promise<{ results: UpdateResult[]; problems: CpmError[] }> {
  const { repos, problems } = await loadRepoConfigs(cfg.repos_confdir);
  const wanted = opts.names?.length
    ? repos.filter((r) => opts.names!.includes(r.name))
    : repos.filter((r) => r.enabled);
  const unknown = (opts.names ?? []).filter((n) => !repos.some((r) => r.name === n));
  if (unknown.length > 0) {
    const names = repos.map((r) => r.name).sort();
    throw new CpmError(
      'E_NOT_FOUND',
      `no repository named ${unknown.map((n) => `"${n}"`).join(', ')} is configured` +
        (names.length > 0
          ? ` (configured: ${names.join(', ')})`
          : ` (no repository is configured in ${cfg.repos_confdir.join(', ')})`),
      { context: { names: unknown }, hint: 'cpm repo list; cpm repo add NAME URL' },
    );
  }
  const staleHours = opts.staleHours ?? 168;
  const now = opts.now ?? Date.now();
  const results = await Promise.all(
    wanted.map(async (r): Promise<UpdateResult> => {
      const before = await readCachedIndex(cfg, r.name).catch(() => undefined);
      try {
        const { fetched, url } = await fetchRepoIndex(cfg, r, opts);
        await writeCachedIndex(cfg, r, url, fetched);
        const meta = fetched.index.repository;
        const ageHours = Math.max(0, (now / 1000 - meta.timestamp) / 3600);
        const reasons: string[] = [];
        if (ageHours > staleHours)
          reasons.push(`index built ${Math.floor(ageHours)} h ago (limit ${staleHours} h)`);
        const unchanged =
          before !== undefined &&
          before.state.revision === meta.revision &&
          before.state.digest === fetched.digest;
        if (unchanged) reasons.push(`revision ${meta.revision} unchanged since the last update`);
        const res: UpdateResult = {
          name: r.name,
          type: r.type,
          url,
          status: before === undefined ? 'new' : unchanged ? 'unchanged' : 'updated',
          revision: meta.revision,
          packages: packageCount(fetched.index),
          ageHours: Math.round(ageHours * 10) / 10,
          stale: reasons.length > 0,
          staleReasons: reasons,
        };
        if (before) res.previousRevision = before.state.revision;
        return res;
      } catch (e) {
        const err =
          e instanceof CpmError
            ? e
            : new CpmError('E_REPO', `repository "${r.name}": ${(e as Error).message}`, {
                cause: e,
              });
        return {
          name: r.name,
          type: r.type,
          status: 'error',
          stale: false,
          staleReasons: [],
          error: err,
        };
      }
    }),
  );
  return { results, problems };
}
