/**
 * The error of a tar header or record the extractor's parser (tar-parser.ts) refuses, and how it
 * shows a name whose bytes may not be text.
 */

/** A header or record cpm refuses (GNU tar refuses it too, or it would be written wrong). */
export class TarHeaderError extends Error {
  constructor(
    /** The entry's name as its bytes read, hex-escaped where they are not printable ASCII. */
    readonly entry: string,
    readonly why: string,
  ) {
    super(`entry "${entry}": ${why}`);
    this.name = 'TarHeaderError';
  }
}

/** Printable ASCII as is, every other byte as \xNN: a name shown without guessing its charset. */
export function escapeBytes(b: Uint8Array): string {
  let s = '';
  for (const c of b)
    s +=
      c >= 0x20 && c < 0x7f && c !== 0x5c
        ? String.fromCharCode(c)
        : `\\x${c.toString(16).padStart(2, '0')}`;
  return s;
}
