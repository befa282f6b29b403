/**
 * luet `retrieve:` — files put into the build context (/luetbuild) before the prelude, so they
 * are not part of the package. An http(s) URL is downloaded by cpm (as docker's `ADD URL` does,
 * whatever the sandbox's network mode) to /luetbuild/<last path segment>, mode 0600 like ADD.
 * Anything else is a glob relative to the package directory; every match (it must stay inside
 * the tree) is copied to /luetbuild/<basename>, as luet's CopyRetrieves copies by basename.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { CpmError } from '../errors.js';
import { fsError, isFsErrno } from '../util/fs-errors.js';
import { networkSettings } from '../util/net.js';
import { copyIntoRoot } from './root.js';
import { CONTEXT_DIR } from './sandbox.js';

export function isUrl(entry: string): boolean {
  return /^https?:\/\//i.test(entry);
}

function segmentRegex(seg: string): RegExp {
  let re = '';
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = seg.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        const body = seg
          .slice(i + 1, end)
          .replace(/^!/, '^')
          .replace(/\\/g, '\\\\');
        re += `[${body}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Matches of a shell glob (`*`, `?`, `[...]` in any segment) under `base`, sorted. */
async function glob(base: string, pattern: string): Promise<string[]> {
  const segs = pattern.split('/').filter((s) => s !== '' && s !== '.');
  let cur = [path.isAbsolute(pattern) ? '/' : base];
  for (const seg of segs) {
    const next: string[] = [];
    for (const dir of cur) {
      if (seg === '..' || !/[*?[]/.test(seg)) {
        const p = path.join(dir, seg);
        if (await fsp.lstat(p).catch(() => undefined)) next.push(p);
        continue;
      }
      const re = segmentRegex(seg);
      const names = await fsp.readdir(dir).catch(() => [] as string[]);
      for (const n of names.sort())
        if (re.test(n) && (n[0] !== '.' || seg[0] === '.')) next.push(path.join(dir, n));
    }
    cur = next;
  }
  return cur;
}

/**
 * The local files `entries` name, resolved in the package directory: each glob must match at
 * least one entry, and each match must be inside the tree (symlinks resolved).
 */
export async function localRetrieves(
  entries: readonly string[],
  pkgDir: string,
  treeDirs: readonly string[],
  pkgId: string,
): Promise<Array<{ match: string; real: string }>> {
  const realTrees = await Promise.all(treeDirs.map((d) => fsp.realpath(d)));
  const out: Array<{ match: string; real: string }> = [];
  for (const e of entries) {
    if (isUrl(e)) continue;
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(e))
      throw new CpmError('E_USAGE', `${pkgId}: retrieve ${e}: only http(s) URLs are fetched`, {
        context: { package: pkgId },
      });
    const matches = await glob(pkgDir, e);
    if (matches.length === 0)
      throw new CpmError('E_NOT_FOUND', `${pkgId}: retrieve ${e} matches nothing`, {
        hint: 'local retrieve entries are globs relative to the package directory',
        context: { package: pkgId, path: path.join(pkgDir, e) },
      });
    for (const m of matches) {
      const real = await fsp.realpath(m);
      if (!realTrees.some((t) => real === t || real.startsWith(t + path.sep)))
        throw new CpmError(
          'E_UNSAFE_ENTRY',
          `${pkgId}: retrieve ${e}: ${m} is outside the tree (${treeDirs.join(', ')})`,
          { context: { package: pkgId, path: m } },
        );
      out.push({ match: m, real });
    }
  }
  return out;
}

/**
 * A match's lines: the match itself is followed (retrieveInto copies its real path); inside a
 * directory, symlinks count by their target text, as copyIntoRoot copies them as links (so a
 * link out of the tree or a loop is neither read nor followed).
 */
async function digestOf(p: string, follow = true): Promise<string[]> {
  const st = follow ? await fsp.stat(p) : await fsp.lstat(p);
  if (st.isSymbolicLink()) return [`l ${path.basename(p)} ${await fsp.readlink(p)}`];
  if (st.isDirectory()) {
    const lines = [`d ${path.basename(p)}`];
    for (const n of (await fsp.readdir(p)).sort())
      for (const l of await digestOf(path.join(p, n), false))
        lines.push(`${path.basename(p)}/${l}`);
    return lines;
  }
  if (!st.isFile()) return []; // devices, fifos, sockets: not copied either
  const h = createHash('sha256');
  for await (const c of createReadStream(p)) h.update(c as Buffer);
  return [`f ${path.basename(p)} ${(st.mode & 0o111) !== 0 ? 'x' : '-'} ${h.digest('hex')}`];
}

/**
 * The part of the build hash retrieves add: each local match's name, exec bit and bytes (a
 * directory's whole contents). URLs count by their text only, as in luet: a file that changes
 * behind the same URL is not noticed (build with --rebuild).
 */
export async function retrieveDigest(
  entries: readonly string[],
  pkgDir: string,
  treeDirs: readonly string[],
  pkgId: string,
): Promise<string> {
  if (entries.length === 0) return '';
  const lines = entries.map((e) => `e ${e}`);
  for (const { match } of await localRetrieves(entries, pkgDir, treeDirs, pkgId))
    lines.push(...(await digestOf(match)));
  return createHash('sha256').update(lines.join('\n')).digest('hex');
}

/** The file name a URL gets in the context: its last path segment. */
export function urlFileName(url: string, pkgId: string): string {
  const u = new URL(url);
  const name = decodeURIComponent(u.pathname.split('/').pop() ?? '');
  if (!name || name === '.' || name === '..' || name.includes('/') || name.includes('\0'))
    throw new CpmError(
      'E_USAGE',
      `${pkgId}: retrieve ${url}: the URL path names no file to put into the build context`,
      { context: { package: pkgId } },
    );
  return name;
}

async function download(url: string, dest: string, pkgId: string): Promise<void> {
  const net = networkSettings();
  const ctl = new AbortController();
  let timer = setTimeout(() => ctl.abort(), net.connectTimeoutMs + net.idleTimeoutMs);
  const bump = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => ctl.abort(), net.idleTimeoutMs);
  };
  try {
    const res = await fetch(url, { signal: ctl.signal, redirect: 'follow' });
    if (!res.ok || !res.body) {
      await res.body?.cancel(); // the connection is not kept for a body nobody reads
      throw new CpmError('E_NETWORK', `${pkgId}: retrieve ${url}: HTTP ${res.status}`, {
        context: { package: pkgId, url },
      });
    }
    // 'wx': O_CREAT|O_EXCL never follows a symlink at `dest` (the caller removed the old entry).
    const fh = await fsp.open(dest, 'wx', 0o600);
    try {
      const body = Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>);
      body.on('data', bump);
      await pipeline(body, fh.createWriteStream());
    } finally {
      await fh.close().catch(() => undefined);
    }
  } catch (e) {
    if (e instanceof CpmError) throw e;
    // A local write error (ENOSPC, EROFS, EACCES under the root) is not the network's fault.
    if (isFsErrno(e))
      throw fsError(e, {
        doing: `${pkgId}: retrieve ${url}: writing`,
        path: dest,
        where: 'root',
        context: { package: pkgId, url },
      });
    const err = e as Error & { cause?: { code?: string; message?: string } };
    const why = ctl.signal.aborted
      ? 'timed out'
      : (err.cause?.code ?? err.cause?.message ?? err.message);
    throw new CpmError('E_NETWORK', `${pkgId}: retrieve ${url}: ${why}`, {
      context: { package: pkgId, url },
      cause: e,
    });
  } finally {
    clearTimeout(timer);
  }
}

/** Puts every retrieve entry into the build root's context directory (made by prepareRoot). */
export async function retrieveInto(
  root: string,
  entries: readonly string[],
  pkgDir: string,
  treeDirs: readonly string[],
  pkgId: string,
): Promise<string[]> {
  const placed: string[] = [];
  for (const { match, real } of await localRetrieves(entries, pkgDir, treeDirs, pkgId)) {
    const to = `${CONTEXT_DIR}/${path.basename(match)}`;
    // The path checked to be inside the tree, not a second resolution of the match (a link
    // swapped in between would lead out). copyIntoRoot never follows a symlink out of the root.
    await copyIntoRoot(root, real, to, `${pkgId}: retrieve`);
    placed.push(to);
  }
  const ctx = path.join(root, CONTEXT_DIR.slice(1));
  for (const url of entries.filter(isUrl)) {
    const name = urlFileName(url, pkgId);
    const dest = path.join(ctx, name);
    await fsp.rm(dest, { recursive: true, force: true });
    await download(url, dest, pkgId);
    placed.push(`${CONTEXT_DIR}/${name}`);
  }
  return placed;
}
