/**
 * Repository configs: `repos.conf.d/*.yaml` (or *.yml), each file one entry or a list of entries.
 * Unlike luet, a broken file is reported (with file:line), never silently skipped.
 */
import { existsSync, promises as fsp, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { parseFastCore } from '../tree/yaml-fast.js';
import { warn } from '../util/warn.js';

export const REPO_TYPES = ['dir', 'oci', 'http', 'luet'] as const;
export type RepoType = (typeof REPO_TYPES)[number];

export interface RepoConfig {
  name: string;
  type: RepoType;
  /** Tried in order until one answers. dir: path or dir:// URL; oci: oci://host/ns; http(s): URL. */
  urls: string[];
  /** Lower number = higher priority (as luet). */
  priority: number;
  enabled: boolean;
  /** Credentials key in the registry credential store (default: the URL's host). */
  auth?: string;
  /** Verify TLS certificates for https/oci URLs (default true). Digests are always verified. */
  verify: boolean;
  /** oci: talk plain http to a registry that is not on loopback (loopback always is). */
  insecure?: boolean;
  /** PEM file with extra CA certificates for this repository's https/oci URLs. */
  ca_file?: string;
  description?: string;
  /** The file the entry came from (and its line), for messages and `repo remove`. */
  file?: string;
  line?: number;
}

export const DEFAULT_PRIORITY = 99;

const KNOWN = new Set([
  'name',
  'type',
  'urls',
  'url',
  'priority',
  'enabled',
  'enable',
  'auth',
  'verify',
  'insecure',
  'ca_file',
  'description',
]);

/** Validates one raw entry; `where` is "file:line" for messages. */
export function parseRepoEntry(raw: unknown, where: string): RepoConfig {
  const fail = (msg: string): never => {
    throw new CpmError('E_CONFIG', `${where}: ${msg}`, { context: { file: where } });
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    return fail('a repository entry must be a mapping');
  const r = raw as Record<string, unknown>;
  if (typeof r.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(r.name))
    fail('"name" is required and may contain only letters, digits, ".", "_" and "-"');
  if (!REPO_TYPES.includes(r.type as RepoType))
    fail(`"type" must be one of ${REPO_TYPES.join(', ')} (got ${JSON.stringify(r.type)})`);
  let urls: unknown = r.urls ?? (r.url === undefined ? undefined : [r.url]);
  if (typeof urls === 'string') urls = [urls];
  if (!Array.isArray(urls) || urls.length === 0 || urls.some((u) => typeof u !== 'string' || !u))
    fail('"urls" must be a non-empty list of strings');
  const priority = r.priority ?? DEFAULT_PRIORITY;
  if (typeof priority !== 'number' || !Number.isInteger(priority))
    fail('"priority" must be an integer (lower = preferred)');
  const enabled = r.enabled ?? r.enable ?? true;
  if (typeof enabled !== 'boolean') fail('"enabled" must be true or false');
  const verify = r.verify ?? true;
  if (typeof verify !== 'boolean') fail('"verify" must be true or false');
  if (r.insecure !== undefined && typeof r.insecure !== 'boolean')
    fail('"insecure" must be true or false');
  if (r.ca_file !== undefined && (typeof r.ca_file !== 'string' || r.ca_file === ''))
    fail('"ca_file" must be a path to a PEM file');
  if (r.auth !== undefined && typeof r.auth !== 'string')
    fail('"auth" must be a string (a credentials key, e.g. a registry host)');
  if (r.description !== undefined && typeof r.description !== 'string')
    fail('"description" must be a string');
  for (const k of Object.keys(r)) if (!KNOWN.has(k)) warn(`${where}: unknown key "${k}" ignored`);
  const cfg: RepoConfig = {
    name: r.name as string,
    type: r.type as RepoType,
    urls: urls as string[],
    priority: priority as number,
    enabled: enabled as boolean,
    verify: verify as boolean,
  };
  if (r.auth !== undefined) cfg.auth = r.auth as string;
  if (r.insecure === true) cfg.insecure = true;
  if (r.ca_file !== undefined) cfg.ca_file = r.ca_file as string;
  if (r.description !== undefined) cfg.description = r.description as string;
  return cfg;
}

function lineOf(offset: number | undefined, text: string): number | undefined {
  if (offset === undefined) return undefined;
  return text.slice(0, offset).split('\n').length;
}

/**
 * The repository type a URL names: `oci://`, `http(s)://`, `dir://PATH` or a plain path. Any other
 * scheme (`ftp://`) is an error, and so is a bare `HOST:PORT/PATH` or `HOST.DOMAIN/PATH` that is
 * not a directory here: it is a registry written without `oci://`, and taking it as a directory
 * under $PWD would only fail later, far from the typo.
 */
export function repoTypeOfUrl(url: string, what = url): RepoType {
  if (url.startsWith('oci://')) return 'oci';
  if (/^https?:\/\//.test(url)) return 'http';
  if (url.startsWith('dir://')) return 'dir';
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url);
  if (scheme)
    throw new CpmError('E_USAGE', `${what}: ${scheme[1]}:// is not a repository URL scheme`, {
      hint: 'use dir://PATH (or a path), oci://HOST/NAMESPACE, or http(s)://URL',
    });
  const registry = /^([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|[A-Za-z0-9.-]+:\d+|localhost)\/\S/.exec(
    url,
  );
  if (registry && !existsSync(url))
    throw new CpmError(
      'E_USAGE',
      `${what} looks like a registry (${registry[1]}), not a directory, and there is no such directory`,
      { hint: `write oci://${url} for a registry, or ./${url} for a directory` },
    );
  return 'dir';
}

/** Relative local paths (dir, luet) in a file are relative to the file, like cpm.yaml's paths. */
export function resolveLocalUrl(url: string, base: string): string {
  if (/^[a-z]+:\/\//.test(url) && !url.startsWith('dir://')) return url;
  const p = url.startsWith('dir://') ? url.slice('dir://'.length) : url;
  return path.isAbsolute(p) ? url : path.resolve(base, p);
}

/** The YAML parser, loaded on first use (commands that read no repo config never pay for it). */
const yaml = (): Promise<typeof import('yaml')> => import('yaml');

/** Parses one config file's text: a mapping or a list of mappings. */
export async function parseRepoFile(text: string, file: string): Promise<RepoConfig[]> {
  // the fast reader first (a repository config is a few plain lines); yaml for the rest and errors
  const fast = parseFastCore(text, file);
  if (fast) {
    const v = fast.value;
    const items = Array.isArray(v) ? v : [v];
    return repoEntries(
      file,
      v === null || (Array.isArray(v) && v.length === 0),
      items.map((raw) => ({
        raw,
        line: isPlainObject(raw) ? fast.positions.lineOf(raw) : undefined,
      })),
    );
  }
  const { isMap, isSeq, parseDocument } = await yaml();
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = e.linePos?.[0]?.line ?? lineOf(e.pos?.[0], text);
    throw new CpmError(
      'E_CONFIG',
      `${file}${line ? `:${line}` : ''}: ${e.message.split('\n')[0]}`,
      {
        context: { file, line },
      },
    );
  }
  const empty = doc.contents === null || (isSeq(doc.contents) && doc.contents.items.length === 0);
  const nodes = empty ? [] : isSeq(doc.contents) ? doc.contents.items : [doc.contents];
  return repoEntries(
    file,
    empty,
    nodes.map((node) => ({
      raw: isMap(node) ? node.toJSON() : (node as { toJSON?: () => unknown })?.toJSON?.(),
      line: lineOf(isMap(node) ? node.range?.[0] : undefined, text),
    })),
  );
}

const isPlainObject = (v: unknown): boolean =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The entries of one parsed file: each item's value and the line it starts on (maps only). */
function repoEntries(
  file: string,
  empty: boolean,
  items: Array<{ raw: unknown; line: number | undefined }>,
): RepoConfig[] {
  if (empty) {
    // an empty file (a placeholder, a config being written) defines nothing; it blocks nothing
    warn(`${file}: no repository in it, ignored`);
    return [];
  }
  const out: RepoConfig[] = [];
  const base = path.dirname(path.resolve(file));
  for (const { raw, line } of items) {
    const entry = parseRepoEntry(raw, line ? `${file}:${line}` : file);
    entry.urls = entry.urls.map((u) => resolveLocalUrl(u, base));
    if (entry.ca_file) entry.ca_file = path.resolve(base, entry.ca_file);
    entry.file = file;
    if (line !== undefined) entry.line = line;
    out.push(entry);
  }
  return out;
}

export interface LoadedRepoConfigs {
  repos: RepoConfig[];
  /** One error per broken file or duplicate; the other files still load. */
  problems: CpmError[];
}

/**
 * Reads every *.yaml/*.yml of the directories (missing directories are fine), sorted by name.
 * Synchronously: a few small files, read by every command that opens a repository; fs.promises
 * would load node:readline and four more modules on Node 24 (≈ 3 ms of a no-op install).
 */
export async function loadRepoConfigs(dirs: readonly string[]): Promise<LoadedRepoConfigs> {
  const repos: RepoConfig[] = [];
  const problems: CpmError[] = [];
  const seen = new Map<string, RepoConfig>();
  for (const dir of dirs) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      problems.push(
        new CpmError('E_CONFIG', `cannot read ${dir}: ${(e as Error).message}`, {
          context: { path: dir },
        }),
      );
      continue;
    }
    for (const n of names.filter((x) => /\.ya?ml$/.test(x)).sort()) {
      const file = path.join(dir, n);
      try {
        for (const entry of await parseRepoFile(readFileSync(file, 'utf8'), file)) {
          const dup = seen.get(entry.name);
          if (dup) {
            problems.push(
              new CpmError(
                'E_CONFIG',
                `${file}:${entry.line ?? 1}: repository "${entry.name}" is already defined in ${dup.file}:${dup.line ?? 1}`,
                { context: { file, line: entry.line } },
              ),
            );
            continue;
          }
          seen.set(entry.name, entry);
          repos.push(entry);
        }
      } catch (e) {
        problems.push(
          e instanceof CpmError
            ? e
            : new CpmError('E_CONFIG', `${file}: ${(e as Error).message}`, { context: { file } }),
        );
      }
    }
  }
  return { repos, problems };
}

/** The YAML written by `repo add` (no bookkeeping fields). */
export async function renderRepoConfig(r: RepoConfig): Promise<string> {
  const o: Record<string, unknown> = { name: r.name };
  if (r.description) o.description = r.description;
  o.type = r.type;
  o.urls = r.urls;
  o.priority = r.priority;
  o.enabled = r.enabled;
  if (r.auth) o.auth = r.auth;
  if (!r.verify) o.verify = false;
  if (r.insecure) o.insecure = true;
  if (r.ca_file) o.ca_file = r.ca_file;
  return (await yaml()).stringify(o);
}

/** Writes `<dir>/<name>.yaml`; refuses a name that any configured directory already defines. */
export async function addRepoConfig(dirs: readonly string[], entry: RepoConfig): Promise<string> {
  const dir = dirs[0];
  if (!dir) throw new CpmError('E_CONFIG', 'no repos_confdir configured');
  const { repos } = await loadRepoConfigs(dirs);
  const dup = repos.find((r) => r.name === entry.name);
  if (dup) {
    throw new CpmError('E_CONFIG', `repository "${entry.name}" already exists in ${dup.file}`, {
      hint: `cpm repo remove ${entry.name} first`,
      context: { file: dup.file },
    });
  }
  await fsp.mkdir(dir, { recursive: true });
  const file = path.join(dir, `${entry.name}.yaml`);
  const tmp = `${file}.tmp-${process.pid}`;
  await fsp.writeFile(tmp, await renderRepoConfig(entry), { flag: 'wx' });
  await fsp.rename(tmp, file);
  return file;
}

/** Removes an entry: deletes its file, or rewrites the file without it when it holds several. */
export async function removeRepoConfig(dirs: readonly string[], name: string): Promise<string> {
  const { repos } = await loadRepoConfigs(dirs);
  const hit = repos.find((r) => r.name === name);
  if (!hit?.file) {
    throw new CpmError('E_NOT_FOUND', `no repository named "${name}" is configured`, {
      hint: 'cpm repo list shows the configured repositories',
    });
  }
  const text = await fsp.readFile(hit.file, 'utf8');
  const { isMap, isSeq, parseDocument } = await yaml();
  const doc = parseDocument(text);
  if (isSeq(doc.contents) && doc.contents.items.length > 1) {
    doc.contents.items = doc.contents.items.filter(
      (n) => !(isMap(n) && (n.toJSON() as Record<string, unknown>).name === name),
    );
    await fsp.writeFile(hit.file, doc.toString());
  } else {
    await fsp.unlink(hit.file);
  }
  return hit.file;
}
