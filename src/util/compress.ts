/**
 * gzip and zstd streams. zstd uses node:zlib where the runtime has it (Node ≥ 22.15) and the
 * `zstd` program otherwise (Node 20), so no native addon is ever needed.
 */
import { Duplex, PassThrough, type Readable, type Writable } from 'node:stream';
import zlib from 'node:zlib';
import { CpmError } from '../errors.js';
import { childProcess } from './lazy-builtins.js';

export type Compression = 'gzip' | 'zstd' | 'none';

interface ZstdZlib {
  createZstdCompress?: (opts?: { params?: Record<number, number> }) => Duplex;
  createZstdDecompress?: () => Duplex;
  constants: Record<string, number>;
}
const z = zlib as unknown as ZstdZlib;

export function hasBuiltinZstd(): boolean {
  return typeof z.createZstdDecompress === 'function' && typeof z.createZstdCompress === 'function';
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
  const out = new PassThrough();
  (child.stdout as Readable).pipe(out, { end: false });
  const inp = child.stdin as Writable;
  const duplex = Duplex.from({ readable: out, writable: inp });
  child.on('error', (e: NodeJS.ErrnoException) => {
    duplex.destroy(
      e.code === 'ENOENT'
        ? new CpmError(
            'E_TOOL_MISSING',
            `"${cmd}" is not installed and this Node.js has no built-in zstd`,
            {
              hint: 'install the zstd package (apt-get install zstd) or use Node.js ≥ 22.15',
            },
          )
        : e,
    );
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
      return zlib.createGunzip();
    case 'zstd':
      return hasBuiltinZstd() ? z.createZstdDecompress!() : processDuplex('zstd', ['-dcq']);
    case 'none':
      return new PassThrough();
  }
}

/** Compressors are deterministic for a given input and level (no names or mtimes in headers). */
export function createCompressor(c: Compression, level?: number): Duplex {
  switch (c) {
    case 'gzip':
      return zlib.createGzip({ level: level ?? 6 });
    case 'zstd': {
      const lvl = level ?? 3;
      if (hasBuiltinZstd()) {
        return z.createZstdCompress!({ params: { [z.constants.ZSTD_c_compressionLevel!]: lvl } });
      }
      return processDuplex('zstd', ['-cq', `-${lvl}`, '--no-check']);
    }
    case 'none':
      return new PassThrough();
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
