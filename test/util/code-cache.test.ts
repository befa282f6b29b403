/**
 * The code cache is only a cache: what it holds must never change what runs, and a directory or
 * entry that is not safely the user's is not used.
 */
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { codeCacheDir, runCached, type Stamp } from '../../src/util/code-cache.js';

let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'cpm-code-cache-'));
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

// A module with a lazily compiled function, so the entry holds more than the top level. Each run
// gets its own comment (same length): V8 keeps what it compiled in this process by source text,
// and a source it has not seen can only get compiled code from the entry.
let unique = 0;
const source = (factor = 14) =>
  `/*${String(unique++).padStart(6, '0')}*/exports.answer = function () { return [1, 2, 3].map((x) => x * ${factor}).join(','); };`;
const STAMP: Stamp = { size: 100, mtimeMs: 1, ino: 2 };
const run = (dir: string | undefined, text = source(), stamp = STAMP, variant = 'install') => {
  const r = runCached(text, path.join(tmp, 'mod.cjs'), stamp, dir, variant);
  return { ...r, answer: (r.exports as { answer: () => string }).answer() };
};

describe('runCached', () => {
  it('writes an entry on a miss and uses it in the next run, with the same result', () => {
    const dir = codeCacheDir({ HOME: tmp })!;
    expect(dir).toBe(path.join(tmp, '.cache', 'cpm', 'code'));
    const first = run(dir);
    expect(first).toMatchObject({ cache: 'miss', answer: '14,28,42' });
    first.save();
    expect(readdirSync(dir)).toHaveLength(1);
    expect(run(dir)).toMatchObject({ cache: 'hit', answer: '14,28,42' });
    // another command is another entry
    expect(run(dir, source(), STAMP, 'help').cache).toBe('miss');
    expect(run(undefined).cache).toBe('off');
  });

  it('does not use an entry made for another file state or source', () => {
    const dir = codeCacheDir({ HOME: tmp })!;
    run(dir).save();
    // same length, other code: V8 alone would take the entry (it checks the length, not the text)
    expect(run(dir, source(15), { ...STAMP, mtimeMs: 3 })).toMatchObject({
      cache: 'miss',
      answer: '15,30,45',
    });
    expect(run(dir, source(15), { ...STAMP, ino: 9 }).cache).toBe('miss');
    expect(run(dir, source(15), { ...STAMP, size: 101 }).cache).toBe('miss');
  });

  it('an entry V8 refuses (corrupt) is rejected, the code still runs, and save() replaces it', () => {
    const dir = codeCacheDir({ HOME: tmp })!;
    run(dir).save();
    const [name] = readdirSync(dir);
    const file = path.join(dir, name!);
    const head = Buffer.alloc(28);
    const good = readFileSync(file);
    good.copy(head, 0, 0, 28);
    writeFileSync(
      file,
      Buffer.concat([head, Buffer.from('not a code cache, but long enough '.repeat(20))]),
      { mode: 0o600 },
    );
    const bad = run(dir);
    expect(bad).toMatchObject({ cache: 'rejected', answer: '14,28,42' });
    bad.save();
    expect(run(dir).cache).toBe('hit');
  });

  it('ignores an entry others may write', () => {
    const dir = codeCacheDir({ HOME: tmp })!;
    run(dir).save();
    const file = path.join(dir, readdirSync(dir)[0]!);
    chmodSync(file, 0o620);
    expect(run(dir).cache).toBe('miss');
  });
});

describe('codeCacheDir', () => {
  it('is off when disabled, without an absolute home, or when not safely owned', () => {
    expect(codeCacheDir({ HOME: tmp, NODE_DISABLE_COMPILE_CACHE: '1' })).toBeUndefined();
    expect(codeCacheDir({})).toBeUndefined();
    expect(codeCacheDir({ HOME: 'relative' })).toBeUndefined();
    expect(codeCacheDir({ HOME: tmp, XDG_CACHE_HOME: path.join(tmp, 'xdg') })).toBe(
      path.join(tmp, 'xdg', 'cpm', 'code'),
    );
    // writable by others
    const open = path.join(tmp, 'open');
    mkdirSync(path.join(open, 'cpm', 'code'), { recursive: true });
    chmodSync(path.join(open, 'cpm'), 0o777);
    expect(codeCacheDir({ XDG_CACHE_HOME: open })).toBeUndefined();
    // a symlink in place of the directory
    const link = path.join(tmp, 'link');
    mkdirSync(path.join(link, 'cpm'), { recursive: true, mode: 0o700 });
    mkdirSync(path.join(tmp, 'elsewhere'), { mode: 0o700 });
    symlinkSync(path.join(tmp, 'elsewhere'), path.join(link, 'cpm', 'code'));
    expect(codeCacheDir({ XDG_CACHE_HOME: link })).toBeUndefined();
    // owned by someone else (needs root to set up)
    if (process.geteuid?.() === 0) {
      const other = path.join(tmp, 'other');
      mkdirSync(path.join(other, 'cpm', 'code'), { recursive: true, mode: 0o700 });
      chownSync(path.join(other, 'cpm', 'code'), 4321, 4321);
      expect(codeCacheDir({ XDG_CACHE_HOME: other })).toBeUndefined();
    }
  });
});
