/**
 * The content-addressed blob store shared by pull, push, pack and install:
 * `<root>/blobs/sha256/<hex>` — the same shape as an OCI image layout, so a layout directory is
 * a blob store too. Blobs are written to a temp file in the same directory (`.tmp-*`, ignored
 * by readers), sha256 and size are checked while streaming, then fsync + rename: a blob that is
 * in the store is always complete and correct.
 */
import type { Hash } from 'node:crypto';
import {
  constants,
  createReadStream,
  promises as fsp,
  readFileSync,
  readlinkSync,
  type ReadStream,
} from 'node:fs';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { CpmError } from '../errors.js';
import { fsError } from '../util/fs-errors.js';
import { nodeCrypto, stream, streamPromises } from '../util/lazy-builtins.js';
import { assertDigest, hexOf } from './digest.js';

export interface BlobRef {
  digest: string;
  size: number;
}

/** Expected identity of a blob being written; either part may be unknown. */
export interface Expected {
  digest?: string;
  size?: number;
}

export class BlobStore {
  readonly root: string;
  private readonly dir: string;

  /** `root` is a cache dir or an OCI layout dir; blobs go to `<root>/blobs/sha256/`. */
  constructor(root: string) {
    this.root = path.resolve(root);
    this.dir = path.join(this.root, 'blobs', 'sha256');
  }

  path(digest: string): string {
    return path.join(this.dir, hexOf(digest));
  }

  /** Size of the stored blob, or undefined when absent. */
  async size(digest: string): Promise<number | undefined> {
    try {
      return (await fsp.stat(this.path(digest))).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async has(digest: string): Promise<boolean> {
    return (await this.size(digest)) !== undefined;
  }

  private notFound(digest: string, e: NodeJS.ErrnoException): Error {
    if (e.code !== 'ENOENT') return e;
    return new CpmError('E_NOT_FOUND', `blob ${digest} is not in the store ${this.root}`, {
      context: { digest, path: this.path(digest) },
    });
  }

  /** A read stream of a stored blob; E_NOT_FOUND when absent. */
  async open(digest: string): Promise<ReadStream> {
    const fh = await fsp.open(this.path(digest), 'r').catch((e: NodeJS.ErrnoException) => {
      throw this.notFound(digest, e);
    });
    // Each read allocates a whole highWaterMark buffer: no 1 MiB buffers for small blobs.
    const { size } = await fh.stat().catch(async (e: unknown) => {
      await fh.close();
      throw e;
    });
    // The stream owns the handle and closes it exactly once.
    return fh.createReadStream({ highWaterMark: Math.min(1 << 20, Math.max(size, 1)) });
  }

  /** A whole blob in memory (manifests, configs, indexes). */
  async read(digest: string): Promise<Buffer> {
    return fsp.readFile(this.path(digest)).catch((e: NodeJS.ErrnoException) => {
      throw this.notFound(digest, e);
    });
  }

  /**
   * The partial download of `digest` that no process is writing: the next download resumes it
   * (removed by cpm cleanup). A writer works on its own file (ownedPath) and moves it back here
   * when it stops without finishing.
   */
  partialPath(digest: string): string {
    return path.join(this.dir, `.partial-${hexOf(digest)}`);
  }

  /**
   * A writer continuing the partial download of `expected.digest` (from zero with `fresh`, or
   * when there is none). Its abort() keeps the partial for the next run; a failed verification
   * at commit() removes it.
   *
   * Processes sharing the cache never write one file together: each writes
   * `.partial-HEX.<owner>` (boot, pid namespace, pid, random), claimed by an atomic rename of the
   * released partial or created with O_EXCL. Each download is verified and renamed onto the blob
   * name atomically on its own; the ingest lock (ingest) only keeps a second download of the same
   * blob from starting. The file of a killed writer is taken over (renamed) once its owner is
   * known to be dead (same boot and pid namespace, no such pid) or it has not changed for
   * STALE_MS. `owner` is the writer's tag (the one its ingest lock names).
   */
  async partialWriter(
    expected: { digest: string; size: number },
    fresh = false,
    owner = newOwner(),
  ): Promise<BlobWriter> {
    assertDigest(expected.digest);
    const shared = this.partialPath(expected.digest);
    const own = `${shared}.${owner}`;
    try {
      await fsp.mkdir(this.dir, { recursive: true });
      const claimed = !fresh && (await this.claimPartial(expected.digest, own));
      const fh = await fsp.open(
        own,
        constants.O_RDWR | constants.O_CREAT | (claimed ? 0 : constants.O_EXCL),
        0o644,
      );
      let { size } = await fh.stat();
      if (size > expected.size) {
        await fh.truncate(0);
        size = 0;
      }
      // the hash continues over the bytes already there
      const hash = nodeCrypto().createHash('sha256');
      if (size > 0)
        for await (const c of createReadStream(own, { start: 0, end: size - 1 }))
          hash.update(c as Buffer);
      return new BlobWriter(this, own, fh, expected, {
        partial: true,
        hash,
        received: size,
        release: () => this.releasePartial(own, shared),
      });
    } catch (e) {
      throw this.localError(e, expected.digest);
    }
  }

  /**
   * Moves a resumable partial of `digest` to `own`: the released one, else the largest file of
   * a dead writer. False when there is none (or another process took it first).
   */
  private async claimPartial(digest: string, own: string): Promise<boolean> {
    const shared = this.partialPath(digest);
    if (await renamed(shared, own)) return true;
    const prefix = `${path.basename(shared)}.`;
    const orphans: Array<{ p: string; size: number }> = [];
    for (const name of (await this.ownedPartials()).get(hexOf(digest)) ?? []) {
      const p = path.join(this.dir, name);
      const st = await fsp.lstat(p).catch(() => undefined);
      if (st?.isFile() && ownerGone(name.slice(prefix.length), st.mtimeMs))
        orphans.push({ p, size: st.size });
    }
    orphans.sort((a, b) => b.size - a.size);
    for (const o of orphans) if (await renamed(o.p, own)) return true;
    // the rest are smaller copies of the same prefix: they only take space
    for (const o of orphans) await fsp.rm(o.p, { force: true });
    return false;
  }

  /** `.ingest-HEX`: the lock of the process downloading HEX (see ingest). */
  ingestPath(digest: string): string {
    return path.join(this.dir, `.ingest-${hexOf(digest)}`);
  }

  /**
   * Waits for this process's turn to download `blob`, so that processes sharing the store fetch
   * it once (as containerd's ingest locks do). The lock is a symlink `.ingest-HEX` whose target
   * is the holder's owner tag (only ever read and matched, never followed); the holder writes
   * `.partial-HEX.<tag>`. While a live holder's file keeps changing, this waits (`onWait` once),
   * then: the blob is in the store, verified by the holder's commit → 'present'; the lock was
   * released → it is ours; the holder died (ownerGone) → its lock is broken, ours, and its file
   * is resumed by partialWriter; the holder is alive but its file has not changed for `stallMs`
   * → no lock: a download side by side, as if there were no lock. The lock only saves work:
   * every download is still verified and renamed into place on its own.
   */
  async ingest(
    blob: BlobRef,
    opts: {
      /** Another process holds the lock: its owner tag and, when it is on this host, its pid. */
      onWait?: (owner: string, pid: number | undefined) => void;
      /** Pauses between checks (the caller's, so an interrupt ends the wait). */
      sleep: (ms: number) => Promise<void>;
      stallMs: number;
      pollMs?: number;
    },
  ): Promise<'present' | Ingest> {
    assertDigest(blob.digest);
    const lock = this.ingestPath(blob.digest);
    const me = newOwner();
    const pollMs = opts.pollMs ?? 200;
    let watched: { owner: string; activity: string; since: number } | undefined;
    try {
      await fsp.mkdir(this.dir, { recursive: true });
      for (;;) {
        if ((await this.size(blob.digest)) === blob.size) return 'present';
        try {
          await fsp.symlink(me, lock);
          // a partial of a writer that was alive when this process listed them may be an
          // orphan now: list them again
          if (watched) this.owned = undefined;
          return { owner: me, release: () => releaseLock(lock, me) };
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          // a cache on a filesystem without symlinks (vfat, some network mounts): no lock, a
          // download side by side as before locks existed, not a failed install
          if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS')
            return { release: async () => undefined };
          if (code !== 'EEXIST') throw e;
        }
        const held = await lockHolder(lock);
        if (held === 'gone') continue;
        if (held === 'foreign') return { release: async () => undefined };
        // the holder's activity: its lock, and its partial file while it writes
        const file = await fsp
          .lstat(`${this.partialPath(blob.digest)}.${held.owner}`)
          .catch(() => undefined);
        const activity = `${held.mtimeMs} ${file?.mtimeMs} ${file?.size}`;
        if (ownerGone(held.owner, Math.max(held.mtimeMs, file?.mtimeMs ?? 0))) {
          await breakLock(lock, held.ino);
          continue;
        }
        const now = Date.now();
        if (watched?.owner !== held.owner) {
          watched = { owner: held.owner, activity, since: now };
          opts.onWait?.(held.owner, localPid(held.owner));
        } else if (activity !== watched.activity) {
          watched.activity = activity;
          watched.since = now;
        } else if (now - watched.since > opts.stallMs) {
          return { release: async () => undefined };
        }
        await opts.sleep(pollMs);
      }
    } catch (e) {
      throw this.localError(e, blob.digest);
    }
  }

  /**
   * Writers' partial files by blob hex, listed once per store: a cache holds thousands of blobs,
   * and a file of a dead writer appearing later in this run only costs a resumable download.
   */
  private ownedPartials(): Promise<Map<string, string[]>> {
    return (this.owned ??= fsp.readdir(this.dir).then((names) => {
      const m = new Map<string, string[]>();
      for (const name of names) {
        const hit = /^\.partial-([0-9a-f]{64})\./.exec(name);
        if (hit) m.set(hit[1]!, [...(m.get(hit[1]!) ?? []), name]);
      }
      return m;
    }));
  }
  private owned: Promise<Map<string, string[]>> | undefined;

  /** Hands a stopped download back for the next run; a larger released copy wins. */
  private async releasePartial(own: string, shared: string): Promise<void> {
    const mine = (await fsp.stat(own)).size;
    const theirs = (await fsp.stat(shared).catch(() => undefined))?.size ?? -1;
    if (mine > theirs) await fsp.rename(own, shared);
    else await fsp.rm(own, { force: true });
  }

  /** Starts an incremental write (used by resumable downloads). Call commit() or abort(). */
  async writer(expected: Expected = {}): Promise<BlobWriter> {
    if (expected.digest !== undefined) assertDigest(expected.digest);
    const tmp = path.join(
      this.dir,
      `.tmp-${process.pid}-${nodeCrypto().randomBytes(6).toString('hex')}`,
    );
    try {
      await fsp.mkdir(this.dir, { recursive: true });
      const fh = await fsp.open(tmp, 'w', 0o644);
      return new BlobWriter(this, tmp, fh, expected);
    } catch (e) {
      throw this.localError(e, expected.digest);
    }
  }

  /** Streams `src` into the store, verifying `expected`; returns the blob's digest and size. */
  async put(
    src: Readable | AsyncIterable<Buffer> | Iterable<Buffer>,
    expected: Expected = {},
  ): Promise<BlobRef> {
    if (expected.digest) {
      const have = await this.size(expected.digest);
      if (have !== undefined && (expected.size === undefined || have === expected.size)) {
        // Already present: the caller's stream is not consumed.
        if ('destroy' in src && typeof src.destroy === 'function') src.destroy();
        return { digest: expected.digest, size: have };
      }
    }
    const w = await this.writer(expected);
    try {
      if (src instanceof stream().Readable) {
        // Flowing mode + writev: no per-chunk await, no re-concatenation of buffered chunks.
        await streamPromises().pipeline(src, w.sink());
      } else {
        for await (const chunk of src) await w.write(chunk as Buffer);
      }
      return await w.commit();
    } catch (e) {
      await w.abort();
      throw e;
    }
  }

  async putBytes(data: Buffer | string, expected: Expected = {}): Promise<BlobRef> {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    return this.put([buf], expected);
  }

  /**
   * Makes a blob of another store available here: hard link when both are on one filesystem,
   * otherwise a verified copy.
   */
  async importFrom(other: BlobStore, blob: BlobRef): Promise<void> {
    if (other.root === this.root || (await this.size(blob.digest)) === blob.size) return;
    await fsp.mkdir(this.dir, { recursive: true });
    try {
      await fsp.link(other.path(blob.digest), this.path(blob.digest));
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return;
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw e;
    }
    await this.put(await other.open(blob.digest), blob);
  }

  /** A local error writing the cache, named as such (never a network or registry problem). */
  localError(e: unknown, digest?: string): unknown {
    return fsError(e, {
      doing: `caching blob${digest ? ` ${digest}` : ''} in`,
      path: this.root,
      where: 'cache',
      ...(digest ? { context: { digest } } : {}),
    });
  }

  /** Removes a blob (no error when absent). */
  async delete(digest: string): Promise<void> {
    await fsp.rm(this.path(digest), { force: true });
  }
}

/** One blob being written: bytes are hashed as they arrive; commit() verifies and publishes. */
export class BlobWriter {
  private hash: Hash;
  private done = false;
  /** The write in flight (writes are serialized; sink() batches while one is pending). */
  private pending: Promise<void> = Promise.resolve();
  /** The file at our name was taken over by another process (see BlobStore.partialWriter). */
  lost = false;
  /** Bytes handed to write() so far (the offset to resume from once settle() resolved). */
  received: number;
  /** A partial download kept across runs: abort() leaves it in place. */
  private readonly partial: boolean;
  /** Moves a kept partial to where the next download finds it. */
  private readonly release: (() => Promise<void>) | undefined;

  constructor(
    private readonly store: BlobStore,
    private readonly tmp: string,
    private readonly fh: fsp.FileHandle,
    readonly expected: Expected,
    resume: {
      partial: boolean;
      hash: Hash;
      received: number;
      release?: () => Promise<void>;
    } = {
      partial: false,
      hash: nodeCrypto().createHash('sha256'),
      received: 0,
    },
  ) {
    this.partial = resume.partial;
    this.release = resume.release;
    this.hash = resume.hash;
    this.received = resume.received;
  }

  async write(chunk: Buffer): Promise<void> {
    await this.writeMany([chunk]);
  }

  /** Appends `chunks` in order: hashed now, written with one positioned writev. */
  async writeMany(chunks: Buffer[]): Promise<void> {
    let n = 0;
    for (const c of chunks) n += c.length;
    const limit = this.expected.size;
    if (limit !== undefined && this.received + n > limit) {
      throw this.mismatch(`more than the expected ${limit} bytes`);
    }
    for (const c of chunks) this.hash.update(c);
    // Explicit positions: after restart() the file offset would otherwise stay past the end.
    const base = this.received;
    this.received += n;
    const run = this.pending
      .then(() => writeAllAt(this.fh, chunks, base))
      .catch((e: unknown) => {
        throw this.store.localError(e, this.expected.digest);
      });
    this.pending = run.catch(() => undefined);
    await run;
  }

  /** Resolves when no write is in flight (call before reading `received` after an error). */
  async settle(): Promise<void> {
    await this.pending;
  }

  /**
   * A Writable feeding this writer. While one writev is on disk the next chunks queue up (up to
   * 4 MiB), so network or compression keep running and disk writes come in large batches.
   */
  sink(): Writable {
    return new (stream().Writable)({
      highWaterMark: 4 << 20,
      writev: (chunks, cb) => {
        this.writeMany(chunks.map((c) => c.chunk as Buffer)).then(() => cb(), cb);
      },
      write: (chunk: Buffer, _enc, cb) => {
        this.writeMany([chunk]).then(() => cb(), cb);
      },
    });
  }

  /** Discards everything written so far (a server ignored our Range request). */
  async restart(): Promise<void> {
    await this.settle();
    await this.fh.truncate(0);
    this.received = 0;
    this.hash = nodeCrypto().createHash('sha256'); // a Hash cannot be rewound
  }

  async commit(): Promise<BlobRef> {
    await this.settle();
    const digest = 'sha256:' + this.hash.digest('hex');
    const { size: want, digest: wantDigest } = this.expected;
    try {
      if (want !== undefined && this.received !== want) {
        throw this.mismatch(`got ${this.received} bytes, expected ${want}`);
      }
      if (wantDigest !== undefined && digest !== wantDigest) {
        throw this.mismatch(`content hashes to ${digest}`);
      }
      if (!(await this.stillOurs())) {
        // another process took the file over: the name is its now, not ours to remove
        this.lost = true;
        throw new CpmError(
          'E_IO',
          `blob ${wantDigest ?? digest}: its download file ${this.tmp} was taken over by another process while this one wrote it`,
          {
            hint: 'another cpm judged this download abandoned; run the command again',
            context: { digest: wantDigest ?? digest, path: this.tmp },
          },
        );
      }
      try {
        await this.fh.sync();
        await this.fh.close();
        this.done = true;
        await fsp.rename(this.tmp, this.store.path(digest));
      } catch (e) {
        throw this.store.localError(e, digest);
      }
      return { digest, size: this.received };
    } catch (e) {
      await this.abort(true);
      throw e;
    }
  }

  /** Whether the file at our name is still the one written, and holds exactly what was. */
  private async stillOurs(): Promise<boolean> {
    try {
      const [mine, there] = await Promise.all([this.fh.stat(), fsp.stat(this.tmp)]);
      return mine.ino === there.ino && mine.dev === there.dev && there.size === this.received;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw this.store.localError(e, this.expected.digest);
    }
  }

  /** Stops writing; the file is removed, except a partial download (unless `discard`). */
  async abort(discard = !this.partial): Promise<void> {
    await this.settle();
    if (!this.done) {
      this.done = true;
      await this.fh.close().catch(() => undefined);
    }
    if (this.lost) return;
    if (discard || this.received === 0) await fsp.rm(this.tmp, { force: true });
    else if (this.release) await this.release().catch(() => fsp.rm(this.tmp, { force: true }));
  }

  private mismatch(detail: string): CpmError {
    const d = this.expected.digest ?? '(unknown digest)';
    return new CpmError('E_DIGEST', `blob ${d} failed verification: ${detail}`, {
      hint: 'the registry or the network returned corrupt data; nothing was kept, retry the command',
      context: { digest: d, expectedSize: this.expected.size, received: this.received },
    });
  }
}

/** writev until every byte of `chunks` is on file at `pos` (writev may write less than asked). */
async function writeAllAt(fh: fsp.FileHandle, chunks: Buffer[], pos: number): Promise<void> {
  const bufs = chunks.filter((c) => c.length > 0);
  while (bufs.length > 0) {
    const { bytesWritten } = await fh.writev(bufs, pos);
    pos += bytesWritten;
    let left = bytesWritten;
    while (bufs.length > 0 && left >= bufs[0]!.length) left -= bufs.shift()!.length;
    if (left > 0) bufs[0] = bufs[0]!.subarray(left);
  }
}

/** A partial nobody writes any more is taken over after this long without a change. */
export const STALE_MS = 15 * 60_000;

let tag: { boot: string; ns: string } | undefined;
/** This boot and pid namespace ("x" when /proc does not say). */
function host(): { boot: string; ns: string } {
  if (tag) return tag;
  let boot = 'x';
  let ns = 'x';
  try {
    boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim().replace(/-/g, '');
  } catch {
    /* no /proc: liveness falls back to the age of the file */
  }
  try {
    ns = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? 'x';
  } catch {
    /* as above */
  }
  return (tag = { boot, ns });
}

function ownerTag(): string {
  const h = host();
  return `${h.boot}-${h.ns}-${process.pid}`;
}

/**
 * Whether the writer named by `owner` ("BOOT-NS-PID-RANDOM") is gone. A pid is only meaningful
 * in its own boot and pid namespace (containers sharing a cache mount reuse small pids); any
 * other owner counts as gone once its file has not changed for STALE_MS.
 */
export function ownerGone(owner: string, mtimeMs: number, now = Date.now()): boolean {
  if (now - mtimeMs > STALE_MS) return true;
  const m = OWNER.exec(owner);
  const h = host();
  if (!m || h.boot === 'x' || h.ns === 'x' || m[1] !== h.boot || m[2] !== h.ns) return false;
  const pid = Number(m[3]);
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** A turn to download a blob (BlobStore.ingest): `owner` names the lock held, if any. */
export interface Ingest {
  owner?: string;
  release(): Promise<void>;
}

/** An owner tag of this process: boot, pid namespace, pid, random (see ownerGone). */
function newOwner(): string {
  return `${ownerTag()}-${nodeCrypto().randomBytes(4).toString('hex')}`;
}

const OWNER = /^([0-9a-f]+|x)-(\d+|x)-(\d+)-[0-9a-f]+$/;

/** The pid of an owner tag of this boot and pid namespace (elsewhere a pid means nothing). */
function localPid(owner: string): number | undefined {
  const m = OWNER.exec(owner);
  const h = host();
  return m && m[1] === h.boot && m[2] === h.ns && h.boot !== 'x' ? Number(m[3]) : undefined;
}

/**
 * Who holds the ingest lock at `lock`: 'gone' when it was released meanwhile, 'foreign' when
 * something other than a lock of ours has that name (left alone; no waiting on it).
 */
async function lockHolder(
  lock: string,
): Promise<{ owner: string; mtimeMs: number; ino: number } | 'gone' | 'foreign'> {
  try {
    const st = await fsp.lstat(lock);
    if (!st.isSymbolicLink()) return 'foreign';
    const owner = await fsp.readlink(lock);
    // a target that is not an owner tag is no lock of ours (and is never followed)
    return OWNER.test(owner) ? { owner, mtimeMs: st.mtimeMs, ino: st.ino } : 'foreign';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'gone';
    if (code === 'EINVAL') return 'foreign';
    throw e;
  }
}

/**
 * Removes the lock of a dead holder: moved aside first, so that a lock taken meanwhile by a live
 * process (another inode) is put back instead of removed.
 */
async function breakLock(lock: string, ino: number): Promise<void> {
  const aside = `${lock}.gone-${nodeCrypto().randomBytes(4).toString('hex')}`;
  if (!(await renamed(lock, aside))) return;
  if ((await fsp.lstat(aside)).ino !== ino) await fsp.link(aside, lock).catch(() => undefined); // EEXIST: a newer lock is there: keep it
  await fsp.rm(aside, { force: true });
}

/** Gives the lock up, unless it is not ours any more (judged dead and broken meanwhile). */
async function releaseLock(lock: string, me: string): Promise<void> {
  const owner = await fsp.readlink(lock).catch(() => undefined);
  if (owner === me) await fsp.rm(lock, { force: true });
}

/** rename(from, to); false when `from` is gone (another process moved it first). */
async function renamed(from: string, to: string): Promise<boolean> {
  try {
    await fsp.rename(from, to);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/**
 * The blob store under a cache dir (cpm.yaml cache_dir): `<cache>/blobs/sha256/`. Here, not in
 * actions.ts, so that opening repositories does not load the image packer behind actions.ts.
 */
export function cacheStore(cacheDir: string): BlobStore {
  return new BlobStore(path.resolve(cacheDir));
}
