/**
 * Worker half of the threaded tar stream (see workerTarStream in rootfs-tar.ts): takes walk
 * entries from the main thread, reads the file contents and encodes the tar, and hands back
 * ~1 MiB chunks (transferred, not copied). Reading files here lets the main thread keep the
 * squashfs tool's pipe full while the next chunk is read.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { CpmError } from '../errors.js';
import { tableOverlay, type EntryMeta, type OverlayTable } from './meta.js';
import { tarHeader } from './rootfs-tar.js';
import { RootWalker, type RootEntry, type WalkOptions } from './rootfs-walk.js';
import { tarChunks } from './tar-encode.js';

/**
 * workerData: with `walk`, the worker walks the root itself (the overlay, if any, is a table);
 * without, the main thread walks and sends the entries.
 */
export interface TarWorkerData {
  walk?: {
    root: string;
    opts: Omit<WalkOptions, 'overlay' | 'onWarning' | 'overlayPaths'> & {
      overlayTable?: OverlayTable;
      overlayPaths?: string[];
    };
  };
}

/** Messages from the main thread. */
export type ToWorker = { entries: RootEntry[]; end?: boolean } | { ack: number };
/** Messages to the main thread. */
export type FromWorker =
  | { chunk: ArrayBuffer; length: number }
  | { finished: true; entries: number }
  | { warning: string }
  | { error: { code?: string; message: string; hint?: string; context?: unknown } };

/** Structured clone turns Buffers into Uint8Arrays. */
function toBuffers(x: Record<string, Uint8Array>): Record<string, Buffer> {
  for (const [k, v] of Object.entries(x)) x[k] = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return x as Record<string, Buffer>;
}

/** The walk the main thread described, with the overlay rebuilt from its table. */
function ownWalk(
  walk: NonNullable<TarWorkerData['walk']>,
  warn: (m: string) => void,
): AsyncGenerator<RootEntry> {
  const { overlayTable, ...opts } = walk.opts;
  let overlay;
  if (overlayTable) {
    for (const m of overlayTable.records.values() as Iterable<EntryMeta>) {
      if (m.xattrs) toBuffers(m.xattrs);
    }
    overlay = tableOverlay(overlayTable);
  }
  return new RootWalker(walk.root, { ...opts, overlay, onWarning: warn }).entries();
}

/** Chunks the main thread may hold before it acknowledges one. */
const WINDOW = 4;

const port = parentPort;
if (port) {
  const batches: RootEntry[][] = [];
  let ended = false;
  let credit = WINDOW;
  let wake: (() => void) | undefined;
  port.on('message', (m: ToWorker) => {
    if ('ack' in m) credit += m.ack;
    else {
      batches.push(m.entries);
      if (m.end) ended = true;
    }
    const w = wake;
    wake = undefined;
    w?.();
  });
  const next = (): Promise<void> => new Promise((resolve) => (wake = resolve));

  async function* entries(): AsyncGenerator<RootEntry> {
    for (;;) {
      const batch = batches.shift();
      if (batch) {
        for (const e of batch) {
          if (e.xattrs) toBuffers(e.xattrs);
          yield e;
        }
      } else if (ended) {
        return;
      } else {
        await next();
      }
    }
  }

  const send = (m: FromWorker, transfer?: ArrayBuffer[]): void => port.postMessage(m, transfer);
  const { walk } = (workerData ?? {}) as TarWorkerData;
  let count = 0;
  try {
    const source = walk ? ownWalk(walk, (warning) => send({ warning })) : entries();
    for await (const chunk of tarChunks(source, tarHeader, () => count++)) {
      while (credit <= 0) await next();
      credit--;
      // Output chunks own their memory (≥ 1 MiB, never the small-buffer pool): move them.
      const own = chunk.byteOffset === 0 && chunk.buffer.byteLength >= 1 << 16;
      const ab = own ? (chunk.buffer as ArrayBuffer) : new Uint8Array(chunk).buffer;
      send({ chunk: ab, length: chunk.length }, [ab]);
    }
    send({ finished: true, entries: count });
  } catch (e) {
    const err = e as Error;
    send({
      error:
        e instanceof CpmError
          ? { code: e.code, message: e.message, hint: e.hint, context: e.context }
          : { message: err.message },
    });
  }
  port.close();
}
