/**
 * The floor of a Node extractor: the least work cpm's install of a zstd layer has to do, with
 * nothing else. zstd decompresses the blob into a FIFO read into one reused buffer (no stream, no
 * allocation per chunk), cpm's tar parser, every entry created at its final path on one thread,
 * sha256 of the blob, of the tar (diff_id) and of every file. No DB, no journal, no stage, no
 * path checks, no worker: it is not safe to run on untrusted layers and is not an extractor,
 * only the yardstick for what the runtime costs. Bundle it so its start-up is a plain node's:
 *
 *   npx esbuild bench/install/floor.ts --bundle --platform=node --format=esm --outfile=/tmp/floor.mjs
 *   TMPDIR=/dev/shm bash bench/install/ab.sh 5 raw 'mkdir DIR && zstd -dc BLOB | tar -x -C DIR' \
 *     floor 'node /tmp/floor.mjs BLOB DIR' [nohash 'node /tmp/floor.mjs BLOB DIR --no-hash']
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import {
  closeSync,
  fchmodSync,
  futimesSync,
  linkSync,
  mkdirSync,
  openSync,
  readSync,
  rmSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { DATA, END, ENTRY, NEED, TarParser, type TarEntry } from '../../src/rootfs/tar-parser.js';

const [blob, root, flag] = process.argv.slice(2);
if (!blob || !root) throw new Error('usage: floor.mjs BLOB DIR [--no-hash]');
const hashing = flag !== '--no-hash';

const fifo = `${root}.fifo`;
if (spawnSync('mkfifo', [fifo]).status !== 0) throw new Error(`mkfifo ${fifo} failed`);
const zstd = spawn('sh', ['-c', 'exec zstd -dcq -- "$0" > "$1"', blob, fifo], { stdio: 'inherit' });
const exited = new Promise<number | null>((res) => zstd.on('exit', res));

const buf = Buffer.allocUnsafe(1 << 20);
const blobHash = hashing ? createHash('sha256') : null;
if (blobHash) {
  const bfd = openSync(blob, 'r');
  for (let n; (n = readSync(bfd, buf, 0, buf.length, null)) > 0;)
    blobHash.update(buf.subarray(0, n));
  closeSync(bfd);
}

const fd = openSync(fifo, 'r');
const parser = new TarParser();
const tarHash = hashing ? createHash('sha256') : null;
mkdirSync(root);
let out = -1;
let fileHash: Hash | null = null;
let entry: TarEntry | null = null;
let files = 0;
for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) {
  const chunk = buf.subarray(0, n);
  tarHash?.update(chunk);
  parser.push(chunk);
  for (let ev; (ev = parser.next()) !== NEED;) {
    if (ev === ENTRY) {
      const e = (entry = parser.entry);
      const dst = `${root}/${e.name}`;
      if (e.type === 'directory') mkdirSync(dst, { mode: e.mode, recursive: true });
      else if (e.type === 'symlink') symlinkSync(e.linkname, dst);
      else if (e.type === 'link') linkSync(`${root}/${e.linkname}`, dst);
      else if (e.type === 'file' || e.type === 'contiguous-file') {
        out = openSync(dst, 'wx', e.mode);
        fileHash = hashing ? createHash('sha256') : null;
      }
    } else if (ev === DATA) {
      writeSync(out, parser.data);
      fileHash?.update(parser.data);
    } else if (ev === END && out >= 0 && entry) {
      fchmodSync(out, entry.mode);
      futimesSync(out, entry.mtime, entry.mtime);
      closeSync(out);
      out = -1;
      fileHash?.digest('hex');
      files++;
    }
  }
}
parser.end();
closeSync(fd);
rmSync(fifo);
if ((await exited) !== 0) throw new Error('zstd failed');
console.log(
  `${files} files, blob ${blobHash?.digest('hex') ?? '-'}, tar ${tarHash?.digest('hex') ?? '-'}`,
);
