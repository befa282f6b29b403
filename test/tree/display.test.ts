import fc from 'fast-check';
import { basename, relative, sep } from 'node:path';
import { describe, expect, it } from 'vitest';
import { displayFrom } from '../../src/tree/tree.js';

/** What the loader showed before the fast path: path.relative, with `/`, or the base's name. */
const reference = (base: string, p: string): string =>
  relative(base, p).split(sep).join('/') || basename(p);

const segment = fc.constantFrom('a', 'b', 'pkgs', '.', '..', '', '.git', 'x.yaml', '..a');
const path = (min: number): fc.Arbitrary<string> =>
  fc.array(segment, { minLength: min, maxLength: 5 }).map((s) => s.join('/'));

describe('displayFrom', () => {
  it('shows a path as path.relative does from the tree base', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('a', 'b', 'tree'), { maxLength: 3 }),
        path(0),
        fc.boolean(),
        (baseParts, tail, below) => {
          const base = '/' + baseParts.join('/');
          const p = below ? `${base === '/' ? '' : base}/${tail}` : `/${tail}`;
          expect(displayFrom(base)(p), `${base} ${p}`).toBe(reference(base, p));
        },
      ),
      { numRuns: 5_000 },
    );
    expect(displayFrom('/t')('/t/packages/a/definition.yaml')).toBe('packages/a/definition.yaml');
    expect(displayFrom('/t')('/t')).toBe('t');
    expect(displayFrom('/t')('/t/a/../b')).toBe('b');
  });
});
