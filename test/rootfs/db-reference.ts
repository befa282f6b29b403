/**
 * The DB formats written the obvious way, one string each (docs/database.md, "Format"): the
 * reference the encoder's bytes are compared with, and the formats older cpm versions wrote, which
 * must still read. `forge` re-signs an edited format-3 text: a DB damaged past its checksums, as
 * only a writer other than cpm makes one.
 */
import { createHash } from 'node:crypto';
import { specToJson } from '../../src/package/codec.js';
import type { FileRecord, InstalledPackage } from '../../src/rootfs/types.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.entries(v as Record<string, unknown>)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, x]) => [k, sortKeys(x)]),
    );
  return v;
}

function packageRecord(p: InstalledPackage): Record<string, unknown> {
  return {
    package: p.id,
    spec: specToJson(p.spec, 'db'),
    origin: p.origin,
    imageDigest: p.imageDigest,
    reason: p.reason,
    layers: p.layers,
    ...(p.base ? { base: true } : {}),
    ...(p.rootless ? { rootless: true } : {}),
    ...(p.finalize ? { finalize: sortKeys(p.finalize) } : {}),
  };
}

function fileLine(f: FileRecord): string {
  const o: Record<string, unknown> = { p: f.path, t: f.type, m: f.mode, u: f.uid, g: f.gid };
  if (f.size !== undefined) o.s = f.size;
  if (f.sha256 !== undefined) o.h = f.sha256;
  if (f.target !== undefined) o.l = f.target;
  if (f.rdev) o.r = f.rdev;
  if (f.config) o.c = 1;
  if (f.xattrs) o.x = sortKeys(f.xattrs);
  if (f.skipped) o.k = f.skipped;
  if (f.generated) o.gen = 1;
  return JSON.stringify(o);
}

const byId = (pkgs: InstalledPackage[]): InstalledPackage[] =>
  [...pkgs].sort((a, b) => (a.id < b.id ? -1 : 1));
const byPath = (files: FileRecord[]): FileRecord[] =>
  [...files].sort((a, b) => (a.path < b.path ? -1 : 1));

/**
 * Format 3: header; package lines, each with its files' count and sha256; the head line; per
 * package a marker line and its file lines; the end line with the byte count before it.
 */
export function referenceV3(pkgs: InstalledPackage[]): string {
  let head = '{"cpm-db":3}\n';
  let body = '';
  let files = 0;
  for (const p of byId(pkgs)) {
    const lines = byPath(p.files).map((f) => `${fileLine(f)}\n`);
    const section = lines.join('');
    head += `${JSON.stringify({ ...packageRecord(p), files: { count: lines.length, sha256: sha(section) } })}\n`;
    body += `${JSON.stringify({ 'files-of': p.id })}\n${section}`;
    files += lines.length;
  }
  head += `${JSON.stringify({ 'cpm-db-head': { packages: pkgs.length, files, sha256: sha(head) } })}\n`;
  const bytes = Buffer.byteLength(head + body);
  return `${head}${body}${JSON.stringify({ 'cpm-db-end': { packages: pkgs.length, files, bytes } })}\n`;
}

/** Formats 1 and 2: each package line followed by its file lines; 2 adds a trailer with a checksum. */
export function referenceV2(pkgs: InstalledPackage[], version: 1 | 2 = 2): string {
  let body = `{"cpm-db":${version}}\n`;
  let files = 0;
  for (const p of byId(pkgs)) {
    body += `${JSON.stringify(packageRecord(p))}\n`;
    for (const f of byPath(p.files)) body += `${fileLine(f)}\n`;
    files += p.files.length;
  }
  if (version === 1) return body;
  return `${body}${JSON.stringify({ 'cpm-db-end': { packages: pkgs.length, files, sha256: sha(body) } })}\n`;
}

/**
 * A format-3 text after an edit, with its sums made to match again: each section's sha256 over
 * the lines after its marker up to the next marker (the counts are left as they were), the head's
 * over the lines before it, and the end line's byte count.
 */
export function forge(text: string): string {
  const lines = text.split('\n').slice(0, -1);
  const headAt = lines.findIndex((l) => l.startsWith('{"cpm-db-head":'));
  const endAt = lines.length - 1;
  const sums = new Map<string, string>();
  let id = '';
  let section = '';
  const close = (): void => {
    if (id) sums.set(id, sha(section));
  };
  for (let i = headAt + 1; i < endAt; i++) {
    const l = lines[i]!;
    if (l.startsWith('{"files-of":')) {
      close();
      id = (JSON.parse(l) as { 'files-of': string })['files-of'];
      section = '';
    } else section += `${l}\n`;
  }
  close();
  for (let i = 1; i < headAt; i++) {
    const o = JSON.parse(lines[i]!) as { package: string; files: { sha256: string } };
    if (sums.has(o.package)) o.files.sha256 = sums.get(o.package)!;
    lines[i] = JSON.stringify(o);
  }
  const headText = lines.slice(0, headAt).join('\n') + '\n';
  const h = JSON.parse(lines[headAt]!) as { 'cpm-db-head': { sha256: string } };
  h['cpm-db-head'].sha256 = sha(headText);
  lines[headAt] = JSON.stringify(h);
  const before = lines.slice(0, endAt).join('\n') + '\n';
  const e = JSON.parse(lines[endAt]!) as { 'cpm-db-end': { bytes: number } };
  e['cpm-db-end'].bytes = Buffer.byteLength(before);
  return `${before}${JSON.stringify(e)}\n`;
}
