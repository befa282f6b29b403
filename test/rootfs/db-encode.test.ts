/**
 * The DB file is written in pieces (InstalledDb.encode), never as one string of the whole DB.
 * Its bytes must stay exactly what the format says (docs/database.md): header, one JSON object
 * per package and per file in fixed key order, packages by id, files by path, and the trailer
 * with the counts and the sha256 of everything before it. Here against a plain rendering of the
 * format, on a DB spread over many pieces with paths outside Latin-1 at a piece's edge.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { specToJson } from '../../src/package/codec.js';
import { InstalledDb, writeFileAtomic } from '../../src/rootfs/db.js';
import type { FileRecord, InstalledPackage } from '../../src/rootfs/types.js';
import { spec, tmpDir } from '../install/helpers.js';

/** The format, written the obvious way: one string. */
function reference(pkgs: InstalledPackage[]): string {
  const lines = ['{"cpm-db":2}'];
  let files = 0;
  for (const p of [...pkgs].sort((a, b) => (a.id < b.id ? -1 : 1))) {
    lines.push(
      JSON.stringify({
        package: p.id,
        spec: specToJson(p.spec, 'db'),
        origin: p.origin,
        imageDigest: p.imageDigest,
        reason: p.reason,
        layers: p.layers,
        ...(p.base ? { base: true } : {}),
      }),
    );
    for (const f of [...p.files].sort((a, b) => (a.path < b.path ? -1 : 1))) {
      const o: Record<string, unknown> = { p: f.path, t: f.type, m: f.mode, u: f.uid, g: f.gid };
      if (f.size !== undefined) o.s = f.size;
      if (f.sha256 !== undefined) o.h = f.sha256;
      if (f.target !== undefined) o.l = f.target;
      if (f.rdev) o.r = f.rdev;
      if (f.config) o.c = 1;
      if (f.xattrs) o.x = Object.fromEntries(Object.entries(f.xattrs).sort());
      lines.push(JSON.stringify(o));
      files++;
    }
  }
  const body = lines.join('\n') + '\n';
  const sha256 = createHash('sha256').update(body).digest('hex');
  return `${body}${JSON.stringify({ 'cpm-db-end': { packages: pkgs.length, files, sha256 } })}\n`;
}

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

  it('an empty DB is the header and the trailer', () => {
    expect(new InstalledDb().serialize()).toBe(reference([]));
  });
});
