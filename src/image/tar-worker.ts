/**
 * Worker half of the threaded tar stream (see workerTarStream in rootfs-tar.ts): takes walk
 * entries from the main thread, reads the file contents and encodes the tar, and hands back
 * ~1 MiB chunks (transferred, not copied). Reading files here lets the main thread keep the
 * squashfs tool's pipe full while the next chunk is read.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { CpmError } from '../errors.js';
import { tableOverlay, type EntryMeta, type OverlayTable } from './meta.js';
import { RootWalker, type RootEntry, type WalkOptions } from './rootfs-walk.js';
import { CHUNK, tarChunks } from '../util/tar-encode.js';
import { tarHeader } from './tar-header.js';

/**
 * workerData: with `walk`, the worker walks the root itself (the overlay, if any, is a table);
 * without, the main thread walks and sends the entries.
 */
export interface TarWorkerData {
  /** SLOTS output chunks of CHUNK bytes, and one state word per slot (0 free, 1 in use). */
  slots: SharedArrayBuffer;
  state: SharedArrayBuffer;
  walk?: {
    root: string;
    opts: Omit<WalkOptions, 'overlay' | 'onWarning' | 'overlayPaths'> & {
      overlayTable?: OverlayTable;
      overlayPaths?: string[];
    };
  };
}

/** Messages from the main thread. */
export type ToWorker = { entries: RootEntry[]; end?: boolean };
/** Messages to the main thread. */
export type FromWorker =
  | { slot: number; length: number }
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

/** The worker's whole life: encode until the walk ends or fails, then close the port. */
async function serve(port: MessagePort): Promise<void> {
  const batches: RootEntry[][] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  port.on('message', (m: ToWorker) => {
    batches.push(m.entries);
    if (m.end) ended = true;
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
  const { walk, slots, state: stateBuf } = workerData as TarWorkerData;
  const state = new Int32Array(stateBuf);
  let nextSlot = 0;
  // Output goes straight into the shared slots, round robin; a slot is free again once the main
  // thread's write of it completed. Waiting here is the back-pressure.
  const alloc = (): Buffer => {
    const i = nextSlot;
    nextSlot = (nextSlot + 1) % state.length;
    while (Atomics.load(state, i) !== 0) Atomics.wait(state, i, 1);
    Atomics.store(state, i, 1);
    return Buffer.from(slots, i * CHUNK, CHUNK);
  };
  let count = 0;
  try {
    const source = walk ? ownWalk(walk, (warning) => send({ warning })) : entries();
    for await (const chunk of tarChunks(source, tarHeader, () => count++, alloc)) {
      if (chunk.buffer === slots) {
        send({ slot: chunk.byteOffset / CHUNK, length: chunk.length });
      } else {
        // A pax header over CHUNK bytes comes as its own buffer: copy it over.
        const ab = new Uint8Array(chunk).buffer;
        send({ chunk: ab, length: chunk.length }, [ab]);
      }
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

if (parentPort) void serve(parentPort);
