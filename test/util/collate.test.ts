import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { collate } from '../../src/util/collate.js';

const ref = (a: string, b: string): number => Math.sign(a.localeCompare(b, 'en'));
const ascii = (alphabet: string, max: number): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...alphabet), { maxLength: max }).map((a) => a.join(''));
const PRINTABLE = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('');

describe('collate', () => {
  it('orders as the root collation does: punctuation, digits, letters, lowercase first', () => {
    const list = [
      'b',
      'B',
      'a',
      'A',
      '_a',
      '-a',
      'a-b',
      'ab',
      'a/b',
      'a@1',
      'a.b',
      'aB',
      'Ab',
      'a10',
      'a9',
      '',
    ];
    expect([...list].sort(collate)).toEqual([...list].sort(ref));
    expect(collate('aB', 'Ab')).toBe(-1);
    expect(collate('A', 'ab')).toBe(-1);
    expect(collate('system/a@1', 'system/a@1')).toBe(0);
  });

  it('agrees with localeCompare on generated printable ASCII', () => {
    fc.assert(
      fc.property(ascii(PRINTABLE, 12), ascii(PRINTABLE, 12), (a, b) => {
        expect(collate(a, b), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`).toBe(ref(a, b));
      }),
      { numRuns: 20_000 },
    );
    // few characters: many equal prefixes, case-only differences and ties
    fc.assert(
      fc.property(ascii('aAbB-_/.@1 ', 6), ascii('aAbB-_/.@1 ', 6), (a, b) => {
        expect(collate(a, b), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`).toBe(ref(a, b));
      }),
      { numRuns: 20_000 },
    );
  });

  it('leaves other text to localeCompare', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 8 }),
        fc.string({ maxLength: 8 }),
        (a, b) => {
          expect(collate(a, b)).toBe(ref(a, b));
          expect(collate(b, a)).toBe(ref(b, a));
        },
      ),
      { numRuns: 500 },
    );
    expect(collate('é', 'f')).toBe(-1);
    expect(collate('a\tb', 'a b')).toBe(ref('a\tb', 'a b'));
  });
});
