/**
 * Extended attributes of a root. Node has no xattr API and cpm embeds no native addon, so they
 * are read with one recursive `getfattr` run (package `attr`) for the whole tree.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { CpmError } from '../errors.js';

export type XattrMap = Map<string, Record<string, Buffer>>;

/** getfattr escapes odd bytes in names as \ooo; undo that and decode as UTF-8. */
function unescapeOctal(s: string): string {
  if (!s.includes('\\')) return s;
  const bytes: number[] = [];
  const raw = Buffer.from(s, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    if (
      raw[i] === 0x5c &&
      i + 3 < raw.length &&
      /^[0-7]{3}$/.test(raw.subarray(i + 1, i + 4).toString('latin1'))
    ) {
      bytes.push(parseInt(raw.subarray(i + 1, i + 4).toString('latin1'), 8));
      i += 3;
    } else bytes.push(raw[i]!);
  }
  return Buffer.from(bytes).toString('utf8');
}

function decodeValue(v: string): Buffer {
  if (v.startsWith('0s')) return Buffer.from(v.slice(2), 'base64');
  if (v.startsWith('0x')) return Buffer.from(v.slice(2), 'hex');
  if (v.startsWith('"') && v.endsWith('"'))
    return Buffer.from(unescapeOctal(v.slice(1, -1)), 'utf8');
  return Buffer.from(v, 'utf8');
}

/** Parses `getfattr -d -e base64` output into root-relative paths → attributes. */
export function parseGetfattr(output: string, root: string): XattrMap {
  const result: XattrMap = new Map();
  const absRoot = path.resolve(root);
  let current: Record<string, Buffer> | undefined;
  for (const line of output.split('\n')) {
    if (line.startsWith('# file: ')) {
      const abs = unescapeOctal(line.slice('# file: '.length));
      const rel = path.relative(absRoot, abs).split(path.sep).join('/');
      current = {};
      result.set(rel, current);
    } else if (current && line !== '') {
      const eq = line.indexOf('=');
      const name = eq < 0 ? line : line.slice(0, eq);
      current[unescapeOctal(name)] = eq < 0 ? Buffer.alloc(0) : decodeValue(line.slice(eq + 1));
    }
  }
  return result;
}

/**
 * Reads every xattr under root. Returns undefined when getfattr is not installed so the caller
 * can warn once and carry on (the overlay can still supply attributes).
 */
export async function readXattrs(root: string): Promise<XattrMap | undefined> {
  const absRoot = path.resolve(root);
  return new Promise((resolve, reject) => {
    const child = spawn(
      'getfattr',
      ['--absolute-names', '-R', '-P', '-h', '-d', '-m', '-', '-e', 'base64', absRoot],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (err.length < 4096) err += d;
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') resolve(undefined);
      else reject(e);
    });
    child.on('close', (code) => {
      // getfattr exits 1 when some file had no readable attributes (e.g. trusted.* as non-root).
      if (code !== 0 && code !== 1) {
        reject(
          new CpmError('E_IO', `getfattr failed (${code}): ${err.trim()}`, {
            context: { path: absRoot },
          }),
        );
        return;
      }
      resolve(parseGetfattr(Buffer.concat(out).toString('utf8'), absRoot));
    });
  });
}
