/**
 * A root as a reproducible tar stream: entries in RootWalker order, numeric owners only (no
 * user/group names), clamped mtimes, no atime/ctime, hardlinks, device nodes, fifos and xattrs
 * as pax records. The same root and SOURCE_DATE_EPOCH always give the same bytes.
 */
import { createWriteStream, existsSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CpmError, type ErrorCode, type ErrorContext } from '../errors.js';
import { createCompressor, type Compression } from '../util/compress.js';
import { RootWalker, type RootEntry, type WalkOptions } from './rootfs-walk.js';
import { tarChunks, type TarHeader } from './tar-encode.js';
import { overlayTable } from './meta.js';
import type { FromWorker, TarWorkerData, ToWorker } from './tar-worker.js';

export interface RootfsTarOptions extends WalkOptions {
  /** Read and encode file contents in a worker thread when it is available (default true). */
  threads?: boolean;
}

export interface TarStats {
  entries: number;
  /** Uncompressed tar bytes. */
  bytes: number;
}

const USTAR_ID_MAX = 0o777777;

const TAR_TYPE: Record<RootEntry['type'], TarHeader['type']> = {
  file: 'file',
  dir: 'directory',
  symlink: 'symlink',
  hardlink: 'link',
  char: 'character-device',
  block: 'block-device',
  fifo: 'fifo',
  socket: 'file', // never reached: the walker drops sockets
};

/** pax records for xattrs: SCHILY.xattr for UTF-8 values, LIBARCHIVE.xattr (unpadded base64, as libarchive writes it) otherwise. */
function xattrPax(xattrs: Record<string, Buffer>, pax: Record<string, string>): void {
  for (const name of Object.keys(xattrs).sort()) {
    const value = xattrs[name]!;
    const text = value.toString('utf8');
    if (Buffer.from(text, 'utf8').equals(value) && !text.includes('\0')) {
      pax[`SCHILY.xattr.${name}`] = text;
    } else {
      pax[`LIBARCHIVE.xattr.${encodeURIComponent(name)}`] = value
        .toString('base64')
        .replace(/=+$/, '');
    }
  }
}

export function tarHeader(e: RootEntry): TarHeader {
  const pax: Record<string, string> = {};
  // ustar has 7 octal digits for ids; larger ones go to pax (the ustar field then reads 0).
  let uid = e.uid;
  let gid = e.gid;
  if (uid > USTAR_ID_MAX) {
    pax.uid = String(uid);
    uid = 0;
  }
  if (gid > USTAR_ID_MAX) {
    pax.gid = String(gid);
    gid = 0;
  }
  if (e.xattrs) xattrPax(e.xattrs, pax);
  const header: TarHeader = {
    name: e.type === 'dir' ? `${e.path}/` : e.path,
    type: TAR_TYPE[e.type],
    mode: e.mode,
    uid,
    gid,
    size: e.type === 'file' ? e.size : 0,
    mtime: e.mtime,
  };
  if (e.linkTarget !== undefined) header.linkname = e.linkTarget;
  if (e.devmajor !== undefined) header.devmajor = e.devmajor;
  if (e.devminor !== undefined) header.devminor = e.devminor;
  if (Object.keys(pax).length > 0) header.pax = pax;
  return header;
}

/**
 * Streams the root as an uncompressed tar. The stream errors (CpmError) if the walk fails.
 * `stats` is filled in by the time the stream ends.
 */
export function rootfsTarStream(
  root: string,
  opts: RootfsTarOptions = {},
  walker: RootWalker = new RootWalker(root, opts),
): { stream: Readable; stats: TarStats } {
  const stats: TarStats = { entries: 0, bytes: 0 };
  const start = opts.threads === false ? undefined : workerModule();
  const table = opts.overlay && overlayTable(opts.overlay);
  if (start && (!opts.overlay || table)) {
    // Everything the walk needs can be copied: the worker walks too.
    const { overlay: _o, overlayPaths, onWarning: _w, threads: _t, ...rest } = opts;
    const data: TarWorkerData = {
      walk: {
        root: walker.root,
        opts: {
          ...rest,
          ...(table ? { overlayTable: table } : {}),
          ...(overlayPaths ? { overlayPaths: [...overlayPaths] } : {}),
        },
      },
    };
    return { stream: workerTarStream(undefined, stats, () => start(data), opts.onWarning), stats };
  }
  if (start)
    return { stream: workerTarStream(walker, stats, () => start({}), opts.onWarning), stats };
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const chunk of tarChunks(walker.entries(), tarHeader, () => stats.entries++)) {
      stats.bytes += chunk.length;
      yield chunk;
    }
  }
  return { stream: Readable.from(counted(), { objectMode: false }), stats };
}

/**
 * The worker script and how to start it: the built .js next to this module, or the .ts source
 * through tsx (tests). The single-file build has neither and encodes in this thread.
 */
function workerModule(): ((workerData: TarWorkerData) => Worker) | undefined {
  const js = new URL('./tar-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return (workerData) => new Worker(js, { workerData });
  const ts = new URL('./tar-worker.ts', import.meta.url);
  if (!existsSync(fileURLToPath(ts))) return undefined;
  // Node 20 workers ignore --import in execArgv: register tsx's loader from inside.
  const api = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api')).href;
  const boot = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(ts.href)}); });`;
  return (workerData) => new Worker(boot, { eval: true, workerData });
}

/** Walk batches the main thread sends at once; between them it serves the pipe. */
const BATCH = 256;

/**
 * The tar stream with the work split across two threads: the worker reads file contents and
 * encodes, this one writes the chunks to the consumer. On one thread reading stalled the
 * consumer's pipe and waiting on the pipe stalled reading; here they overlap. The worker walks
 * too when `walker` is undefined; else (an overlay that is an arbitrary function) this thread
 * walks and sends the entries. Same bytes as tarChunks in this thread.
 */
function workerTarStream(
  walker: RootWalker | undefined,
  stats: TarStats,
  start: () => Worker,
  onWarning: ((m: string) => void) | undefined,
): Readable {
  const worker = start();
  const post = (m: ToWorker): void => worker.postMessage(m);
  let unacked = 0;
  let finished = false;
  const stream = new Readable({
    // Chunks are ~1 MiB: a few of them buffered here keep the pipe fed.
    highWaterMark: 4 << 20,
    read() {
      if (unacked > 0) {
        post({ ack: unacked });
        unacked = 0;
      }
    },
    destroy(err, cb) {
      void worker.terminate();
      cb(err);
    },
  });
  worker.on('message', (m: FromWorker) => {
    if ('chunk' in m) {
      stats.bytes += m.length;
      unacked++;
      stream.push(Buffer.from(m.chunk, 0, m.length));
    } else if ('warning' in m) {
      onWarning?.(m.warning);
    } else if ('finished' in m) {
      // The worker closes its port and exits by itself.
      if (!walker) stats.entries = m.entries;
      finished = true;
      stream.push(null);
    } else {
      const { code, message, hint, context } = m.error;
      stream.destroy(
        code
          ? new CpmError(code as ErrorCode, message, { hint, context: context as ErrorContext })
          : new CpmError('E_IMAGE', `writing the tar stream failed: ${message}`),
      );
    }
  });
  worker.on('error', (e) => stream.destroy(e));
  worker.on('exit', (code) => {
    if (!finished && !stream.destroyed) {
      stream.destroy(new CpmError('E_IMAGE', `the tar worker stopped (exit ${code})`));
    }
  });
  if (!walker) return stream;
  void (async () => {
    let batch: RootEntry[] = [];
    for await (const e of walker.entries()) {
      if (stream.destroyed) return;
      batch.push(e);
      stats.entries++;
      if (batch.length === BATCH) {
        post({ entries: batch });
        batch = [];
        // Let the pipe and the worker's messages in between batches.
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    post({ entries: batch, end: true });
  })().catch((e: unknown) => stream.destroy(e as Error));
  return stream;
}

/** `cpm image tar`: the root as a (compressed) tar file. */
export async function writeRootfsTar(
  root: string,
  outFile: string,
  opts: RootfsTarOptions & { compression?: Compression; level?: number } = {},
): Promise<TarStats> {
  const { stream, stats } = rootfsTarStream(root, opts);
  try {
    await pipeline(
      stream,
      createCompressor(opts.compression ?? 'none', opts.level),
      createWriteStream(outFile),
    );
  } catch (e) {
    if (e instanceof CpmError) throw e;
    throw new CpmError('E_IMAGE', `writing ${outFile} failed: ${(e as Error).message}`, {
      context: { path: outFile },
      cause: e,
    });
  }
  return stats;
}
