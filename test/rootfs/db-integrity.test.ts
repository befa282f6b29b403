/**
 * The DB checks itself: a trailer with the package and file counts and the sha256 of the rest.
 * A DB cut at a line boundary, cut mid-line, edited, emptied or replaced by garbage is refused by
 * name with the way out (recover, reclaim) — through the library and through `cpm verify`, which
 * must never report "0 problems" on a damaged DB. A format-1 DB (no trailer) still reads.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '../../src/errors.js';
import { InstalledDb, fileCount } from '../../src/rootfs/db.js';
import { installPackages } from '../../src/rootfs/index.js';
import { cpmCli, failure, layerFromFiles, step, tmpDir } from '../install/helpers.js';

let root: string;
let dbFile: string;
let good: string;
const { cpm } = cpmCli(() => path.join(root, 'no-config.yaml'));
const cut = (): string => good.slice(0, good.length - 10);

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

describe('DB trailer', () => {
  it('ends with counts and a checksum, and reads back', () => {
    const last = good.trimEnd().split('\n').at(-1)!;
    const t = JSON.parse(last) as { 'cpm-db-end': { packages: number; files: number } };
    expect(t['cpm-db-end'].packages).toBe(2);
    expect(t['cpm-db-end'].files).toBeGreaterThan(3);
    expect(
      InstalledDb.parse(good)
        .list()
        .map((p) => p.id),
    ).toEqual(['a/one@1', 'b/two@1']);
  });

  const lines = (): string[] => good.split('\n');
  const cases: Array<[string, () => string, RegExp]> = [
    [
      'cut at a line boundary',
      () => lines().slice(0, 4).join('\n') + '\n',
      /truncated: it ends after line 4/,
    ],
    [
      'cut mid-line',
      () => good.slice(0, Math.floor(good.length / 2)),
      /truncated in the middle of a line/,
    ],
    ['emptied', () => '', /empty/],
    ['garbage', () => '\x00\x01garbage\n', /not a cpm database/],
    [
      'a record edited',
      () => good.replace('"usr/bin/two"', '"usr/bin/tw0"'),
      /do not match the checksum/,
    ],
    [
      'a record dropped and the checksum forged',
      () => {
        const l = lines();
        const kept = l.filter((x) => !x.includes('"usr/bin/two"')).slice(0, -2);
        const body = kept.join('\n') + '\n';
        const t = JSON.parse(l.at(-2)!) as { 'cpm-db-end': Record<string, unknown> };
        t['cpm-db-end'].sha256 = createHash('sha256').update(body).digest('hex');
        return `${body}${JSON.stringify(t)}\n`;
      },
      /promises 2 packages and \d+ files, the file holds 2 and \d+/,
    ],
  ];
  it.each(cases)('%s: refused by name with the way out', async (_name, make, why) => {
    const text = make();
    const err = withDb(text, () => {
      try {
        InstalledDb.load(path.dirname(dbFile));
      } catch (e) {
        return e as Error & { code?: string; hint?: string };
      }
      throw new Error('a damaged DB was accepted');
    });
    expect(err.code).toBe('E_DB');
    expect(err.message).toMatch(why);
    expect(err.message).toContain(dbFile);
    expect(err.hint).toMatch(/cpm recover/);
    expect(err.hint).toMatch(/cpm reclaim/);
    // and through the CLI: verify never says "0 problems" on it
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

  it('a format-1 DB (no trailer) still reads, with a note; the next commit adds the trailer', async () => {
    const l = good.split('\n');
    const v1 = ['{"cpm-db":1}', ...l.slice(1, -2)].join('\n') + '\n';
    const db = InstalledDb.parse(v1, 'installed');
    expect(db.list()).toHaveLength(2);
    expect(db.notes.join()).toMatch(/older cpm \(format 1, no trailer\)/);
    writeFileSync(dbFile, v1);
    await installPackages(root, [step('c/three@1', [layerFromFiles({ 'usr/bin/three': '3' })])]);
    const now = readFileSync(dbFile, 'utf8');
    expect(now.startsWith('{"cpm-db":2}\n')).toBe(true);
    expect(now).toContain('"cpm-db-end"');
    expect(InstalledDb.load(path.dirname(dbFile)).notes).toEqual([]);
    good = now;
  });

  /** `text` with its trailer's checksum made to match what is before it (a forged DB). */
  const forge = (text: string): string => {
    const l = text.split('\n');
    const trailer = JSON.parse(l.at(-2)!) as { 'cpm-db-end': Record<string, unknown> };
    const body = l.slice(0, -2).join('\n') + '\n';
    trailer['cpm-db-end'].sha256 = createHash('sha256').update(body).digest('hex');
    return `${body}${JSON.stringify(trailer)}\n`;
  };

  it('file lines are parsed when first used; one that is not a file record is refused then, by line', () => {
    const l = good.split('\n');
    const at = l.findIndex((x) => x.startsWith('{"p":'));
    l[at] = '{"q":1}';
    const db = InstalledDb.parse(forge(l.join('\n')), 'installed');
    // which packages are installed is read without their files (a no-op install, `cpm list`)
    expect(db.list().map((p) => p.id)).toEqual(
      InstalledDb.parse(good)
        .list()
        .map((p) => p.id),
    );
    let err: unknown;
    try {
      void db.get('a/one@1')!.files;
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'E_DB', context: { file: 'installed', line: at + 1 } });
    expect(String((err as Error).message)).toMatch(
      `installed:${at + 1}: damaged database: line ${at + 1} is an unexpected record`,
    );
    expect(db.get('b/two@1')!.files.map((f) => f.path)).toContain('usr/bin/two');
  });

  it('parsed when first used, the files are those the DB was written with', () => {
    const db = InstalledDb.parse(good);
    const again = InstalledDb.parse(db.serialize());
    // counted at load, before any file line is parsed (`cpm list`), and the same after
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

  it('a transaction parses every file line before it changes anything: a damaged one stops it there', async () => {
    const l = good.split('\n');
    const at = l.findIndex((x) => x.startsWith('{"p":'));
    l[at] = '{"q":1}';
    writeFileSync(dbFile, forge(l.join('\n')));
    const err = await failure(
      installPackages(root, [step('e/five@1', [layerFromFiles({ 'usr/bin/five': '5' })])]),
    );
    const after = readFileSync(dbFile, 'utf8');
    writeFileSync(dbFile, good);
    expect(err.code).toBe('E_DB');
    expect(err.message).toMatch(`line ${at + 1} is an unexpected record`);
    expect(existsSync(path.join(root, 'usr/bin/five'))).toBe(false);
    expect(after).toBe(forge(l.join('\n')));
  });

  it('a format-1 DB (no checksum) is parsed whole at load: a damaged file line is refused there', () => {
    const l = good.split('\n');
    const at = l.findIndex((x) => x.startsWith('{"p":'));
    l[at] = '{"p":';
    const v1 = ['{"cpm-db":1}', ...l.slice(1, -2)].join('\n') + '\n';
    expect(() => InstalledDb.parse(v1, 'installed')).toThrow(
      new RegExp(`installed:${at + 1}: damaged database: line ${at + 1} is not a record`),
    );
  });

  it('a transaction refuses to run over a damaged DB', async () => {
    writeFileSync(dbFile, cut());
    const err = await failure(
      installPackages(root, [step('d/four@1', [layerFromFiles({ 'usr/bin/four': '4' })])]),
    );
    writeFileSync(dbFile, good);
    expect(err.code).toBe('E_DB');
  });
});
