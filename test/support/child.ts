/**
 * Child processes for crash and race tests: the child's .ts entry bundled once with esbuild into
 * one ESM file, so each of the hundreds of runs starts in milliseconds instead of through tsx.
 */
import path from 'node:path';
import { build } from 'esbuild';
import { tmpDir } from '../install/helpers.js';

export async function bundleChild(entry: string, prefix: string): Promise<string> {
  const out = path.join(tmpDir(prefix), 'child.mjs');
  await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: out,
    logLevel: 'silent',
    // CommonJS dependencies (tar-stream and friends) call require() for node builtins.
    banner: {
      js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
    },
  });
  return out;
}
