import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileExcludes } from '../../src/image/exclude.js';
import { makeDev, sourceDateEpochFromEnv, splitDev } from '../../src/image/meta.js';
import { RootWalker } from '../../src/image/rootfs-walk.js';
import { parseGetfattr } from '../../src/image/xattrs.js';

describe('excludes', () => {
  const m = compileExcludes(['/proc/*', 'var/cache', '/tmp/**/*.log', '/etc/[!h]*']);
  it.each([
    ['proc/1', true],
    ['proc', false],
    ['var/cache', true],
    ['var/cache2', false],
    ['tmp/a/b/c.log', true],
    ['tmp/c.txt', false],
    ['etc/passwd', true],
    ['etc/hosts', false],
  ])('%s → %s', (p, want) => expect(m(p)).toBe(want));
  it('matches nothing without patterns', () => expect(compileExcludes([])('x')).toBe(false));
});

describe('dev_t', () => {
  it('splits what makeDev joins (glibc layout)', () => {
    expect(splitDev(0x0103)).toEqual({ major: 1, minor: 3 });
    expect(makeDev(259, 65536)).toBe(0x10010300);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xfffff }),
        fc.integer({ min: 0, max: 0xfffff }),
        (ma, mi) => {
          expect(splitDev(makeDev(ma, mi))).toEqual({ major: ma, minor: mi });
        },
      ),
    );
  });
});

describe('SOURCE_DATE_EPOCH', () => {
  it('reads whole seconds and rejects anything else', () => {
    expect(sourceDateEpochFromEnv({})).toBeUndefined();
    expect(sourceDateEpochFromEnv({ SOURCE_DATE_EPOCH: '1700000000' })).toBe(1_700_000_000);
    expect(() => sourceDateEpochFromEnv({ SOURCE_DATE_EPOCH: 'yesterday' })).toThrow(
      /whole seconds/,
    );
  });
});

describe('xattrs', () => {
  it('parses getfattr output with escaped names and base64/hex/text values', () => {
    const out = [
      '# file: /r/usr/bin/ping',
      'security.capability=0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=',
      '',
      '# file: /r/sp\\040ace',
      'user.note="hi"',
      'user.raw=0x00ff',
      '',
    ].join('\n');
    const map = parseGetfattr(out, '/r');
    expect(map.get('usr/bin/ping')!['security.capability']!.subarray(0, 4)).toEqual(
      Buffer.from([1, 0, 0, 2]),
    );
    expect(map.get('sp ace')).toEqual({
      'user.note': Buffer.from('hi'),
      'user.raw': Buffer.from([0, 0xff]),
    });
  });

  const canSet = spawnSync('sh', ['-c', 'command -v setfattr && command -v getfattr']).status === 0;
  it.skipIf(!canSet)('reads xattrs from disk with getfattr (package attr)', async () => {
    const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-xattr-'));
    try {
      await fsp.writeFile(path.join(root, 'f'), 'x');
      const set = spawnSync('setfattr', ['-n', 'user.cpm', '-v', 'yes', path.join(root, 'f')]);
      expect(set.status).toBe(0);
      const entries = [];
      for await (const e of new RootWalker(root).entries()) entries.push(e);
      expect(entries[0]!.xattrs).toEqual({ 'user.cpm': Buffer.from('yes') });
    } finally {
      await fsp.rm(root, { recursive: true, force: true });
    }
  });
});

describe('walk order', () => {
  it('sorts siblings by UTF-8 bytes, also when names have astral characters', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-walk-order-'));
    try {
      // UTF-16 order puts the astral name (surrogates D83D…) before U+FFFD; UTF-8 bytes do not.
      const names = ['b', 'a\u{1F600}', 'a\uFFFD', 'A', 'a', 'a~'];
      for (const n of names) await fsp.writeFile(path.join(dir, n), '');
      await fsp.mkdir(path.join(dir, 'plain'));
      for (const n of ['z', 'Z', '_', '10', '9'])
        await fsp.writeFile(path.join(dir, 'plain', n), '');
      const seen: string[] = [];
      for await (const e of new RootWalker(dir, { xattrs: false }).entries()) seen.push(e.path);
      expect(seen).toEqual([
        'A',
        'a',
        'a~',
        'a\uFFFD',
        'a\u{1F600}',
        'b',
        'plain',
        'plain/10',
        'plain/9',
        'plain/Z',
        'plain/_',
        'plain/z',
      ]);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
