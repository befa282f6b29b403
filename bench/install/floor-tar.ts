/**
 * A yardstick below floor.ts: what is left when Node creates nothing at all. zstd decompresses the
 * blob into one FIFO, Node reads it into one reused buffer, hashes the tar (diff_id) and every
 * file's body with cpm's tar parser, and writes each chunk on into a second FIFO that GNU tar
 * extracts from: every entry is created by tar's C code, as in the raw pipeline, and Node only
 * sits between the two with the three sha256 sums (the blob's first, as floor.ts does). No DB,
 * no journal, no checks: not an extractor, only the answer to "would handing the file creation to
 * native code reach the target?". Bundle it like floor.ts:
 *
 *   npx esbuild bench/install/floor-tar.ts --bundle --platform=node --format=esm --outfile=/tmp/floor-tar.mjs
 *   TMPDIR=/dev/shm bash bench/install/ab.sh 5 raw 'mkdir DIR && zstd -dc BLOB | tar -x -C DIR' \
 *     floortar 'node /tmp/floor-tar.mjs BLOB DIR'
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { DATA, END, ENTRY, NEED, TarParser } from '../../src/rootfs/tar-parser.js';

const [blob, root] = process.argv.slice(2);
if (!blob || !root) throw new Error('usage: floor-tar.mjs BLOB DIR');

const fromZstd = `${root}.zstd.fifo`;
const toTar = `${root}.tar.fifo`;
for (const f of [fromZstd, toTar])
  if (spawnSync('mkfifo', [f]).status !== 0) throw new Error(`mkfifo ${f} failed`);
mkdirSync(root);
const exit = (argv: string[]): Promise<number | null> =>
  new Promise((res) => spawn('sh', argv, { stdio: 'inherit' }).on('exit', res));
const zstd = exit(['-c', 'exec zstd -dcq -- "$0" > "$1"', blob, fromZstd]);
const tar = exit(['-c', 'exec tar -x -C "$0" < "$1"', root, toTar]);

const buf = Buffer.allocUnsafe(1 << 20);
const blobHash = createHash('sha256');
const bfd = openSync(blob, 'r');
for (let n; (n = readSync(bfd, buf, 0, buf.length, null)) > 0;) blobHash.update(buf.subarray(0, n));
closeSync(bfd);

const fd = openSync(fromZstd, 'r');
const out = openSync(toTar, 'w');
const parser = new TarParser();
const tarHash = createHash('sha256');
let fileHash: Hash | null = null;
let files = 0;
for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) {
  const chunk = buf.subarray(0, n);
  tarHash.update(chunk);
  parser.push(chunk);
  for (let ev; (ev = parser.next()) !== NEED;) {
    if (ev === ENTRY) {
      const t = parser.entry.type;
      fileHash = t === 'file' || t === 'contiguous-file' ? createHash('sha256') : null;
    } else if (ev === DATA) fileHash?.update(parser.data);
    else if (ev === END && fileHash) {
      fileHash.digest('hex');
      fileHash = null;
      files++;
    }
  }
  for (let off = 0; off < n;) off += writeSync(out, chunk, off, n - off);
}
parser.end();
closeSync(fd);
closeSync(out);
const [zs, ts] = await Promise.all([zstd, tar]);
rmSync(fromZstd);
rmSync(toTar);
if (zs !== 0 || ts !== 0) throw new Error(`zstd exited ${zs}, tar ${ts}`);
console.log(`${files} files, blob ${blobHash.digest('hex')}, tar ${tarHash.digest('hex')}`);
