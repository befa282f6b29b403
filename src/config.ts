/**
 * cpm.yaml: where the root, the DB, the repository configs and the cache live.
 * Lookup order: --config, $CPM_CONFIG, /etc/cpm/cpm.yaml; a missing default file means defaults.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CpmError } from './errors.js';
import { parseFastCore } from './tree/yaml-fast.js';
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
  // CPM_CONFIG= (set but empty) is unset, as shells and env files often leave it
  const fromEnv = process.env.CPM_CONFIG === '' ? undefined : process.env.CPM_CONFIG;
  const file = explicit ?? fromEnv ?? DEFAULT_CONFIG_FILE;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT' && file === DEFAULT_CONFIG_FILE && !explicit) return defaultConfig();
    throw new CpmError('E_CONFIG', `cannot read config ${file}: ${err.message}`, {
      context: { file },
    });
  }
  // the fast reader first (most configs are a few plain lines; yaml is a fifth of a start-up);
  // a config it cannot read, or one with an error to report with its line, goes through yaml
  const fast = parseFastCore(text, file);
  if (fast) {
    try {
      return interpret(file, fast.value ?? {}, () => {
        throw NEED_LINES;
      });
    } catch (e) {
      if (e !== NEED_LINES) throw e;
    }
  }
  const { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } = await import('yaml');
  const lc = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, lineCounter: lc });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = e.linePos?.[0]?.line ?? text.slice(0, e.pos?.[0] ?? 0).split('\n').length;
    throw bad(file, line, e.message.split('\n')[0] ?? 'invalid YAML');
  }
  /**
   * Line of the value at `keys` (a key path: names, then list indexes), as written; for a value
   * that is absent or empty, the line of the deepest key that is there.
   */
  const lineAt = (...keys: Array<string | number>): number => {
    const lineOfNode = (n: unknown): number | undefined => {
      const off = (n as { range?: [number, number, number] | null } | null)?.range?.[0];
      return off === undefined ? undefined : lc.linePos(off).line;
    };
    let node: unknown = doc.contents;
    let line = lineOfNode(node) ?? 1;
    for (const k of keys) {
      if (isAlias(node)) node = node.resolve(doc);
      let next: unknown;
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === k);
        if (!pair) break;
        line = lineOfNode(pair.key) ?? line;
        next = pair.value;
      } else if (isSeq(node) && typeof k === 'number') {
        next = node.items[k];
      } else break;
      line = lineOfNode(next) ?? line;
      node = next;
    }
    return line;
  };
  return interpret(file, doc.toJS({ maxAliasCount: 100 }) ?? {}, lineAt);
}

/** Thrown by the fast path's lineAt: an error to report, which the full parser locates. */
const NEED_LINES = Symbol('need lines');

/** The config of parsed `raw`; `lineAt` gives the line of a key path, for errors only. */
function interpret(
  file: string,
  raw: unknown,
  lineAt: (...keys: Array<string | number>) => number,
): CpmConfig {
  const cfg = defaultConfig();
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw bad(file, 1, 'top level must be a mapping');
  const r = raw as Record<string, unknown>;
  const dir = path.dirname(path.resolve(file));
  const isMapping = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  const sys = r.system ?? {};
  if (!isMapping(sys)) throw bad(file, lineAt('system'), '"system" must be a mapping');
  /** The string at `keys` (undefined when absent), named in errors by its dotted key. */
  const str = (v: unknown, ...keys: Array<string | number>): string | undefined => {
    if (v === undefined || v === null) return undefined;
    const name = keys.filter((k) => typeof k === 'string').join('.');
    if (typeof v !== 'string') throw bad(file, lineAt(...keys), `"${name}" must be a string`);
    return v;
  };
  cfg.file = file;
  cfg.system.rootfs = str(sys.rootfs, 'system', 'rootfs') ?? cfg.system.rootfs;
  cfg.system.database_path =
    str(sys.database_path, 'system', 'database_path') ?? cfg.system.database_path;
  cfg.system.tmpdir_base = str(sys.tmpdir_base, 'system', 'tmpdir_base') ?? cfg.system.tmpdir_base;
  const cache = str(r.cache_dir, 'cache_dir');
  if (cache) cfg.cache_dir = path.resolve(dir, cache);
  if (r.repos_confdir !== undefined) {
    const many = Array.isArray(r.repos_confdir);
    const list = many ? (r.repos_confdir as unknown[]) : [r.repos_confdir];
    cfg.repos_confdir = list.map((d, i) =>
      path.resolve(dir, (many ? str(d, 'repos_confdir', i) : str(d, 'repos_confdir')) ?? ''),
    );
  }
  if (r.trees !== undefined && r.trees !== null) {
    const many = Array.isArray(r.trees);
    const list = many ? (r.trees as unknown[]) : [r.trees];
    cfg.trees = list.map((d, i) => {
      const keys = many ? ['trees', i] : ['trees'];
      const t = str(d, ...keys);
      if (!t)
        throw bad(file, lineAt(...keys), '"trees" must be a directory or a list of directories');
      return path.resolve(dir, t);
    });
  }
  if (r.network !== undefined && r.network !== null) {
    if (!isMapping(r.network)) throw bad(file, lineAt('network'), '"network" must be a mapping');
    const net = r.network;
    const out: Partial<NetworkSettings> = {};
    const secs = (key: string, field: keyof NetworkSettings): void => {
      const v = net[key];
      if (v === undefined || v === null) return;
      if (typeof v !== 'number' || !(v > 0))
        throw bad(
          file,
          lineAt('network', key),
          `"network.${key}" must be a positive number of seconds`,
        );
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
        lineAt('metadata_expire'),
        `"metadata_expire" must be seconds, a number with s/m/h/d (e.g. 6h), or "never"`,
      );
    cfg.metadata_expire = d;
  }
  if (r.build !== undefined && r.build !== null) {
    if (!isMapping(r.build)) throw bad(file, lineAt('build'), '"build" must be a mapping');
    const c = str(r.build.cache, 'build', 'cache');
    if (c !== undefined) {
      if (!/^oci:\/\/[^/]+\/.+/.test(c))
        throw bad(
          file,
          lineAt('build', 'cache'),
          '"build.cache" must be oci://HOST[:PORT]/NAMESPACE',
        );
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
