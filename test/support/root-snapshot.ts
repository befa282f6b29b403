/**
 * A root as text, for comparing two states of it: every path below `root` (sorted, the lock
 * left out) with its type, mode and content hash or link target; with `owners`, also its owner
 * and link count. Special files are never opened (a fifo would block).
 */
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';

export function rootSnapshot(root: string, opts: { owners?: boolean } = {}): string {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const name of readdirSync(path.join(root, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (r === 'var/lib/cpm/lock') continue;
      const abs = path.join(root, r);
      const st = lstatSync(abs);
      const mode = (st.mode & 0o7777).toString(8);
      if (opts.owners) {
        const head = `${r} ${mode} ${st.uid}:${st.gid} ${st.nlink}`;
        if (st.isDirectory()) out.push(`${head} d`);
        else if (st.isSymbolicLink()) out.push(`${head} l ${readlinkSync(abs)}`);
        else if (!st.isFile()) out.push(`${head} special ${st.mode >> 12}`);
        else out.push(`${head} f ${sha256(abs)}`);
      } else if (st.isDirectory()) out.push(`${r} d ${mode}`);
      else if (st.isSymbolicLink()) out.push(`${r} l ${readlinkSync(abs)}`);
      else if (!st.isFile()) out.push(`${r} special ${st.mode >> 12} ${mode}`);
      else out.push(`${r} f ${mode} ${sha256(abs)}`);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out.join('\n');
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}
