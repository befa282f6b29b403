/**
 * `cpm cleanup`: prune the cache. Blobs (layers, manifests, configs) and trees built for
 * `--tree` are re-fetched or rebuilt on demand, so they go; cached repository indexes stay
 * unless `all` (they make the next run fast and work offline).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { CpmConfig } from '../config.js';

export interface CleanupOptions {
  /** Also drop cached repository indexes (cpm repo update fetches them again). */
  all?: boolean;
  /** Count what would be freed, remove nothing. */
  dryRun?: boolean;
}

export interface CleanupResult {
  cacheDir: string;
  /** Cache subdirectories pruned, relative to cacheDir. */
  pruned: string[];
  files: number;
  bytesFreed: number;
}

async function usage(p: string): Promise<{ files: number; bytes: number }> {
  let st;
  try {
    st = await fsp.lstat(p);
  } catch {
    return { files: 0, bytes: 0 };
  }
  if (!st.isDirectory()) return { files: 1, bytes: st.size };
  let files = 0;
  let bytes = 0;
  for (const n of await fsp.readdir(p)) {
    const u = await usage(path.join(p, n));
    files += u.files;
    bytes += u.bytes;
  }
  return { files, bytes };
}

export async function cleanup(cfg: CpmConfig, opts: CleanupOptions = {}): Promise<CleanupResult> {
  const cacheDir = path.resolve(cfg.cache_dir);
  const parts = ['blobs', 'trees', ...(opts.all ? ['repos'] : [])];
  const result: CleanupResult = { cacheDir, pruned: [], files: 0, bytesFreed: 0 };
  for (const part of parts) {
    const p = path.join(cacheDir, part);
    const u = await usage(p);
    if (u.files === 0 && u.bytes === 0) {
      // an empty directory still goes, but is not worth a line
      if (!opts.dryRun) await fsp.rm(p, { recursive: true, force: true });
      continue;
    }
    result.pruned.push(part);
    result.files += u.files;
    result.bytesFreed += u.bytes;
    if (!opts.dryRun) await fsp.rm(p, { recursive: true, force: true });
  }
  // interrupted writes of index caches
  if (!opts.all) {
    const repos = path.join(cacheDir, 'repos');
    for (const name of await fsp.readdir(repos).catch(() => [] as string[])) {
      for (const f of await fsp.readdir(path.join(repos, name)).catch(() => [] as string[])) {
        if (!f.includes('.tmp-')) continue;
        const p = path.join(repos, name, f);
        const u = await usage(p);
        result.files += u.files;
        result.bytesFreed += u.bytes;
        if (!opts.dryRun) await fsp.rm(p, { force: true });
      }
    }
  }
  return result;
}
