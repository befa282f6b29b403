/**
 * The one way cpm reads a layer blob: find its compression (the first bytes, else the media
 * type), decompress, parse the tar, and hand each entry to the caller in order. The extractor
 * (extract.ts) and `cpm reclaim` (install/reclaim.ts) both read layers through here; what they do
 * with an entry is theirs. A failure says which stage failed first (a pipeline destroys the other
 * stages with the same error afterwards), so callers can tell a corrupt blob from a broken tar
 * from their own entry handler's error.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, open, read, readSync } from 'node:fs';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  compressionOfMediaType,
  createDecompressor,
  sniffCompression,
  zstdFileReader,
  type Compression,
  type SyncDecompressor,
} from '../util/compress.js';
import { layerDigests, type LayerDigests, type TarRing } from './file-digest.js';
import { TarHeaderError } from './tar-headers.js';
import { DATA, ENTRY, NEED, TarParser, type TarEntry } from './tar-parser.js';

export type LayerEntry = TarEntry;

/**
 * What receives a layer's entries, in order: entry() with the header and the stream position of
 * its body's first byte, data() with each piece of its body (a view into the tar ring, valid
 * during the call), end() when the body is complete. entry() and end() may return a promise:
 * reading waits for it (back-pressure); a throw or rejection stops the read. start(), before the
 * first entry, gives the tar ring the bodies are read into (file-digest.ts): a sink whose own
 * thread uses body bytes in place holds the ring (TarRing.hold) until it is done with them.
 */
export interface LayerSink {
  start?(ring: TarRing): void;
  entry(h: LayerEntry, at: number): void | Promise<void>;
  data(chunk: Buffer): void;
  end(): void | Promise<void>;
}

export interface ReadLayerOptions {
  /** Used when the first bytes are no known compression magic. */
  mediaType: string;
  /** How many more compressed bytes were read (progress). */
  onBlobBytes?: (n: number) => void;
  /** Stops the read (its reason becomes the 'read' failure): SIGINT, SIGTERM. */
  signal?: AbortSignal;
  /** Sees every decompressed chunk before the parser (size limits); throw to stop. */
  onTar?: (chunk: Buffer) => void;
  /** Compute the sha256 of the blob (the layer's digest): LayerRead.blob. */
  hashBlob?: boolean;
  /** Compute the sha256 of the decompressed tar (the layer's diff_id): LayerRead.tar. */
  hashTar?: boolean;
}

export interface LayerRead {
  compression: Compression;
  /** "sha256:…" of the blob, when asked for. */
  blob?: string;
  /** "sha256:…" of the tar, when asked for. */
  tar?: string;
}

/** What failed first: reading the blob (or an onBlob/onTar tap), decompressing, parsing, an entry. */
export type LayerStage = 'read' | 'decompress' | 'parse' | 'entry';

export class LayerReadError extends Error {
  constructor(
    readonly stage: LayerStage,
    override readonly cause: unknown,
    readonly compression: Compression,
    /** Name of the entry being read when it failed ('' before the first). */
    readonly entry: string,
  ) {
    super((cause as Error)?.message ?? String(cause));
    this.name = 'LayerReadError';
  }
}

/** The first chunk, read without ending the stream (the caller unshifts it back). */
async function readHead(src: Readable): Promise<Buffer | null> {
  for (;;) {
    const chunk = src.read() as Buffer | null;
    if (chunk) return chunk;
    if (src.readableEnded) return null;
    await Promise.race([once(src, 'readable'), once(src, 'end')]);
  }
}

const tap = (f: (chunk: Buffer) => void): Transform =>
  new Transform({
    transform(chunk: Buffer, _enc, cb) {
      try {
        f(chunk);
      } catch (e) {
        cb(e as Error);
        return;
      }
      cb(null, chunk);
    },
  });

/** Decompressed bytes read between two turns of the event loop on the synchronous path. */
const YIELD_BYTES = 2 << 20;
/** Turns between two looks at how far zstd read (a read of /proc: progress only). */
const PROGRESS_TURNS = 4;

/**
 * Reads the layer in `src` to its end, handing each tar entry to `sink` in order (a synchronous
 * parser: no stream or promise per entry). `src` is a stream, or the descriptor of a local blob
 * file at offset 0 (the caller keeps it open until this settles and closes it): a zstd blob is
 * then decompressed by the zstd program reading the descriptor itself, its output read
 * synchronously into a reused buffer (zstdFileReader), and the digests of blob and tar computed on
 * a worker thread from the same open file and from that buffer (layerDigests); other blobs stream
 * from the descriptor. Rejects with a LayerReadError on the first failure.
 */
export async function readLayer(
  src: Readable | number,
  opts: ReadLayerOptions,
  sink: LayerSink,
): Promise<LayerRead> {
  if (typeof src !== 'number') return readStream(src, opts, sink, null, null);
  const fd = src;
  const head = Buffer.alloc(4);
  let got: number;
  try {
    got = readSync(fd, head, 0, 4, 0);
  } catch (e) {
    throw new LayerReadError('read', e, 'none', '');
  }
  let comp = sniffCompression(head.subarray(0, got));
  if (comp === 'none') comp = compressionOfMediaType(opts.mediaType);
  let dec: SyncDecompressor | null = null;
  let digests: LayerDigests;
  try {
    dec = comp === 'zstd' ? zstdFileReader(fd) : null;
    digests = layerDigests(fd, !!opts.hashBlob, !!opts.hashTar);
  } catch (e) {
    // fstat, a worker or zstd that cannot start: zstd stopped, the FIFO closed, the cause named
    dec?.close();
    throw new LayerReadError('read', e, comp, '');
  }
  try {
    if (!dec) {
      // the caller closes the descriptor: the stream's close (which pipeline calls on destroy,
      // even with autoClose off) is a no-op
      const stream = createReadStream('', {
        fd,
        start: 0,
        highWaterMark: 1 << 20,
        fs: { open, read, close: (_fd: number, cb: (e: null) => void) => cb(null) },
      });
      const r = await readStream(stream, { ...opts, hashBlob: false }, sink, comp, digests);
      const d = await digestsOf(digests, comp);
      return {
        ...r,
        ...(d.blob ? { blob: d.blob } : {}),
        ...(d.tar ? { tar: d.tar } : {}),
      };
    }
    try {
      await readSyncLoop(dec, digests, opts, sink);
    } finally {
      dec.close();
    }
    const d = await digestsOf(digests, comp);
    return {
      compression: comp,
      ...(d.blob ? { blob: d.blob } : {}),
      ...(d.tar ? { tar: d.tar } : {}),
    };
  } catch (e) {
    await digests.cancel();
    throw e;
  }
}

/** The worker's digests; its failure (reading the blob file) is a 'read' failure. */
async function digestsOf(
  d: LayerDigests,
  comp: Compression,
): Promise<{ blob: string | null; tar: string | null }> {
  try {
    return await d.result();
  } catch (e) {
    throw new LayerReadError('read', e, comp, '');
  }
}

/**
 * What consumes decompressed bytes (read into the tar ring): taps, parser, sink; `stage` says
 * what failed.
 */
class Feeder {
  readonly parser = new TarParser();
  current = '';
  stage: LayerStage = 'read';
  constructor(
    private readonly opts: ReadLayerOptions,
    private readonly sink: LayerSink,
    ring: TarRing,
  ) {
    sink.start?.(ring);
  }

  /** Hands a decompressed chunk (a view of the ring) on; a promise only when the sink waits. */
  feed(chunk: Buffer): void | Promise<void> {
    this.stage = 'read';
    this.opts.onTar?.(chunk);
    this.stage = 'parse';
    this.parser.push(chunk);
    return this.events();
  }

  private events(): void | Promise<void> {
    const { parser, sink } = this;
    for (;;) {
      this.stage = 'parse';
      const ev = parser.next();
      if (ev === NEED) break;
      this.stage = 'entry';
      if (ev === DATA) sink.data(parser.data);
      else {
        let r: void | Promise<void>;
        if (ev === ENTRY) {
          this.current = parser.entry.name;
          r = sink.entry(parser.entry, parser.offset);
        } else r = sink.end();
        if (r) return r.then(() => this.events());
      }
    }
    this.stage = 'read';
  }

  end(): void {
    this.stage = 'parse';
    this.parser.end();
  }

  error(e: unknown, stage: LayerStage, comp: Compression): LayerReadError {
    // a refused header names its own entry (the sink never saw it)
    const entry = e instanceof TarHeaderError ? e.entry : this.current;
    return new LayerReadError(stage, e, comp, entry);
  }
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * The synchronous path: blocking reads of zstd's output into the digests' buffer, parsed as they
 * come. The event loop gets a turn every YIELD_BYTES (signals, the stage writer's replies,
 * progress).
 */
async function readSyncLoop(
  dec: SyncDecompressor,
  digests: LayerDigests,
  opts: ReadLayerOptions,
  sink: LayerSink,
): Promise<void> {
  const f = new Feeder(opts, sink, digests.ring);
  const signal = opts.signal;
  let since = 0;
  let turns = 0;
  let reported = 0;
  const progress = (): void => {
    const at = dec.consumed();
    if (at > reported) {
      opts.onBlobBytes?.(at - reported);
      reported = at;
    }
  };
  const aborted = (): LayerReadError =>
    new LayerReadError('read', signal!.reason, 'zstd', f.current);
  for (;;) {
    const wait = digests.ready();
    if (wait) await wait;
    const buf = digests.space();
    let n: number;
    try {
      n = dec.read(buf);
    } catch (e) {
      throw f.error(e, 'decompress', 'zstd');
    }
    if (n === 0) break;
    digests.wrote(n);
    try {
      const r = f.feed(buf.subarray(0, n));
      if (r) await r;
    } catch (e) {
      // a signal may be why zstd's output looked wrong (a terminal's SIGINT reaches it too)
      if (signal?.aborted) throw aborted();
      throw f.error(e, f.stage, 'zstd');
    }
    since += n;
    if (since >= YIELD_BYTES) {
      since = 0;
      if (++turns % PROGRESS_TURNS === 0) progress();
      await turn();
      if (signal?.aborted) throw aborted();
    }
  }
  try {
    // zstd's verdict before the parser's: a truncated blob ends the output early, and that is
    // what the user should read, not "truncated tar"
    await dec.done();
  } catch (e) {
    if (signal?.aborted) throw aborted();
    throw f.error(e, 'decompress', 'zstd');
  }
  progress();
  try {
    f.end();
  } catch (e) {
    throw f.error(e, 'parse', 'zstd');
  }
}

/**
 * The stream path: any Readable, any compression (node:zlib, or the zstd program's pipe); each
 * decompressed chunk is copied into the tar ring and parsed there. `known`: the compression,
 * already sniffed; `digests`: the ring and digests of a blob file (null: a ring here, the tar's
 * digest on this thread, the blob's by a tap).
 */
async function readStream(
  src: Readable,
  opts: ReadLayerOptions,
  sink: LayerSink,
  known: Compression | null,
  fileDigests: LayerDigests | null,
): Promise<LayerRead> {
  let comp: Compression;
  if (known) comp = known;
  else {
    let first: Buffer | null;
    try {
      first = await readHead(src);
    } catch (e) {
      throw new LayerReadError('read', e, 'none', '');
    }
    comp = sniffCompression(first ?? Buffer.alloc(0));
    if (comp === 'none') comp = compressionOfMediaType(opts.mediaType);
    if (first) src.unshift(first);
  }

  const digests = fileDigests ?? layerDigests(-1, false, !!opts.hashTar);
  const f = new Feeder(opts, sink, digests.ring);
  const blobHash = opts.hashBlob ? createHash('sha256') : null;
  let failed: { stage: LayerStage; e: unknown } | undefined;
  const track = (stage: LayerStage) => (e: unknown) => void (failed ??= { stage, e });
  const consume = async (tarStream: AsyncIterable<Buffer>): Promise<void> => {
    try {
      for await (const chunk of tarStream) {
        for (let off = 0; off < chunk.length;) {
          const wait = digests.ready();
          if (wait) await wait;
          const space = digests.space();
          const n = Math.min(space.length, chunk.length - off);
          chunk.copy(space, 0, off, off + n);
          digests.wrote(n);
          off += n;
          const r = f.feed(space.subarray(0, n));
          if (r) await r;
        }
      }
      f.end();
    } catch (e) {
      failed ??= { stage: f.stage, e };
      throw e;
    }
  };
  const signal = opts.signal;
  const stop = (): void => void src.destroy(signal!.reason as Error);
  if (signal?.aborted) stop();
  else signal?.addEventListener('abort', stop, { once: true });
  src.on('error', track('read'));
  const decompressor = createDecompressor(comp);
  decompressor.on('error', track('decompress'));
  const stages: unknown[] = [src];
  const { onBlobBytes } = opts;
  if (blobHash || onBlobBytes)
    stages.push(
      tap((chunk) => {
        blobHash?.update(chunk);
        onBlobBytes?.(chunk.length);
      }).on('error', track('read')),
    );
  stages.push(decompressor, consume);
  try {
    // the stream typings do not list an async function as the last stage of the array form
    await pipeline(stages as unknown as NodeJS.ReadWriteStream[]);
  } catch (e) {
    const cause = failed?.e ?? e;
    throw f.error(cause, failed?.stage ?? 'read', comp);
  } finally {
    signal?.removeEventListener('abort', stop);
  }
  if (fileDigests) return { compression: comp };
  const d = await digests.result();
  return {
    compression: comp,
    ...(blobHash ? { blob: `sha256:${blobHash.digest('hex')}` } : {}),
    ...(d.tar ? { tar: d.tar } : {}),
  };
}
