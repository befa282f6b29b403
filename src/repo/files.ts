/**
 * Read-only file access below a repository root, on disk or over plain HTTP(S) (the `http`
 * repository type is any static web server holding the same files as a `dir` repository).
 */
import {
  close,
  constants,
  createReadStream,
  fstat,
  open,
  readFile,
  readlink,
  realpath,
  stat,
} from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
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

const openFd = promisify(open);
const fstatFd = promisify(fstat);
const closeFd = promisify(close);
const readFd = promisify(readFile);
// callback forms, not fs.promises: that getter loads node:readline and more on Node 24, a few ms
// of every no-op install from a dir:// repository
const realpathNative = promisify(realpath.native);
const readlinkP = promisify(readlink);
const statP = promisify(stat);

export class LocalFiles implements RepoFiles {
  readonly location: string;
  /** The location with its symlinks resolved (once): what every file opened must lie under. */
  private real: Promise<string> | undefined;
  constructor(readonly root: string) {
    this.location = path.resolve(root);
  }
  private abs(rel: string): string {
    return path.join(this.location, safeRel(rel, this.location));
  }
  /**
   * Opens `rel` and checks the open descriptor: a regular file whose path, symlinks resolved, is
   * inside the repository (E_REPO otherwise, e.g. a blob that is a symlink to a host file). The
   * check is made on what was opened, so what the caller reads is what was checked; the caller
   * closes the descriptor.
   */
  async openFd(rel: string): Promise<number> {
    const p = this.abs(rel);
    let fd: number;
    try {
      // O_NONBLOCK: a FIFO put in place of a file must not hang the open (refused below)
      fd = await openFd(p, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (e) {
      throw notFound(e, p);
    }
    try {
      const st = await fstatFd(fd);
      if (!st.isFile())
        throw new CpmError('E_REPO', `${p}: not a regular file; refusing to read it`, {
          context: { path: p },
        });
      const at = await this.openedPath(fd, p, st);
      const real = await this.realRoot();
      if (at !== real && !at.startsWith(real === '/' ? '/' : `${real}/`))
        throw new CpmError(
          'E_REPO',
          `${p} leads out of the repository (to ${at}); refusing to read it`,
          {
            hint: 'a repository file may be a symlink only to another file inside the repository',
            context: { path: p, target: at },
          },
        );
      return fd;
    } catch (e) {
      await closeFd(fd).catch(() => undefined);
      if (e instanceof CpmError) throw e;
      throw notFound(e, p);
    }
  }
  private realRoot(): Promise<string> {
    this.real ??= realpathNative(this.location).catch((e: unknown) => {
      this.real = undefined;
      throw notFound(e, this.location);
    });
    return this.real;
  }
  /** The path the kernel opened `fd` at (Linux), else `p` resolved and checked to be that file. */
  private async openedPath(
    fd: number,
    p: string,
    st: { dev: number; ino: number },
  ): Promise<string> {
    try {
      return await readlinkP(`/proc/self/fd/${fd}`);
    } catch {
      const real = await realpathNative(p);
      const again = await statP(real);
      if (again.dev !== st.dev || again.ino !== st.ino)
        throw new CpmError('E_REPO', `${p} changed while it was opened`, { context: { path: p } });
      return real;
    }
  }
  async read(rel: string): Promise<Buffer> {
    const fd = await this.openFd(rel);
    try {
      return await readFd(fd);
    } catch (e) {
      throw notFound(e, this.abs(rel));
    } finally {
      await closeFd(fd).catch(() => undefined);
    }
  }
  async open(rel: string): Promise<Readable> {
    // the stream closes the descriptor at its end or when destroyed
    return createReadStream('', { fd: await this.openFd(rel), highWaterMark: 1 << 20 });
  }
  async size(rel: string): Promise<number | undefined> {
    let fd: number;
    try {
      fd = await this.openFd(rel);
    } catch (e) {
      if (e instanceof CpmError && e.code === 'E_NOT_FOUND') return undefined;
      throw e;
    }
    try {
      return (await fstatFd(fd)).size;
    } finally {
      await closeFd(fd).catch(() => undefined);
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
