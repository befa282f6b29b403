import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeTag,
  encodeTag,
  isValidTag,
  layoutTag,
  packageRepository,
  parseLayoutTag,
} from '../../src/repo/tags.js';

describe('lossless version tags', () => {
  const tricky = [
    '1.0+1',
    '1.0-1',
    '1.0_1',
    '1.0~rc1',
    '1:2.0-3',
    '2.0+git20200101~abc_x',
    '1.0__p',
    '_p',
    'ÄÖ1',
    '0.0.0-r1',
  ];
  it.each(tricky)('%s round-trips into a valid tag', (v) => {
    const t = encodeTag(v);
    expect(isValidTag(t)).toBe(true);
    expect(decodeTag(t)).toBe(v);
  });

  it('keeps the versions luet collides apart', () => {
    const tags = ['1.0+1', '1.0-1', '1.0_1', '1.0~1', '1.0:1'].map(encodeTag);
    expect(new Set(tags).size).toBe(5);
    expect(encodeTag('1.0+1')).toBe('1.0_p1');
    expect(encodeTag('1.0-1')).toBe('1.0-1');
  });

  it('round-trips arbitrary strings (property)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ minLength: 1, maxLength: 14, unit: fc.constantFrom(...'09aZ.+-~:_/ä x') }),
          fc.string({ minLength: 1, maxLength: 6, unit: 'binary' }),
        ),
        (s) => {
          const t = encodeTag(s);
          return isValidTag(t) && decodeTag(t) === s;
        },
      ),
    );
  });

  it('rejects tags it cannot have produced', () => {
    expect(() => decodeTag('1.0_q')).toThrow(/unknown escape/);
    expect(() => decodeTag('1.0_')).toThrow(/dangling/);
    expect(() => decodeTag('1.0_x2b')).toThrow(/canonical/); // "+" must be written _p
    expect(() => encodeTag('1'.repeat(200))).toThrow(/too long/);
  });

  it('layout ref names carry category, name and version losslessly', () => {
    const repo = packageRepository({ category: 'system', name: 'cos-setup' });
    const t = layoutTag(repo, encodeTag('1.0+1'));
    expect(t).toBe('system_scos-setup_c1.0_p1');
    expect(isValidTag(t)).toBe(true);
    expect(parseLayoutTag(t)).toEqual({ repository: 'system/cos-setup', version: '1.0+1' });
    expect(parseLayoutTag(layoutTag('x', encodeTag('1:2.0')))).toEqual({
      repository: 'x',
      version: '1:2.0',
    });
  });

  it('refuses names a registry cannot hold', () => {
    expect(packageRepository({ category: '', name: 'tool' })).toBe('tool');
    expect(() => packageRepository({ category: 'System', name: 'x' })).toThrow(
      /registry repository/,
    );
  });
});
