/**
 * A root as a reproducible tar stream: entries in RootWalker order, numeric owners only (no
 * user/group names), clamped mtimes, no atime/ctime, hardlinks, device nodes, fifos and xattrs
 * as pax records. The same root and SOURCE_DATE_EPOCH always give the same bytes.
 */
import { createWriteStream, WriteStream } from 'node:fs';
import { Socket } from 'node:net';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Worker } from 'node:worker_threads';
import { CpmError, type ErrorCode, type ErrorContext } from '../errors.js';
import { createCompressor, type Compression } from '../util/compress.js';
import { startWorker, workerAvailable } from '../util/worker.js';
import { RootWalker, type RootEntry, type WalkOptions } from './rootfs-walk.js';
import { CHUNK, tarChunks } from '../util/tar-encode.js';
import { tarHeader } from './tar-header.js';
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

/** The root as an uncompressed tar, to be written into one destination. */
export interface TarSource {
  /** Filled in by the time pipeTo resolves. */
  stats: TarStats;
  /**
   * Writes the whole tar into `dest` and ends it (buffers are reused: see workerPipe); rejects (CpmError when the walk or a read
   * failed) on the first error. Resolves once `dest` has finished.
   */
  pipeTo(dest: Writable): Promise<void>;
}

/** Output slots shared with the worker: enough to keep the pipe fed while files are read. */
const SLOTS = 8;

export function rootfsTarSource(
  root: string,
  opts: RootfsTarOptions = {},
  walker: RootWalker = new RootWalker(root, opts),
): TarSource {
  const stats: TarStats = { entries: 0, bytes: 0 };
  const start = opts.threads === false ? undefined : workerModule();
  if (start) {
    const table = opts.overlay && overlayTable(opts.overlay);
    const data: TarWorkerData = {
      slots: new SharedArrayBuffer(SLOTS * CHUNK),
      state: new SharedArrayBuffer(SLOTS * 4),
    };
    // When everything the walk needs can be copied (no overlay, or a table), the worker walks.
    const own = !opts.overlay || table !== undefined;
    if (own) {
      const { overlay: _o, overlayPaths, onWarning: _w, threads: _t, ...rest } = opts;
      data.walk = {
        root: walker.root,
        opts: {
          ...rest,
          ...(table ? { overlayTable: table } : {}),
          ...(overlayPaths ? { overlayPaths: [...overlayPaths] } : {}),
        },
      };
    }
    return {
      stats,
      pipeTo: (dest) =>
        workerPipe(own ? undefined : walker, stats, () => start(data), data, dest, opts.onWarning),
    };
  }
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const chunk of tarChunks(walker.entries(), tarHeader, () => stats.entries++)) {
      stats.bytes += chunk.length;
      yield chunk;
    }
  }
  return {
    stats,
    pipeTo: (dest) => pipeline(Readable.from(counted(), { objectMode: false }), dest),
  };
}

/** How to start the tar worker (see util/worker.ts), when it can run here. */
function workerModule(): ((workerData: TarWorkerData) => Worker) | undefined {
  if (!workerAvailable('tar-worker')) return undefined;
  return (workerData) => startWorker('tar-worker', workerData);
}

/** Walk batches the main thread sends at once; between them it serves the pipe. */
const BATCH = 256;

/**
 * The tar written with the work split across two threads: the worker reads file contents and
 * encodes into shared slots, this one writes each slot to `dest` and frees it when the write
 * completed (no copies, no per-chunk garbage). On one thread, reading stalled the consumer's
 * pipe and waiting on the pipe stalled reading; here they overlap. The worker walks too when
 * `walker` is undefined; else (an overlay that is an arbitrary function) this thread walks and
 * sends the entries. Same bytes as tarChunks in this thread.
 */
function workerPipe(
  walker: RootWalker | undefined,
  stats: TarStats,
  start: () => Worker,
  data: TarWorkerData,
  dest: Writable,
  onWarning: ((m: string) => void) | undefined,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const worker = start();
    const state = new Int32Array(data.state);
    let settled = false;
    let finished = false;
    const fail = (e: unknown): void => {
      if (settled) return;
      settled = true;
      void worker.terminate();
      dest.destroy();
      reject(e instanceof Error ? e : new Error(String(e)));
    };
    // A socket or file is done with a buffer when its write callback runs, so slots go out as
    // they are; other streams (a pass-through, a process duplex) may still hold the buffer then,
    // so they get a copy. Either way the slot is freed by the callback: that is the back-pressure.
    const zeroCopy = dest instanceof Socket || dest instanceof WriteStream;
    const release = (slot: number) => (err?: Error | null) => {
      if (err) return fail(err);
      Atomics.store(state, slot, 0);
      Atomics.notify(state, slot);
    };
    const closedEarly = () => fail(new CpmError('E_IMAGE', 'the tar destination closed early'));
    // A tool may exit as soon as it has read the end-of-archive blocks, before the worker's
    // 'finished' message is here: that close is only early if more data comes after it.
    let destClosed = false;
    dest.on('error', fail);
    dest.on('close', () => (destClosed = true));
    worker.on('message', (m: FromWorker) => {
      if (settled) return;
      if (destClosed && ('slot' in m || 'chunk' in m)) return closedEarly();
      if ('slot' in m) {
        stats.bytes += m.length;
        const view = Buffer.from(data.slots, m.slot * CHUNK, m.length);
        dest.write(zeroCopy ? view : Buffer.from(view), release(m.slot));
      } else if ('chunk' in m) {
        stats.bytes += m.length;
        dest.write(Buffer.from(m.chunk, 0, m.length));
      } else if ('warning' in m) {
        onWarning?.(m.warning);
      } else if ('finished' in m) {
        // The worker closes its port and exits by itself.
        if (!walker) stats.entries = m.entries;
        finished = true;
        if (destClosed) {
          settled = true;
          resolve();
          return;
        }
        dest.end(() => {
          if (!settled) {
            settled = true;
            resolve();
          }
        });
      } else {
        const { code, message, hint, context } = m.error;
        fail(
          code
            ? new CpmError(code as ErrorCode, message, { hint, context: context as ErrorContext })
            : new CpmError('E_IMAGE', `writing the tar stream failed: ${message}`),
        );
      }
    });
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (!finished) fail(new CpmError('E_IMAGE', `the tar worker stopped (exit ${code})`));
    });
    if (!walker) return;
    const post = (m: ToWorker): void => worker.postMessage(m);
    void (async () => {
      let batch: RootEntry[] = [];
      for await (const e of walker.entries()) {
        if (settled) return;
        batch.push(e);
        stats.entries++;
        if (batch.length === BATCH) {
          post({ entries: batch });
          batch = [];
          // Let the pipe and the worker's messages in between batches.
          await new Promise((r) => setImmediate(r));
        }
      }
      post({ entries: batch, end: true });
    })().catch(fail);
  });
}

/** `cpm image tar`: the root as a (compressed) tar file. */
export async function writeRootfsTar(
  root: string,
  outFile: string,
  opts: RootfsTarOptions & { compression?: Compression; level?: number } = {},
): Promise<TarStats> {
  const src = rootfsTarSource(root, opts);
  const compression = opts.compression ?? 'none';
  const file = createWriteStream(outFile);
  let results: PromiseSettledResult<void>[];
  if (compression === 'none') {
    // Straight into the file (no pass-through in between: see workerPipe).
    results = await Promise.allSettled([src.pipeTo(file)]);
  } else {
    const compressor = createCompressor(compression, opts.level);
    results = await Promise.allSettled([src.pipeTo(compressor), pipeline(compressor, file)]);
  }
  const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  if (errors.length > 0) {
    // The walk's own error explains more than the stream errors it caused.
    const own = errors.find((e) => e instanceof CpmError);
    if (own) throw own;
    const e = errors[0] as Error;
    throw new CpmError('E_IMAGE', `writing ${outFile} failed: ${e.message}`, {
      context: { path: outFile },
      cause: e,
    });
  }
  return src.stats;
}
