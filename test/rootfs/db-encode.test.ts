/**
 * The DB file is written in pieces (InstalledDb.encode), never as one string of the whole DB.
 * Its bytes must stay exactly what the format says (docs/database.md): the header, one JSON
 * object per package in fixed key order with its files' count and sha256, the head line, then per
 * package its marker and its file lines by path, and the end line. Here against a plain rendering
 * of the format (db-reference.ts), on a DB spread over many pieces with paths outside Latin-1 at
 * a piece's edge; and the formats older cpm versions wrote read back the same.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { InstalledDb, fileCount, writeFileAtomic } from '../../src/rootfs/db.js';
import type { FileRecord, InstalledPackage } from '../../src/rootfs/types.js';
import { spec, tmpDir } from '../install/helpers.js';
import { forge, referenceV2, referenceV3 as reference } from './db-reference.js';

function files(prefix: string, n: number): FileRecord[] {
  const out: FileRecord[] = [];
  for (let i = 0; i < n; i++) {
    // long names, a few outside Latin-1 (two and four bytes in UTF-8) all along the DB
    const odd = i % 997 === 0 ? `-Főtanúsítvány-\u{1F600}` : '';
    const p = `${prefix}/share/doc/package-${i.toString(36)}/some/long/path/component${odd}/file-${i}`;
    if (i % 5 === 0) out.push({ path: p, type: 'd', mode: 0o755, uid: 0, gid: 0 });
    else if (i % 7 === 0)
      out.push({ path: p, type: 'l', mode: 0o777, uid: 0, gid: 0, target: `../x${odd}` });
    else
      out.push({
        path: p,
        type: 'f',
        mode: 0o644,
        uid: i % 3,
        gid: 0,
        size: i * 31,
        sha256: createHash('sha256').update(p).digest('hex'),
        ...(i % 11 === 0 ? { config: true } : {}),
        ...(i % 13 === 0 ? { xattrs: { 'user.b': 'ő', 'user.a': '1' } } : {}),
        // one line longer than a whole piece
        ...(i === 4001 ? { xattrs: { 'user.big': 'ő'.repeat(200_000) } } : {}),
      });
  }
  return out;
}

function pkg(id: string, list: FileRecord[]): InstalledPackage {
  return {
    id,
    spec: spec(id),
    origin: 'test',
    imageDigest: 'sha256:00',
    reason: 'explicit',
    layers: ['sha256:01'],
    files: list,
  };
}

describe('DB encoding', () => {
  // one package's files in path order (a transaction's), the other's shuffled
  const sorted = files('usr', 6000).sort((a, b) => (a.path < b.path ? -1 : 1));
  const shuffled = files('opt', 3000).reverse();
  const pkgs = [pkg('z/last@1', sorted), pkg('a/first@2', shuffled)];

  it('gives the bytes of the format, in several pieces', () => {
    const db = new InstalledDb(pkgs);
    const chunks = db.encode();
    expect(chunks.length).toBeGreaterThan(4);
    const want = reference(pkgs);
    expect(Buffer.concat(chunks).toString('utf8')).toBe(want);
    expect(db.serialize()).toBe(want);
    // the records themselves are left as they were (the shuffled list is not sorted in place)
    expect(shuffled[0]!.path > shuffled[1]!.path).toBe(true);
  });

  it('is written whole by writeFileAtomic and reads back', () => {
    const db = new InstalledDb(pkgs);
    const file = path.join(tmpDir('cpm-dbenc-'), 'installed');
    writeFileAtomic(file, db.encode());
    const text = readFileSync(file, 'utf8');
    expect(text).toBe(reference(pkgs));
    const back = InstalledDb.parse(text, file);
    expect(back.get('a/first@2')!.files.length).toBe(3000);
    expect(back.get('z/last@1')!.files).toEqual(sorted);
  });

  it('writeFileAtomic replaces what is left at its temp name, never writes through a symlink', () => {
    const dir = tmpDir('cpm-dbenc-');
    const victim = path.join(tmpDir('cpm-dbenc-outside-'), 'victim');
    writeFileSync(victim, 'precious');
    symlinkSync(victim, path.join(dir, 'installed.tmp'));
    writeFileAtomic(
      path.join(dir, 'installed'),
      ['new'].map((t) => Buffer.from(t)),
    );
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    expect(readFileSync(path.join(dir, 'installed'), 'utf8')).toBe('new');
    expect(readdirSync(dir)).toEqual(['installed']);
  });

  it('an empty DB is the header, the head line and the end line', () => {
    expect(new InstalledDb().serialize()).toBe(reference([]));
    expect(new InstalledDb().serialize().split('\n')).toHaveLength(4);
  });

  it('reads from disk the head and the end line only, the file lines when first used', () => {
    const file = path.join(tmpDir('cpm-dbenc-'), 'installed');
    const text = reference(pkgs);
    // a marker line changed, at the same length: read whole, the DB is refused at once
    const lines = text.split('\n');
    const mark = lines.findIndex((l) => l === '{"files-of":"z/last@1"}');
    lines[mark] = '{"files-of":"z/lost@1"}';
    const bad = lines.join('\n');
    expect(Buffer.byteLength(bad)).toBe(Buffer.byteLength(text));
    expect(() => InstalledDb.parse(bad, file, true)).toThrow(
      `line ${mark + 1} should begin the files of z/last@1`,
    );
    writeFileAtomic(file, [Buffer.from(bad)]);
    // loaded from disk: which packages, and how many files each, without the file lines
    const db = InstalledDb.load(path.dirname(file));
    expect(db.list().map((p) => [p.id, fileCount(p)])).toEqual([
      ['a/first@2', 3000],
      ['z/last@1', 6000],
    ]);
    expect(() => db.get('a/first@2')!.files).toThrow(
      `${file}:${mark + 1}: damaged database: line ${mark + 1} should begin the files of z/last@1`,
    );
    // mended on disk, the same head: the files are those of the file now there
    writeFileAtomic(file, [Buffer.from(text)]);
    expect(db.get('z/last@1')!.files).toEqual(sorted);
    expect(db.get('a/first@2')!.files).toHaveLength(3000);
    // with every line parsed at load, the damage is found there
    writeFileAtomic(file, [Buffer.from(bad)]);
    expect(() => InstalledDb.load(path.dirname(file), true)).toThrow(
      `line ${mark + 1} should begin the files of z/last@1`,
    );
  });

  it('damage the short read can see sends it to read the whole file, which names it', () => {
    const file = path.join(tmpDir('cpm-dbenc-'), 'installed');
    const text = reference(pkgs);
    const lines = text.split('\n');
    const n = lines.length - 1;
    const cases: Array<[string, string, string]> = [
      [
        'cut at a line boundary',
        lines.slice(0, 9000).join('\n') + '\n',
        ':9000: damaged database: truncated: its last line is not the end line',
      ],
      [
        'cut mid-line',
        text.slice(0, text.length - 20),
        `:${n}: damaged database: truncated in the middle of a line`,
      ],
      [
        'a package line edited',
        text.replace('"reason":"explicit"', '"reason":"dependency"'),
        ':4: damaged database: its package lines do not match the checksum in its head line',
      ],
      [
        'a line added',
        text.replace('\n{"files-of":"z/last@1"}', '\n{}\n{"files-of":"z/last@1"}'),
        `:${n + 1}: damaged database: its end line says`,
      ],
    ];
    for (const [what, bad, why] of cases) {
      writeFileAtomic(file, [Buffer.from(bad)]);
      expect(() => InstalledDb.load(path.dirname(file)), what).toThrow(`${file}${why}`);
    }
  });

  it('writes the file lines of a package read from the DB back as they were read, changed ones anew', () => {
    const file = path.join(tmpDir('cpm-dbenc-'), 'installed');
    // a/first's lines in another key order than cpm writes (its sum made to match): kept as read
    const text = reference(pkgs);
    const odd = text.replace(
      /^\{"p":"(opt\/[^"]*)","t":"d","m":493,"u":0,"g":0\}$/gm,
      '{"t":"d","p":"$1","m":493,"u":0,"g":0}',
    );
    expect(odd).not.toBe(text);
    writeFileAtomic(file, [Buffer.from(forge(odd))]);
    const db = InstalledDb.load(path.dirname(file), true);
    const next = db.clone();
    const z = next.get('z/last@1')!;
    z.files = z.files.filter((f) => f.path !== sorted[0]!.path);
    const out = next.serialize();
    // a/first's section byte for byte; z/last's encoded from its records
    const section = (t: string, id: string): string =>
      t
        .slice(t.indexOf(`{"files-of":"${id}"}`))
        .split('\n')
        .slice(1, 3001)
        .join('\n');
    expect(section(out, 'a/first@2')).toBe(section(odd, 'a/first@2'));
    expect(out).not.toContain(`"${sorted[0]!.path}"`);
    const back = InstalledDb.parse(out, file, true);
    expect(back.get('a/first@2')!.files).toEqual(db.get('a/first@2')!.files);
    expect(back.get('z/last@1')!.files).toEqual(sorted.slice(1));
    // unchanged, the DB is written back as it was read
    expect(db.clone().serialize()).toBe(forge(odd));
    // what was read cannot be changed in place, only replaced
    expect(() => db.get('a/first@2')!.files.push(sorted[0]!)).toThrow(TypeError);
    expect(() => {
      db.get('a/first@2')!.files[0]!.mode = 0;
    }).toThrow(TypeError);
  });

  it('a damaged line deep in a large package is named by its line', () => {
    const lines = reference(pkgs).split('\n');
    const mark = lines.indexOf('{"files-of":"z/last@1"}');
    for (const k of [1, 2500, 5999, 6000]) {
      const l = [...lines];
      l[mark + k] = '{"q":1}';
      const db = InstalledDb.parse(forge(l.join('\n')), 'installed');
      expect(() => db.get('z/last@1')!.files).toThrow(
        `installed:${mark + k + 1}: damaged database: line ${mark + k + 1} is an unexpected record`,
      );
    }
  });

  it('two versions of one package in a DB (a forged one: cpm writes one) are refused, not one kept', () => {
    const two = [pkg('a/first@2', []), pkg('a/first@3', []), pkg('z/last@1', [])];
    for (const text of [reference(two), referenceV2(two, 2), referenceV2(two, 1)])
      expect(() => InstalledDb.parse(text, 'installed')).toThrow(
        'installed:3: damaged database: line 3: package a/first@3 is a second version of a/first (line 2 holds the first)',
      );
  });

  it('a DB changed on disk between reading its head and its files is refused, not mixed', () => {
    const file = path.join(tmpDir('cpm-dbenc-'), 'installed');
    writeFileAtomic(file, new InstalledDb(pkgs).encode());
    const db = InstalledDb.load(path.dirname(file));
    const other = new InstalledDb([pkg('a/first@2', shuffled.slice(1)), pkgs[0]!]);
    writeFileAtomic(file, other.encode());
    let err: unknown;
    try {
      void db.get('z/last@1')!.files;
    } catch (e) {
      err = e;
    }
    // another cpm's commit, not damage: the code of a root another cpm holds, and run again
    expect(err).toMatchObject({ code: 'E_LOCKED', hint: 'run the command again' });
    expect(String(err)).toMatch(
      /installed changed while cpm was reading it: another cpm committed a transaction meanwhile/,
    );
    expect(InstalledDb.load(path.dirname(file)).get('a/first@2')!.files).toHaveLength(2999);
  });

  it('a head bigger than the first read is read on until it ends', () => {
    const many = Array.from({ length: 400 }, (_, i) =>
      pkg(`c/p${String(i).padStart(3, '0')}@1`, files(`p${i}`, 3)),
    );
    const file = path.join(tmpDir('cpm-dbenc-'), 'installed');
    writeFileAtomic(file, new InstalledDb(many).encode());
    const text = readFileSync(file, 'utf8');
    expect(text.indexOf('{"cpm-db-head":')).toBeGreaterThan(64 << 10);
    expect(text).toBe(reference(many));
    const db = InstalledDb.load(path.dirname(file));
    expect(db.list()).toHaveLength(400);
    expect(db.get('c/p399@1')!.files).toEqual(many[399]!.files);
  });

  it.each([1, 2] as const)('a format-%i DB (an older cpm) reads back the same', (v) => {
    const file = path.join(tmpDir('cpm-dbenc-'), 'installed');
    writeFileAtomic(file, [Buffer.from(referenceV2(pkgs, v))]);
    for (const eager of [false, true]) {
      const db = InstalledDb.load(path.dirname(file), eager);
      expect(db.list().map((p) => [p.id, fileCount(p)])).toEqual([
        ['a/first@2', 3000],
        ['z/last@1', 6000],
      ]);
      expect(db.get('z/last@1')!.files).toEqual(sorted);
      // and is written back as format 3
      expect(db.serialize()).toBe(reference(pkgs));
    }
  });
});
