/**
 * Registry credentials: lookup in the auth files docker and podman/skopeo use, `cpm login` /
 * `logout` (which write one of them), and WWW-Authenticate challenge parsing.
 * Secrets are only ever held in memory and sent in Authorization headers — never formatted into
 * messages, logs or error contexts.
 */
import { promises as fsp, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { nodeCrypto } from '../util/lazy-builtins.js';

export interface Credentials {
  username: string;
  password: string;
}

/** Where credentials may come from, in lookup order. */
export function authFileCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR) files.push(path.join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  const home = env.HOME ?? os.homedir();
  files.push(
    path.join(env.XDG_CONFIG_HOME ?? path.join(home, '.config'), 'containers', 'auth.json'),
  );
  files.push(path.join(env.DOCKER_CONFIG ?? path.join(home, '.docker'), 'config.json'));
  return files;
}

/** The file `cpm login` writes: $REGISTRY_AUTH_FILE, else the containers auth.json. */
export function defaultLoginFile(env: NodeJS.ProcessEnv = process.env): string {
  if (env.REGISTRY_AUTH_FILE) return env.REGISTRY_AUTH_FILE;
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json');
  const home = env.HOME ?? os.homedir();
  return path.join(env.XDG_CONFIG_HOME ?? path.join(home, '.config'), 'containers', 'auth.json');
}

interface AuthFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string }>;
  [k: string]: unknown;
}

function readAuthFile(file: string): AuthFile | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null ? (v as AuthFile) : undefined;
  } catch {
    // Never echo the file content: it holds secrets.
    throw new CpmError('E_CONFIG', `${file}: not valid JSON`, { context: { file } });
  }
}

/** Auth-file keys may be "host", "https://host", "http://host/v1/" etc. */
function keyHost(key: string): string {
  return key
    .replace(/^[a-z]+:\/\//, '')
    .replace(/\/.*$/, '')
    .toLowerCase();
}

function decode(entry: {
  auth?: string;
  username?: string;
  password?: string;
}): Credentials | undefined {
  if (entry.username && entry.password !== undefined) {
    return { username: entry.username, password: entry.password };
  }
  if (!entry.auth) return undefined;
  const plain = Buffer.from(entry.auth, 'base64').toString('utf8');
  const i = plain.indexOf(':');
  if (i <= 0) return undefined;
  return { username: plain.slice(0, i), password: plain.slice(i + 1) };
}

/** Credentials for `registry` (host[:port]) from the first auth file that has an entry. */
export function findCredentials(
  registry: string,
  files: string[] = authFileCandidates(),
): Credentials | undefined {
  const want = registry.toLowerCase();
  for (const f of files) {
    const auths = readAuthFile(f)?.auths;
    if (!auths) continue;
    for (const [k, v] of Object.entries(auths)) {
      if (keyHost(k) === want) {
        const c = decode(v);
        if (c) return c;
      }
    }
  }
  return undefined;
}

async function writeAuthFile(file: string, data: AuthFile): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${nodeCrypto().randomBytes(4).toString('hex')}`;
  await fsp.writeFile(tmp, JSON.stringify(data, null, 2) + '\n', { mode: 0o600 });
  await fsp.rename(tmp, file);
}

/** Stores credentials for `registry` in `file` (other entries and keys are kept). */
export async function saveCredentials(
  registry: string,
  creds: Credentials,
  file: string = defaultLoginFile(),
): Promise<void> {
  const data = readAuthFile(file) ?? {};
  const auths = { ...(data.auths ?? {}) };
  for (const k of Object.keys(auths)) if (keyHost(k) === registry.toLowerCase()) delete auths[k];
  auths[registry] = { auth: Buffer.from(`${creds.username}:${creds.password}`).toString('base64') };
  await writeAuthFile(file, { ...data, auths });
}

/** Removes `registry` from `file`; returns whether an entry existed. */
export async function removeCredentials(
  registry: string,
  file: string = defaultLoginFile(),
): Promise<boolean> {
  const data = readAuthFile(file);
  if (!data?.auths) return false;
  const auths = { ...data.auths };
  let found = false;
  for (const k of Object.keys(auths)) {
    if (keyHost(k) === registry.toLowerCase()) {
      delete auths[k];
      found = true;
    }
  }
  if (found) await writeAuthFile(file, { ...data, auths });
  return found;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="...",service="...",scope="..."` (first challenge only). */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?\s*/gy;
  const rest = m[2] ?? '';
  let p: RegExpExecArray | null;
  while ((p = re.exec(rest)) !== null && p[0] !== '') {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  return { scheme: m[1]!.toLowerCase(), params };
}

export function basicHeader(c: Credentials): string {
  return 'Basic ' + Buffer.from(`${c.username}:${c.password}`).toString('base64');
}
