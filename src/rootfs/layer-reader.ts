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
import tar from 'tar-stream';
import {
  compressionOfMediaType,
  createDecompressor,
  sniffCompression,
  type Compression,
} from '../util/compress.js';
import { strictTarExtract, TarHeaderError } from './tar-headers.js';

export type LayerEntry = tar.Header;

export interface ReadLayerOptions {
  /** Used when the first bytes are no known compression magic. */
  mediaType: string;
  /** Sees every compressed chunk as read (digest, progress); throw to stop. */
  onBlob?: (chunk: Buffer) => void;
  /** Sees every decompressed chunk before the parser (size limits); throw to stop. */
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
 * Reads the layer in `src` to its end, calling `onEntry` for each tar entry in order; the next
 * entry comes once the returned promise resolved, and the entry's stream must be consumed by then.
 * Rejects with a LayerReadError on the first failure.
 */
export async function readLayer(
  src: Readable,
  opts: ReadLayerOptions,
  onEntry: (header: LayerEntry, stream: Readable) => Promise<void>,
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

  let current = '';
  let failed: { stage: LayerStage; e: unknown } | undefined;
  const track = (stage: LayerStage) => (e: unknown) => void (failed ??= { stage, e });
  const extract = strictTarExtract(tar.extract());
  extract.on('entry', (header, stream, next) => {
    current = header.name;
    // streamx streams implement the node Readable surface callers use
    const entry = stream as unknown as Readable;
    // a refused entry destroys the parser and with it this stream; the error is reported once,
    // through the pipeline
    entry.on('error', () => undefined);
    onEntry(header, entry).then(
      () => next(),
      (e: unknown) => {
        failed ??= { stage: 'entry', e };
        entry.resume();
        next(e as Error);
      },
    );
  });
  src.on('error', track('read'));
  const decompressor = createDecompressor(comp);
  decompressor.on('error', track('decompress'));
  extract.on('error', track('parse'));
  const stages: Array<NodeJS.ReadableStream | NodeJS.WritableStream> = [src];
  if (opts.onBlob) stages.push(tap(opts.onBlob).on('error', track('read')));
  stages.push(decompressor);
  if (opts.onTar) stages.push(tap(opts.onTar).on('error', track('read')));
  stages.push(extract);
  try {
    await pipeline(stages);
  } catch (e) {
    const cause = failed?.e ?? e;
    // a refused header names its own entry (the parser never handed it over)
    const entry = cause instanceof TarHeaderError ? cause.entry : current;
    throw new LayerReadError(failed?.stage ?? 'read', cause, comp, entry);
  }
  return { compression: comp };
}
