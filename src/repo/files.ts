/**
 * Read-only file access below a repository root, on disk or over plain HTTP(S) (the `http`
 * repository type is any static web server holding the same files as a `dir` repository).
 */
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { Agent, request } from '../oci/http.js';
import { CpmError } from '../errors.js';

export interface RepoFiles {
  /** Human-readable location (path or URL) for messages. */
  readonly location: string;
  read(rel: string): Promise<Buffer>;
  open(rel: string): Promise<Readable>;
  /** Size in bytes, or undefined when the file does not exist. */
  size(rel: string): Promise<number | undefined>;
  close(): Promise<void>;
}

function safeRel(rel: string, where: string): string {
  const norm = path.posix.normalize(rel);
  if (norm.startsWith('../') || norm === '..' || path.posix.isAbsolute(norm)) {
    throw new CpmError('E_REPO', `${where}: refusing path "${rel}" outside the repository`, {
      context: { path: rel },
    });
  }
  return norm;
}

export class LocalFiles implements RepoFiles {
  readonly location: string;
  constructor(readonly root: string) {
    this.location = path.resolve(root);
  }
  private abs(rel: string): string {
    return path.join(this.location, safeRel(rel, this.location));
  }
  async read(rel: string): Promise<Buffer> {
    try {
      return await fsp.readFile(this.abs(rel));
    } catch (e) {
      throw notFound(e, this.abs(rel));
    }
  }
  async open(rel: string): Promise<Readable> {
    const p = this.abs(rel);
    const fh = await fsp.open(p, 'r').catch((e: unknown) => {
      throw notFound(e, p);
    });
    // Passing the FileHandle itself lets the stream close it (a raw fd would leak the handle).
    return createReadStream('', { fd: fh, highWaterMark: 1 << 20 });
  }
  async size(rel: string): Promise<number | undefined> {
    try {
      return (await fsp.stat(this.abs(rel))).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }
  async close(): Promise<void> {}
}

function notFound(e: unknown, p: string): CpmError {
  const code = (e as NodeJS.ErrnoException).code;
  return new CpmError(
    code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_IO',
    `${p}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
    { context: { path: p } },
  );
}

export class HttpFiles implements RepoFiles {
  readonly location: string;
  private readonly agent: Agent;
  constructor(baseUrl: string, opts: FilesOptions = {}) {
    this.location = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
    this.agent = new Agent({
      connect: {
        rejectUnauthorized: opts.tlsVerify ?? true,
        ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
      },
    });
  }
  private url(rel: string): string {
    return new URL(safeRel(rel, this.location), this.location).toString();
  }
  private async get(
    rel: string,
    method: 'GET' | 'HEAD',
  ): Promise<Awaited<ReturnType<typeof request>>> {
    const url = this.url(rel);
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(url, { method, dispatcher: this.agent });
    } catch (e) {
      throw new CpmError('E_NETWORK', `${method} ${url}: ${(e as Error).message}`, {
        context: { path: url },
        cause: e,
      });
    }
    if (res.statusCode === 404) {
      await res.body.dump();
      throw new CpmError('E_NOT_FOUND', `${url}: not found (404)`, { context: { path: url } });
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new CpmError('E_NETWORK', `${method} ${url}: HTTP ${res.statusCode}`, {
        context: { path: url, status: res.statusCode },
      });
    }
    return res;
  }
  async read(rel: string): Promise<Buffer> {
    const res = await this.get(rel, 'GET');
    return Buffer.from(await res.body.arrayBuffer());
  }
  async open(rel: string): Promise<Readable> {
    return (await this.get(rel, 'GET')).body;
  }
  async size(rel: string): Promise<number | undefined> {
    try {
      const res = await this.get(rel, 'HEAD');
      await res.body.dump();
      const n = Number(res.headers['content-length']);
      return Number.isFinite(n) ? n : undefined;
    } catch (e) {
      if (e instanceof CpmError && e.code === 'E_NOT_FOUND') return undefined;
      throw e;
    }
  }
  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** dir:// URL or plain path → LocalFiles; http(s):// → HttpFiles. */
export interface FilesOptions {
  tlsVerify?: boolean;
  /** Extra CA certificates (PEM). */
  ca?: string | Buffer;
}

export function openFiles(url: string, opts: FilesOptions = {}): RepoFiles {
  if (/^https?:\/\//.test(url)) return new HttpFiles(url, opts);
  return new LocalFiles(url.startsWith('dir://') ? url.slice('dir://'.length) : url);
}
