/**
 * Worker half of the threaded tar stream (see workerTarStream in rootfs-tar.ts): takes walk
 * entries from the main thread, reads the file contents and encodes the tar, and hands back
 * ~1 MiB chunks (transferred, not copied). Reading files here lets the main thread keep the
 * squashfs tool's pipe full while the next chunk is read.
 */
import { parentPort } from 'node:worker_threads';
import { CpmError } from '../errors.js';
import { tarHeader } from './rootfs-tar.js';
import { tarChunks } from './tar-encode.js';
import type { RootEntry } from './rootfs-walk.js';

/** Messages from the main thread. */
export type ToWorker = { entries: RootEntry[]; end?: boolean } | { ack: number };
/** Messages to the main thread. */
export type FromWorker =
  | { chunk: ArrayBuffer; length: number }
  | { finished: true }
  | { error: { code?: string; message: string; hint?: string; context?: unknown } };

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
          // Structured clone turns Buffers into Uint8Arrays.
          if (e.xattrs) {
            for (const [k, v] of Object.entries(e.xattrs)) {
              e.xattrs[k] = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
            }
          }
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
  try {
    for await (const chunk of tarChunks(entries(), tarHeader)) {
      while (credit <= 0) await next();
      credit--;
      // Output chunks own their memory (≥ 1 MiB, never the small-buffer pool): move them.
      const own = chunk.byteOffset === 0 && chunk.buffer.byteLength >= 1 << 16;
      const ab = own ? (chunk.buffer as ArrayBuffer) : new Uint8Array(chunk).buffer;
      send({ chunk: ab, length: chunk.length }, [ab]);
    }
    send({ finished: true });
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
