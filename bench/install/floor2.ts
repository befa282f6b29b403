/**
 * The two-thread floor: bench/install/floor.ts's work split over the two cores the way an ideal
 * extractor would, to see how close the install target is reachable at all. The main thread
 * reads zstd's output from a FIFO into a shared ring, parses the tar and creates every entry at
 * its final path; one worker hashes the blob (reading the file itself) and then, from the same
 * ring, the tar (diff_id) and every file (it runs a second tar parser over the bytes, which costs
 * far less than passing it the file boundaries). No DB, journal, path checks or stage: a
 * yardstick, not an extractor.
 *
 *   npx esbuild bench/install/floor2.ts --bundle --platform=node --format=esm --outfile=/tmp/floor2.mjs
 *   TMPDIR=/dev/shm bash bench/install/ab.sh 5 raw 'mkdir DIR && zstd -dc BLOB | tar -x -C DIR' \
 *     floor2 'node /tmp/floor2.mjs BLOB DIR'
 *
 * FLOOR_THREADS=1 prints each thread's CPU seconds to stderr at the end.
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
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { DATA, END, ENTRY, NEED, TarParser, type TarEntry } from '../../src/rootfs/tar-parser.js';

const RING = 16 << 20;
const CHUNK = 1 << 20;
/** Byte totals live in a Float64Array (a 514 MB tar overflows an Int32); an Int32Array beside
 * them is only for Atomics.wait/notify. */
interface Shared {
  ring: SharedArrayBuffer;
  ctl: SharedArrayBuffer;
}
/** Slots of the Float64Array: bytes written into the ring, bytes hashed, 1 once the tar ended. */
const W = 0;
const C = 1;
const DONE = 2;

if (isMainThread) {
  const [blob, root] = process.argv.slice(2);
  if (!blob || !root) throw new Error('usage: floor2.mjs BLOB DIR');
  const shared: Shared = { ring: new SharedArrayBuffer(RING), ctl: new SharedArrayBuffer(64) };
  const ring = Buffer.from(shared.ring);
  const tot = new Float64Array(shared.ctl, 0, 4);
  // sig[0] changes after each write into the ring, sig[1] after each chunk hashed
  const sig = new Int32Array(shared.ctl, 32, 4);
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { shared, blob } });
  const result = new Promise<string>((res, rej) => {
    worker.once('message', (m: string) => res(m));
    worker.once('error', rej);
  });

  const fifo = `${root}.fifo`;
  if (spawnSync('mkfifo', [fifo]).status !== 0) throw new Error(`mkfifo ${fifo} failed`);
  const zstd = spawn('sh', ['-c', 'exec zstd -dcq -- "$0" > "$1"', blob, fifo], {
    stdio: 'inherit',
  });
  const exited = new Promise<number | null>((res) => zstd.on('exit', res));
  const fd = openSync(fifo, 'r');
  const parser = new TarParser();
  mkdirSync(root);
  let out = -1;
  let entry: TarEntry | null = null;
  let files = 0;
  let written = 0;
  for (;;) {
    // never overwrite what the worker has not hashed yet
    for (;;) {
      const seen = Atomics.load(sig, 1);
      if (written - tot[C]! <= RING - CHUNK) break;
      Atomics.wait(sig, 1, seen, 50);
    }
    const at = written % RING;
    const n = readSync(fd, ring, at, Math.min(CHUNK, RING - at), null);
    if (n <= 0) break;
    const chunk = ring.subarray(at, at + n);
    written += n;
    tot[W] = written;
    Atomics.add(sig, 0, 1);
    Atomics.notify(sig, 0);
    parser.push(chunk);
    for (let ev; (ev = parser.next()) !== NEED;) {
      if (ev === ENTRY) {
        const e = (entry = parser.entry);
        const dst = `${root}/${e.name}`;
        if (e.type === 'directory') mkdirSync(dst, { mode: e.mode, recursive: true });
        else if (e.type === 'symlink') symlinkSync(e.linkname, dst);
        else if (e.type === 'link') linkSync(`${root}/${e.linkname}`, dst);
        else if (e.type === 'file' || e.type === 'contiguous-file')
          out = openSync(dst, 'wx', e.mode);
      } else if (ev === DATA) {
        writeSync(out, parser.data);
      } else if (ev === END && out >= 0 && entry) {
        fchmodSync(out, entry.mode);
        futimesSync(out, entry.mtime, entry.mtime);
        closeSync(out);
        out = -1;
        files++;
      }
    }
  }
  parser.end();
  tot[DONE] = 1;
  Atomics.add(sig, 0, 1);
  Atomics.notify(sig, 0);
  closeSync(fd);
  rmSync(fifo);
  if ((await exited) !== 0) throw new Error('zstd failed');
  const res = await result;
  if (process.env.FLOOR_THREADS) {
    const { readdirSync, readFileSync } = await import('node:fs');
    const per = readdirSync('/proc/self/task').map((t) => {
      const f = readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      const comm = f.slice(f.indexOf('(') + 1, f.lastIndexOf(')'));
      return `${comm}:${(Number(rest[11]) + Number(rest[12])) / 100}`;
    });
    console.error(per.join(' '));
  }
  console.log(`${files} files, ${res}`);
  await worker.terminate();
} else {
  const { shared, blob } = workerData as { shared: Shared; blob: string };
  const ring = Buffer.from(shared.ring);
  const tot = new Float64Array(shared.ctl, 0, 4);
  const sig = new Int32Array(shared.ctl, 32, 4);
  const blobHash = createHash('sha256');
  const bfd = openSync(blob, 'r');
  const bbuf = Buffer.allocUnsafe(CHUNK);
  for (let n; (n = readSync(bfd, bbuf, 0, CHUNK, null)) > 0;) blobHash.update(bbuf.subarray(0, n));
  closeSync(bfd);
  const tarHash = createHash('sha256');
  const parser = new TarParser();
  let fileHash: Hash | null = null;
  let hashed = 0;
  const digests: string[] = [];
  for (;;) {
    const seen = Atomics.load(sig, 0);
    const written = tot[W]!;
    if (hashed === written) {
      if (tot[DONE] === 1 && tot[W] === hashed) break;
      Atomics.wait(sig, 0, seen, 50);
      continue;
    }
    while (hashed < written) {
      const at = hashed % RING;
      const n = Math.min(written - hashed, RING - at);
      const chunk = ring.subarray(at, at + n);
      tarHash.update(chunk);
      parser.push(chunk);
      for (let ev; (ev = parser.next()) !== NEED;) {
        if (ev === ENTRY) {
          const t = parser.entry.type;
          fileHash = t === 'file' || t === 'contiguous-file' ? createHash('sha256') : null;
        } else if (ev === DATA) fileHash?.update(parser.data);
        else if (ev === END && fileHash) {
          digests.push(fileHash.digest('hex'));
          fileHash = null;
        }
      }
      hashed += n;
      tot[C] = hashed;
      Atomics.add(sig, 1, 1);
      Atomics.notify(sig, 1);
    }
  }
  parentPort!.postMessage(
    `${digests.length} digests, blob ${blobHash.digest('hex')}, tar ${tarHash.digest('hex')}`,
  );
}
