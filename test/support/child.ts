/**
 * Child processes for crash and race tests: the child's .ts entry bundled once with esbuild into
 * one ESM file, so each of the hundreds of runs starts in milliseconds instead of through tsx.
 */
import path from 'node:path';
import { build } from 'esbuild';
import { WORKERS } from '../../src/util/worker.js';
import { tmpDir } from '../install/helpers.js';

const SRC = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../src');

/** `workers`: also bundle cpm's worker threads beside it, where a built cpm has them. */
export async function bundleChild(
  entry: string,
  prefix: string,
  opts: { workers?: boolean } = {},
): Promise<string> {
  const out = path.join(tmpDir(prefix), 'child.mjs');
  if (opts.workers)
    for (const [name, rel] of Object.entries(WORKERS))
      await build({
        entryPoints: [path.join(SRC, rel)],
        bundle: true,
        platform: 'node',
        format: 'cjs',
        target: 'node20',
        outfile: path.join(path.dirname(out), `${name}.cjs`),
        logLevel: 'silent',
      });
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
