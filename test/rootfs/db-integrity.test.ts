/**
 * The DB checks itself (format 3): the head line holds the sha256 of the package lines, each
 * package line the count and sha256 of its file lines, the end line the byte count before it. A
 * DB cut at a line boundary, cut mid-line, edited, emptied or replaced by garbage is refused by
 * name with the way out (recover, reclaim) — through the library and through `cpm verify`, which
 * must never report "0 problems" on a damaged DB. Damage among the file lines is found when they
 * are first used (`cpm list` reads the package lines only). Formats 1 and 2 still read.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '../../src/errors.js';
import { InstalledDb, fileCount } from '../../src/rootfs/db.js';
import { installPackages } from '../../src/rootfs/index.js';
import { cpmCli, failure, layerFromFiles, step, tmpDir } from '../install/helpers.js';
import { forge, referenceV2 } from './db-reference.js';

let root: string;
let dbFile: string;
let good: string;
const { cpm } = cpmCli(() => path.join(root, 'no-config.yaml'));

beforeAll(async () => {
  root = tmpDir('cpm-dbcheck-');
  await installPackages(root, [
    step('a/one@1', [layerFromFiles({ 'usr/bin/one': '1', 'etc/one.conf': 'x' })]),
    step('b/two@1', [layerFromFiles({ 'usr/bin/two': '2' })]),
  ]);
  writeFileSync(path.join(root, 'no-config.yaml'), 'repos_confdir: []\n');
  dbFile = path.join(root, 'var/lib/cpm/installed');
  good = readFileSync(dbFile, 'utf8');
});

function withDb<T>(text: string, fn: () => T): T {
  writeFileSync(dbFile, text);
  try {
    return fn();
  } finally {
    writeFileSync(dbFile, good);
  }
}

function caught(fn: () => unknown): Error & { code?: string; hint?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string; hint?: string };
  }
  throw new Error('a damaged DB was accepted');
}

/** The 1-based line number of the first line of `text` matching `re`. */
const lineOf = (text: string, re: RegExp): number =>
  text.split('\n').findIndex((l) => re.test(l)) + 1;

/** `good` with the line that matches `re` replaced. */
const edit = (re: RegExp, by: string): string =>
  good
    .split('\n')
    .map((l) => (re.test(l) ? by : l))
    .join('\n');

/** `good` as the format 1 or 2 an older cpm wrote. */
const legacy = (v: 1 | 2): string => referenceV2(InstalledDb.parse(good).list(), v);

describe('DB integrity', () => {
  it('has a head line and an end line with counts and checksums, and reads back', () => {
    const l = good.trimEnd().split('\n');
    expect(l[0]).toBe('{"cpm-db":3}');
    const head = JSON.parse(l[3]!) as { 'cpm-db-head': { packages: number; files: number } };
    expect(head['cpm-db-head'].packages).toBe(2);
    expect(head['cpm-db-head'].files).toBeGreaterThan(3);
    const end = JSON.parse(l.at(-1)!) as { 'cpm-db-end': { bytes: number } };
    expect(end['cpm-db-end'].bytes).toBe(Buffer.byteLength(good) - l.at(-1)!.length - 1);
    expect(
      InstalledDb.parse(good)
        .list()
        .map((p) => p.id),
    ).toEqual(['a/one@1', 'b/two@1']);
  });

  const lines = (): string[] => good.split('\n');
  // damage the load itself finds: what is read of every DB (header, package lines, end line)
  const atLoad: Array<[string, () => string, RegExp]> = [
    [
      'cut at a line boundary',
      () => lines().slice(0, 8).join('\n') + '\n',
      /:8: damaged database: truncated: its last line is not the end line/,
    ],
    [
      'cut after its head line',
      () => lines().slice(0, 4).join('\n') + '\n',
      /:4: damaged database: truncated: it ends after its head line/,
    ],
    [
      'cut before its head line',
      () => lines().slice(0, 3).join('\n') + '\n',
      /:3: damaged database: truncated: it ends after line 3 without its head line/,
    ],
    [
      'cut mid-line',
      () => good.slice(0, Math.floor(good.length / 2)),
      /truncated in the middle of a line/,
    ],
    ['emptied', () => '', /empty/],
    ['garbage', () => '\x00\x01garbage\n', /not a cpm database/],
    [
      'a package line edited',
      () => good.replace('"reason":"explicit"', '"reason":"dependency"'),
      /:4: damaged database: its package lines do not match the checksum in its head line/,
    ],
    [
      'a package line dropped and the sums forged',
      () =>
        forge(
          lines()
            .filter((l) => !l.startsWith('{"package":"b/two@1"'))
            .join('\n'),
        ),
      /its head line promises 2 packages and \d+ files, the package lines say 1 and \d+/,
    ],
    [
      'lines added at the end, before the end line',
      () => {
        const l = lines();
        l.splice(-2, 0, '{"p":"x","t":"d","m":493,"u":0,"g":0}');
        return l.join('\n');
      },
      /its end line says \d+ bytes come before it, there are \d+/,
    ],
  ];
  it.each(atLoad)('%s: refused at load by name with the way out', async (_name, make, why) => {
    const text = make();
    const err = withDb(text, () => caught(() => InstalledDb.load(path.dirname(dbFile))));
    expect(err.code).toBe('E_DB');
    expect(err.message).toMatch(why);
    expect(err.message).toContain(dbFile);
    expect(err.hint).toMatch(/cpm recover/);
    expect(err.hint).toMatch(/cpm reclaim/);
    // and through the CLI: verify never says "0 problems" on it, list fails too
    writeFileSync(dbFile, text);
    try {
      const r = cpm('verify', '--root', root);
      expect(r.code, r.err).toBe(EXIT_CODES.E_DB);
      expect(r.err).toMatch(why);
      expect(r.err).toMatch(/hint: .*cpm reclaim/);
      expect(r.err).not.toMatch(/problem\(s\)|internal error/);
      expect(cpm('list', '--installed', '--root', root).code).toBe(EXIT_CODES.E_DB);
    } finally {
      writeFileSync(dbFile, good);
    }
  });

  it('a DB of a newer format is refused with the advice to run the newer cpm, not to move it aside', () => {
    const text = good.replace('{"cpm-db":3}', '{"cpm-db":4}');
    const err = withDb(text, () => caught(() => InstalledDb.load(path.dirname(dbFile))));
    expect(err.code).toBe('E_DB');
    expect(err.message).toBe(`${dbFile}:1: format {"cpm-db":4} is newer than this cpm reads`);
    expect(err.hint).toMatch(/written by a newer cpm/);
    expect(err.hint).not.toMatch(/reclaim|mv /);
    writeFileSync(dbFile, text);
    try {
      const r = cpm('list', '--installed', '--root', root);
      expect(r.code, r.err).toBe(EXIT_CODES.E_DB);
      expect(r.err).toMatch(/newer than this cpm reads/);
    } finally {
      writeFileSync(dbFile, good);
    }
  });

  it('the DB file is read only as a regular file: a symlink or a FIFO there is refused, not followed or waited on', () => {
    const dir = tmpDir('cpm-dbkind-');
    const outside = path.join(dir, 'outside-db');
    writeFileSync(outside, good);
    const db = path.join(dir, 'var/lib/cpm');
    mkdirSync(db, { recursive: true });
    symlinkSync(outside, path.join(db, 'installed'));
    const link = caught(() => InstalledDb.load(db));
    expect(link.code).toBe('E_UNSAFE_ENTRY');
    expect(link.message).toBe(`refusing the database ${db}/installed: it is a symlink`);
    rmSync(path.join(db, 'installed'));
    execFileSync('mkfifo', [path.join(db, 'installed')]);
    const fifo = caught(() => InstalledDb.load(db));
    expect(fifo.code).toBe('E_DB');
    expect(fifo.message).toBe(`${db}/installed: damaged database: it is not a regular file`);
  });

  // damage among the file lines: found when they are first used
  // (true: checked for every package at the first use; false: when that package's files are parsed)
  const atUse: Array<[string, () => string, RegExp, boolean]> = [
    [
      'a file line edited',
      () => good.replace('"usr/bin/two"', '"usr/bin/tw0"'),
      /the files of b\/two@1 \(lines \d+–\d+\) do not match the checksum in its package line/,
      true,
    ],
    [
      'a file line dropped and the sums forged',
      () =>
        forge(
          lines()
            .filter((l) => !l.includes('"usr/bin/two"'))
            .join('\n'),
        ),
      /the files of b\/two@1 end at line \d+, before the \d+ its package line counts/,
      true,
    ],
    [
      'a marker line edited, the sums forged',
      () => forge(edit(/^\{"files-of":"b\/two@1"\}$/, '{"files-of":"b/tw0@1"}')),
      /line \d+ should begin the files of b\/two@1/,
      true,
    ],
    [
      // read as no file, it was written back under a count of one less: a DB cpm then refused
      'a file line emptied, the sums forged',
      () => forge(edit(/"usr\/bin\/two"/, '')),
      /line \d+ is empty/,
      true,
    ],
    [
      // fs-path refuses it at use too, but as an internal error
      'a path out of the root, the sums forged',
      () => forge(good.replace('"usr/bin/two"', '"usr/../../etc/shadow"')),
      /line \d+: the path "usr\/\.\.\/\.\.\/etc\/shadow" is not in the root/,
      false,
    ],
    [
      'an absolute path, the sums forged',
      () => forge(good.replace('"usr/bin/two"', '"/etc/shadow"')),
      /line \d+: the path "\/etc\/shadow" is not in the root/,
      false,
    ],
    [
      'a file line that is not a record, the sums forged',
      () => forge(edit(/"usr\/bin\/two"/, '{"q":1}')),
      /line \d+ is an unexpected record/,
      false,
    ],
  ];
  it.each(atUse)('%s: refused when the files are used, by line', async (_name, make, why, all) => {
    const text = make();
    // which packages are installed is read without the file lines (a no-op install, `cpm list`)
    const db = withDb(text, () => InstalledDb.load(path.dirname(dbFile)));
    expect(db.list().map((p) => p.id)).toEqual(['a/one@1', 'b/two@1']);
    const err = caught(() => db.get('b/two@1')!.files);
    expect(err.code).toBe('E_DB');
    expect(err.message).toMatch(why);
    expect(err.message).toMatch(new RegExp(`${dbFile}:\\d+: damaged database`));
    expect(err.hint).toMatch(/cpm reclaim/);
    // the first use of any package's files checks the counts and sums of all
    if (all) expect(caught(() => db.get('a/one@1')!.files).message).toMatch(why);
    else expect(db.get('a/one@1')!.files.length).toBeGreaterThan(0);
    // through the CLI: list reads the package lines; verify and files use the file lines
    writeFileSync(dbFile, text);
    try {
      expect(cpm('list', '--installed', '--root', root).code).toBe(0);
      for (const args of [['verify'], ['files', all ? 'a/one' : 'b/two']]) {
        const r = cpm(...args, '--root', root);
        expect(r.code, r.err).toBe(EXIT_CODES.E_DB);
        expect(r.err).toMatch(why);
        expect(r.err).not.toMatch(/problem\(s\)|internal error/);
      }
      // an uninstall stops before it changes anything
      const r = cpm('uninstall', 'a/one', '--root', root);
      expect(r.code, r.err).toBe(EXIT_CODES.E_DB);
      expect(existsSync(path.join(root, 'usr/bin/one'))).toBe(true);
      expect(readFileSync(dbFile, 'utf8')).toBe(text);
    } finally {
      writeFileSync(dbFile, good);
    }
  });

  it('a format-1 DB (no trailer) still reads, with a note; the next commit writes format 3', async () => {
    const v1 = legacy(1);
    const db = InstalledDb.parse(v1, 'installed');
    expect(db.list()).toHaveLength(2);
    expect(db.notes.join()).toMatch(/older cpm \(format 1, no trailer\)/);
    writeFileSync(dbFile, v1);
    await installPackages(root, [step('c/three@1', [layerFromFiles({ 'usr/bin/three': '3' })])]);
    const now = readFileSync(dbFile, 'utf8');
    expect(now.startsWith('{"cpm-db":3}\n')).toBe(true);
    expect(now).toContain('"cpm-db-end"');
    expect(InstalledDb.load(path.dirname(dbFile)).notes).toEqual([]);
    good = now;
  });

  it('a format-2 DB still reads, damage refused as before; the next commit writes format 3', async () => {
    const v2 = legacy(2);
    expect(v2.startsWith('{"cpm-db":2}\n')).toBe(true);
    const back = withDb(v2, () => InstalledDb.load(path.dirname(dbFile)));
    for (const p of InstalledDb.parse(good).list()) expect(back.get(p.id)!.files).toEqual(p.files);
    const edited = v2.replace('"usr/bin/two"', '"usr/bin/tw0"');
    expect(
      withDb(edited, () => caught(() => InstalledDb.load(path.dirname(dbFile)))).message,
    ).toMatch(/do not match the checksum in its last line/);
    writeFileSync(dbFile, v2);
    await installPackages(root, [step('d/four@1', [layerFromFiles({ 'usr/bin/four': '4' })])]);
    const now = readFileSync(dbFile, 'utf8');
    expect(now.startsWith('{"cpm-db":3}\n')).toBe(true);
    expect(InstalledDb.parse(now).list()).toHaveLength(4);
    good = now;
  });

  it('parsed when first used, the files are those the DB was written with', () => {
    const db = InstalledDb.parse(good);
    const again = InstalledDb.parse(db.serialize());
    // counted at load, before any file line is read (`cpm list`), and the same after
    const counts = again.list().map((p) => fileCount(p));
    for (const p of db.list()) expect(again.get(p.id)!.files).toEqual(p.files);
    expect(again.list().map((p) => fileCount(p))).toEqual(counts);
    expect(counts).toEqual(db.list().map((p) => p.files.length));
    expect(again.serialize()).toBe(good);
    // set before it was read: the new list is kept, the old lines are never parsed
    const p = again.get('a/one@1')!;
    p.files = [];
    expect(again.get('a/one@1')!.files).toEqual([]);
  });

  it('a transaction reads every file line before it changes anything: a damaged one stops it there', async () => {
    const text = forge(edit(/"usr\/bin\/two"/, '{"q":1}'));
    const at = lineOf(text, /^\{"q":1\}$/);
    writeFileSync(dbFile, text);
    const err = await failure(
      installPackages(root, [step('e/five@1', [layerFromFiles({ 'usr/bin/five': '5' })])]),
    );
    const after = readFileSync(dbFile, 'utf8');
    writeFileSync(dbFile, good);
    expect(err.code).toBe('E_DB');
    expect(err.message).toMatch(`line ${at} is an unexpected record`);
    expect(existsSync(path.join(root, 'usr/bin/five'))).toBe(false);
    expect(after).toBe(text);
  });

  it('a format-1 DB (no checksum) is parsed whole at load: a damaged file line is refused there', () => {
    const v1 = legacy(1).replace(/^\{"p":"usr\/bin\/two".*$/m, '{"p":');
    const at = lineOf(v1, /^\{"p":$/);
    expect(() => InstalledDb.parse(v1, 'installed')).toThrow(
      new RegExp(`installed:${at}: damaged database: line ${at} is not a record`),
    );
  });

  it('a transaction refuses to run over a damaged DB', async () => {
    writeFileSync(dbFile, good.slice(0, good.length - 10));
    const err = await failure(
      installPackages(root, [step('f/six@1', [layerFromFiles({ 'usr/bin/six': '6' })])]),
    );
    writeFileSync(dbFile, good);
    expect(err.code).toBe('E_DB');
  });
});
