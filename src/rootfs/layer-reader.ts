/**
 * The one way cpm reads a layer blob: find its compression (the first bytes, else the media
 * type), decompress, parse the tar, and hand each entry to the caller in order. The extractor
 * (extract.ts) and `cpm reclaim` (install/reclaim.ts) both read layers through here; what they do
 * with an entry is theirs. A failure says which stage failed first (a pipeline destroys the other
 * stages with the same error afterwards), so callers can tell a corrupt blob from a broken tar
 * from their own entry handler's error.
 */
import { once } from 'node:events';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  compressionOfMediaType,
  createDecompressor,
  sniffCompression,
  type Compression,
} from '../util/compress.js';
import { TarHeaderError } from './tar-headers.js';
import { DATA, ENTRY, NEED, TarParser, type TarEntry } from './tar-parser.js';

export type LayerEntry = TarEntry;

/**
 * What receives a layer's entries, in order: entry() with the header, data() with each piece of
 * its body (a view into the decompressed chunk, valid during the call), end() when the body is
 * complete. entry() and end() may return a promise: reading waits for it (back-pressure); a
 * throw or rejection stops the read.
 */
export interface LayerSink {
  entry(h: LayerEntry): void | Promise<void>;
  data(chunk: Buffer): void;
  end(): void | Promise<void>;
}

export interface ReadLayerOptions {
  /** Used when the first bytes are no known compression magic. */
  mediaType: string;
  /** Sees every compressed chunk as read (digest, progress); throw to stop. */
  onBlob?: (chunk: Buffer) => void;
  /** Sees every decompressed chunk before the parser (size limits, diff_id); throw to stop. */
  onTar?: (chunk: Buffer) => void;
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

/**
 * Reads the layer in `src` to its end, handing each tar entry to `sink` in order (a synchronous
 * parser: no stream or promise per entry). Rejects with a LayerReadError on the first failure.
 */
export async function readLayer(
  src: Readable,
  opts: ReadLayerOptions,
  sink: LayerSink,
): Promise<{ compression: Compression }> {
  let first: Buffer | null;
  try {
    first = await readHead(src);
  } catch (e) {
    throw new LayerReadError('read', e, 'none', '');
  }
  let comp: Compression = sniffCompression(first ?? Buffer.alloc(0));
  if (comp === 'none') comp = compressionOfMediaType(opts.mediaType);
  if (first) src.unshift(first);

  const parser = new TarParser();
  let current = '';
  let failed: { stage: LayerStage; e: unknown } | undefined;
  const track = (stage: LayerStage) => (e: unknown) => void (failed ??= { stage, e });
  const onTar = opts.onTar;
  const consume = async (tarStream: AsyncIterable<Buffer>): Promise<void> => {
    let stage: LayerStage = 'read';
    try {
      for await (const chunk of tarStream) {
        stage = 'read';
        onTar?.(chunk);
        stage = 'parse';
        parser.push(chunk);
        for (;;) {
          stage = 'parse';
          const ev = parser.next();
          if (ev === NEED) break;
          stage = 'entry';
          if (ev === DATA) sink.data(parser.data);
          else if (ev === ENTRY) {
            current = parser.entry.name;
            const r = sink.entry(parser.entry);
            if (r) await r;
          } else {
            const r = sink.end();
            if (r) await r;
          }
        }
        stage = 'read';
      }
      stage = 'parse';
      parser.end();
    } catch (e) {
      failed ??= { stage, e };
      throw e;
    }
  };
  src.on('error', track('read'));
  const decompressor = createDecompressor(comp);
  decompressor.on('error', track('decompress'));
  const stages: unknown[] = [src];
  if (opts.onBlob) stages.push(tap(opts.onBlob).on('error', track('read')));
  stages.push(decompressor, consume);
  try {
    // the stream typings do not list an async function as the last stage of the array form
    await pipeline(stages as unknown as NodeJS.ReadWriteStream[]);
  } catch (e) {
    const cause = failed?.e ?? e;
    // a refused header names its own entry (the sink never saw it)
    const entry = cause instanceof TarHeaderError ? cause.entry : current;
    throw new LayerReadError(failed?.stage ?? 'read', cause, comp, entry);
  }
  return { compression: comp };
}
