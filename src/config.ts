/**
 * cpm.yaml: where the root, the DB, the repository configs and the cache live.
 * Lookup order: --config, $CPM_CONFIG, /etc/cpm/cpm.yaml; a missing default file means defaults.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CpmError } from './errors.js';
import { setNetworkSettings, type NetworkSettings } from './util/net.js';
import { warn } from './util/warn.js';

export interface CpmConfig {
  /** The file the config came from, or undefined for built-in defaults. */
  file?: string;
  system: {
    rootfs: string;
    /** DB directory; relative paths are inside rootfs. */
    database_path: string;
    tmpdir_base: string;
  };
  repos_confdir: string[];
  cache_dir: string;
  finalizer_envs: Array<{ key: string; value: string }>;
  /**
   * Seconds after which a cached repository index is fetched again before use (dnf's
   * metadata_expire); -1: never (only `cpm repo update` or `--refresh`).
   */
  metadata_expire: number;
  /**
   * Packages trees (absolute) that tree commands use when no `--tree` is given, merged in order as
   * luet's repeated `--tree` merges them.
   */
  trees: string[];
  /** `build:` — defaults of `cpm build`. */
  build: {
    /** Shared build cache (oci://HOST/NS), as `cpm build --cache`. */
    cache?: string;
  };
}

/** dnf's default: two days. */
export const DEFAULT_METADATA_EXPIRE = 48 * 3600;

/** "3h", "2d", "45m", "12s": how old an index is, as people read it. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 86400 && s % 3600 === 0 && s / 3600 >= 48) return `${Math.round(s / 86400)}d`;
  if (s >= 3600) return `${Math.round(s / 3600)}h`;
  if (s >= 60) return `${Math.round(s / 60)}m`;
  return `${s}s`;
}

/** metadata_expire as written: seconds, or a number with s/m/h/d, or "never" / -1. */
export function parseDuration(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v < 0 ? -1 : v;
  if (typeof v !== 'string') return undefined;
  const t = v.trim().toLowerCase();
  if (t === 'never' || t === '-1') return -1;
  const m = /^(\d+(?:\.\d+)?)\s*([smhd]?)$/.exec(t);
  if (!m) return undefined;
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

export const DEFAULT_CONFIG_FILE = '/etc/cpm/cpm.yaml';

export function defaultCacheDir(): string {
  if (process.getuid?.() === 0) return '/var/cache/cpm';
  const xdg = process.env.XDG_CACHE_HOME;
  return path.join(xdg && xdg !== '' ? xdg : path.join(os.homedir(), '.cache'), 'cpm');
}

export function defaultConfig(): CpmConfig {
  return {
    system: { rootfs: '/', database_path: 'var/lib/cpm', tmpdir_base: os.tmpdir() },
    repos_confdir: ['/etc/cpm/repos.conf.d'],
    cache_dir: defaultCacheDir(),
    finalizer_envs: [],
    metadata_expire: DEFAULT_METADATA_EXPIRE,
    trees: [],
    build: {},
  };
}

function bad(file: string, line: number | undefined, msg: string): CpmError {
  return new CpmError('E_CONFIG', `${file}${line ? `:${line}` : ''}: ${msg}`, {
    context: { file, line },
  });
}

/**
 * Loads the config. `explicit` is --config; an explicit or $CPM_CONFIG file must exist. The YAML
 * parser is loaded only when there is a file to parse (it is a fifth of a command's start-up).
 */
export async function loadConfig(explicit?: string): Promise<CpmConfig> {
  const cfg = defaultConfig();
  // CPM_CONFIG= (set but empty) is unset, as shells and env files often leave it
  const fromEnv = process.env.CPM_CONFIG === '' ? undefined : process.env.CPM_CONFIG;
  const file = explicit ?? fromEnv ?? DEFAULT_CONFIG_FILE;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT' && file === DEFAULT_CONFIG_FILE && !explicit) return cfg;
    throw new CpmError('E_CONFIG', `cannot read config ${file}: ${err.message}`, {
      context: { file },
    });
  }
  const { parseDocument } = await import('yaml');
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = e.linePos?.[0]?.line ?? text.slice(0, e.pos?.[0] ?? 0).split('\n').length;
    throw bad(file, line, e.message.split('\n')[0] ?? 'invalid YAML');
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 }) ?? {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw bad(file, 1, 'top level must be a mapping');
  const r = raw as Record<string, unknown>;
  const dir = path.dirname(path.resolve(file));
  const sys = (r.system ?? {}) as Record<string, unknown>;
  if (typeof sys !== 'object') throw bad(file, undefined, '"system" must be a mapping');
  const str = (v: unknown, key: string): string | undefined => {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw bad(file, undefined, `"${key}" must be a string`);
    return v;
  };
  cfg.file = file;
  cfg.system.rootfs = str(sys.rootfs, 'system.rootfs') ?? cfg.system.rootfs;
  cfg.system.database_path =
    str(sys.database_path, 'system.database_path') ?? cfg.system.database_path;
  cfg.system.tmpdir_base = str(sys.tmpdir_base, 'system.tmpdir_base') ?? cfg.system.tmpdir_base;
  const cache = str(r.cache_dir, 'cache_dir');
  if (cache) cfg.cache_dir = path.resolve(dir, cache);
  if (r.repos_confdir !== undefined) {
    const list = Array.isArray(r.repos_confdir) ? r.repos_confdir : [r.repos_confdir];
    cfg.repos_confdir = list.map((d) => path.resolve(dir, str(d, 'repos_confdir') ?? ''));
  }
  if (r.trees !== undefined && r.trees !== null) {
    const list = Array.isArray(r.trees) ? r.trees : [r.trees];
    cfg.trees = list.map((d) => {
      const t = str(d, 'trees');
      if (!t) throw bad(file, undefined, '"trees" must be a directory or a list of directories');
      return path.resolve(dir, t);
    });
  }
  if (r.network !== undefined && r.network !== null) {
    if (typeof r.network !== 'object' || Array.isArray(r.network))
      throw bad(file, undefined, '"network" must be a mapping');
    const net = r.network as Record<string, unknown>;
    const out: Partial<NetworkSettings> = {};
    const secs = (key: string, field: keyof NetworkSettings): void => {
      const v = net[key];
      if (v === undefined || v === null) return;
      if (typeof v !== 'number' || !(v > 0))
        throw bad(file, undefined, `"network.${key}" must be a positive number of seconds`);
      out[field] = v * 1000;
    };
    secs('connect_timeout', 'connectTimeoutMs');
    secs('idle_timeout', 'idleTimeoutMs');
    secs('retry_budget', 'retryBudgetMs');
    setNetworkSettings(out);
  }
  if (Array.isArray(r.finalizer_envs)) {
    cfg.finalizer_envs = r.finalizer_envs.map((e: unknown) => {
      const o = e as Record<string, unknown>;
      return { key: String(o.key), value: String(o.value ?? '') };
    });
  }
  if (r.metadata_expire !== undefined) {
    const d = parseDuration(r.metadata_expire);
    if (d === undefined)
      throw bad(
        file,
        undefined,
        `"metadata_expire" must be seconds, a number with s/m/h/d (e.g. 6h), or "never"`,
      );
    cfg.metadata_expire = d;
  }
  if (r.build !== undefined && r.build !== null) {
    if (typeof r.build !== 'object' || Array.isArray(r.build))
      throw bad(file, undefined, '"build" must be a mapping');
    const b = r.build as Record<string, unknown>;
    const c = str(b.cache, 'build.cache');
    if (c !== undefined) {
      if (!/^oci:\/\/[^/]+\/.+/.test(c))
        throw bad(file, undefined, '"build.cache" must be oci://HOST[:PORT]/NAMESPACE');
      cfg.build.cache = c;
    }
  }
  const known = new Set([
    'build',
    'metadata_expire',
    'system',
    'repos_confdir',
    'cache_dir',
    'finalizer_envs',
    'network',
    'trees',
    'general',
    'logging',
  ]);
  for (const k of Object.keys(r)) {
    if (!known.has(k)) warn(`${file}: unknown key "${k}" ignored`);
  }
  return cfg;
}

/**
 * The trees a command works on: the `--tree` options when there are any (they replace the
 * config's list, as --root replaces system.rootfs and --repo replaces repos.conf.d), else the
 * config's `trees`. Empty when neither names one; each command picks its own default then.
 */
export function chosenTrees(cli: readonly string[] | undefined, cfg: CpmConfig): string[] {
  if (cli && cli.length > 0) return cli.map((d) => path.resolve(d));
  return [...cfg.trees];
}

/** chosenTrees for a command that needs a tree and has no default one (repo create, build). */
export function requireTrees(cli: readonly string[] | undefined, cfg: CpmConfig): string[] {
  const dirs = chosenTrees(cli, cfg);
  if (dirs.length === 0)
    throw new CpmError('E_USAGE', 'no packages tree given', {
      hint: `pass --tree DIR, or list the trees under "trees:" in ${cfg.file ?? DEFAULT_CONFIG_FILE}`,
    });
  return dirs;
}

/** The DB directory for a root: absolute database_path as is, relative ones inside the root. */
export function databaseDir(cfg: CpmConfig, root: string): string {
  const p = cfg.system.database_path;
  return path.isAbsolute(p) ? p : path.resolve(root, p);
}
