/**
 * What bin/cpm.js loads dist/cpm.cjs with (dist/load.cjs): parsing and compiling the bundle is
 * most of what a short command costs over `node -e 0`, so its compiled code is kept between runs
 * in a per-user directory (src/util/code-cache.ts): Node's own compile cache on Node ≥ 22, else a
 * V8 code cache of its own, one entry per command.
 */
import nodeModule, { createRequire } from 'node:module';
import path from 'node:path';
import { commandWord } from './argv.js';
import { COMMAND_SUMMARIES } from './command-summaries.js';
import { codeCacheDir, requireCached } from '../util/code-cache.js';

/** Commands with a bundle of their own, dist/cpm-WORD.cjs (build/bundle.mjs bakes the list in). */
declare const __CPM_COMMAND_BUNDLES__: string | undefined;

/** Node ≥ 22's compile cache (not in Node 20's types). */
const enableCompileCache = (nodeModule as { enableCompileCache?: (dir?: string) => unknown })
  .enableCompileCache;

/**
 * The cache variant of a command line: its command, `help` for help and version (also a command's
 * `--help`: an entry made by it would hold commander's help and none of the command's work, and
 * every later run of the command would compile that work again), else `other`.
 */
export function cacheVariant(argv: readonly string[]): string {
  const word = commandWord(argv);
  if (word === undefined || word === 'help') return 'help';
  const end = argv.indexOf('--');
  const opts = end < 0 ? argv : argv.slice(0, end);
  if (opts.includes('--help') || opts.includes('-h')) return 'help';
  return COMMAND_SUMMARIES.some(([term]) => term.split(' ')[0] === word) ? word : 'other';
}

/**
 * The bundle to run argv with: `cpm-WORD.cjs` beside `file` (dist/cpm.cjs) when argv's command word
 * is one of `bundles` (it holds that command alone), else `file`.
 */
export function bundleFor(
  file: string,
  argv: readonly string[],
  bundles: readonly string[] = typeof __CPM_COMMAND_BUNDLES__ === 'string'
    ? __CPM_COMMAND_BUNDLES__.split(',')
    : [],
): { file: string; variant: string } {
  const variant = cacheVariant(argv);
  const own = bundles.includes(variant) && commandWord(argv) === variant;
  return { file: own ? path.join(path.dirname(file), `cpm-${variant}.cjs`) : file, variant };
}

export function loadCli(file: string, argv: readonly string[]): unknown {
  const chosen = bundleFor(file, argv);
  if (!enableCompileCache) return requireCached(chosen.file, chosen.variant);
  // in the same checked directory, not Node's default under the shared tmp
  const dir = codeCacheDir();
  if (dir) enableCompileCache(path.join(dir, 'node'));
  return createRequire(import.meta.url)(chosen.file);
}
