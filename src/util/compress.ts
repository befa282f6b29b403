/**
 * gzip and zstd streams. zstd uses node:zlib where the runtime has it (Node ≥ 22.15) and the
 * `zstd` program otherwise (Node 20), so no native addon is ever needed. A zstd blob in a local
 * file is decompressed by the `zstd` program wherever it is installed (zstdFileReader): read
 * synchronously from a FIFO it beats node:zlib's stream (docs/performance.md).
 */
import {
  accessSync,
  closeSync,
  constants as fsConstants,
  fstatSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Duplex, Readable, Writable } from 'node:stream';
import { CpmError } from '../errors.js';
import { childProcess, stream, zlib } from './lazy-builtins.js';

export type Compression = 'gzip' | 'zstd' | 'none';

interface ZstdZlib {
  createZstdCompress?: (opts?: { params?: Record<number, number> }) => Duplex;
  createZstdDecompress?: () => Duplex;
  constants: Record<string, number>;
}
const z = (): ZstdZlib => zlib() as unknown as ZstdZlib;

export function hasBuiltinZstd(): boolean {
  const m = z();
  return typeof m.createZstdDecompress === 'function' && typeof m.createZstdCompress === 'function';
}

/** Wraps a child process's stdin/stdout as one Duplex; a non-zero exit becomes a stream error. */
function processDuplex(cmd: string, args: string[]): Duplex {
  const child = childProcess().spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  // the output ends only once the tool exited 0: a truncated input makes zstd print what it could
  // decode and then fail, and that failure must reach the reader before its end does
  const out = new (stream().PassThrough)();
  (child.stdout as Readable).pipe(out, { end: false });
  const inp = child.stdin as Writable;
  const duplex = stream().Duplex.from({ readable: out, writable: inp });
  child.on('error', (e: NodeJS.ErrnoException) => {
    duplex.destroy(e.code === 'ENOENT' ? missingTool(cmd) : e);
  });
  child.on('close', (code, signal) => {
    if (code === 0) out.end();
    else if (!duplex.destroyed) {
      duplex.destroy(
        new CpmError(
          'E_IO',
          `${cmd} ${args.join(' ')} failed (${signal ?? code}): ${stderr.trim()}`,
        ),
      );
    }
  });
  duplex.on('close', () => {
    if (child.exitCode === null) child.kill();
  });
  return duplex;
}

export function createDecompressor(c: Compression): Duplex {
  switch (c) {
    case 'gzip':
      return zlib().createGunzip();
    case 'zstd':
      return hasBuiltinZstd() ? z().createZstdDecompress!() : processDuplex('zstd', ['-dcq']);
    case 'none':
      return new (stream().PassThrough)();
  }
}

/** Compressors are deterministic for a given input and level (no names or mtimes in headers). */
export function createCompressor(c: Compression, level?: number): Duplex {
  switch (c) {
    case 'gzip':
      return zlib().createGzip({ level: level ?? 6 });
    case 'zstd': {
      const lvl = level ?? 3;
      if (hasBuiltinZstd()) {
        const m = z();
        return m.createZstdCompress!({ params: { [m.constants.ZSTD_c_compressionLevel!]: lvl } });
      }
      return processDuplex('zstd', ['-cq', `-${lvl}`, '--no-check']);
    }
    case 'none':
      return new (stream().PassThrough)();
  }
}

/** Compression from an OCI/Docker layer media type. */
export function compressionOfMediaType(mediaType: string): Compression {
  if (mediaType.endsWith('+zstd') || mediaType.endsWith('.zstd')) return 'zstd';
  if (mediaType.endsWith('+gzip') || mediaType.endsWith('.gzip') || mediaType.endsWith('tar.gzip'))
    return 'gzip';
  if (mediaType === 'application/vnd.docker.image.rootfs.diff.tar.gzip') return 'gzip';
  return 'none';
}

/** Sniffs compression from the first bytes (gzip 1f8b, zstd 28b52ffd). */
export function sniffCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

/**
 * `zstd -dc` of an open blob file whose output this thread reads synchronously (no stream, no
 * buffer or promise per chunk): zstd gets the file descriptor itself as its stdin and writes into a
 * FIFO that cpm reads with blocking read(2) into the caller's buffer. Node's own child pipes are
 * non-blocking socket pairs that only a stream can read, hence the FIFO (made in a private
 * temporary directory and unlinked at once; the two descriptors keep it).
 */
export interface SyncDecompressor {
  /** Fills `buf` with what zstd wrote next, waiting for it; 0 once zstd's output has ended. */
  read(buf: Buffer): number;
  /** Compressed bytes zstd has read so far (the file offset it shares with cpm), or -1. */
  consumed(): number;
  /** Resolves once zstd exited 0; rejects with its failure otherwise. Call after read() gave 0. */
  done(): Promise<void>;
  /** Kills zstd if it still runs and closes the read end (idempotent). */
  close(): void;
}

/** Whether an executable `zstd` is on PATH (looked up each time: PATH may change). */
function zstdOnPath(): boolean {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    try {
      accessSync(path.join(dir, 'zstd'), fsConstants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/**
 * A SyncDecompressor for the zstd blob open at `fd` (its offset must be 0: zstd reads it from
 * there), or null where it does not apply: no `zstd` program but zstd built into this Node
 * (node:zlib's stream decompresses), or no FIFO could be made (then the caller streams the blob).
 * Without either, zstd is spawned anyway and its absence is the E_TOOL_MISSING error.
 */
export function zstdFileReader(fd: number): SyncDecompressor | null {
  if (process.platform !== 'linux') return null;
  if (hasBuiltinZstd() && !zstdOnPath()) return null;
  const cp = childProcess();
  let dir: string;
  try {
    dir = mkdtempSync(path.join(os.tmpdir(), 'cpm-zstd-'));
  } catch {
    return null;
  }
  const fifo = path.join(dir, 'out');
  let r = -1;
  let w = -1;
  try {
    const mk = cp.spawnSync('mkfifo', ['-m', '600', fifo], { stdio: 'ignore' });
    if (mk.status !== 0) return null;
    // the read end first, non-blocking (no writer yet), then the write end, then the blocking
    // read end this thread uses (a writer exists now, so opening it does not wait). Each one must
    // be that FIFO: a temporary directory whose parent others may write to could have had the
    // name swapped for a symlink or a file, which zstd would then write into.
    const nofollow = fsConstants.O_NOFOLLOW;
    const probe = openSync(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | nofollow);
    try {
      const made = fstatSync(probe);
      if (!made.isFIFO()) throw new Error(`${fifo} is not the FIFO cpm made`);
      const same = (fdx: number): void => {
        const st = fstatSync(fdx);
        if (st.ino !== made.ino || st.dev !== made.dev)
          throw new Error(`${fifo} changed while it was opened`);
      };
      w = openSync(fifo, fsConstants.O_WRONLY | nofollow);
      same(w);
      r = openSync(fifo, fsConstants.O_RDONLY | nofollow);
      same(r);
    } finally {
      closeSync(probe);
    }
  } catch {
    if (w >= 0) closeSync(w);
    if (r >= 0) closeSync(r);
    return null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const args = ['-dcq'];
  let child: ReturnType<typeof cp.spawn>;
  try {
    child = cp.spawn('zstd', args, { stdio: [fd, w, 'pipe'] });
  } catch (e) {
    closeSync(r); // spawn throws at once on EMFILE, ENOMEM, EAGAIN: no reader is returned
    throw e;
  } finally {
    closeSync(w); // zstd holds the only write end: its exit ends the output
  }
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  let failure: Error | null = null;
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) => {
      failure ??= e.code === 'ENOENT' ? missingTool('zstd') : e;
      reject(failure);
    });
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else
        reject(
          (failure ??= new CpmError(
            'E_IO',
            `zstd ${args.join(' ')} failed (${signal ?? code}): ${stderr.trim()}`,
          )),
        );
    });
  });
  exited.catch(() => undefined); // seen through done(); an abandoned read must not crash
  const info = `/proc/self/fdinfo/${fd}`;
  let closed = false;
  return {
    read: (buf) => (closed ? 0 : readSync(r, buf, 0, buf.length, null)),
    consumed() {
      try {
        const m = /^pos:\s*(\d+)/m.exec(readFileSync(info, 'latin1'));
        return m ? Number(m[1]) : -1;
      } catch {
        return -1;
      }
    },
    done: () => exited,
    close() {
      if (closed) return;
      closed = true;
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      closeSync(r);
    },
  };
}

function missingTool(cmd: string): CpmError {
  return new CpmError(
    'E_TOOL_MISSING',
    `"${cmd}" is not installed and this Node.js has no built-in zstd`,
    { hint: 'install the zstd package (apt-get install zstd) or use Node.js ≥ 22.15' },
  );
}
