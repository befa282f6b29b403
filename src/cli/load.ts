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

/** Node ≥ 22's compile cache (not in Node 20's types). */
const enableCompileCache = (nodeModule as { enableCompileCache?: (dir?: string) => unknown })
  .enableCompileCache;

/** The cache variant of a command line: its command, `help` for help and version, else `other`. */
export function cacheVariant(argv: readonly string[]): string {
  const word = commandWord(argv);
  if (word === undefined || word === 'help') return 'help';
  return COMMAND_SUMMARIES.some(([term]) => term.split(' ')[0] === word) ? word : 'other';
}

export function loadCli(file: string, argv: readonly string[]): unknown {
  if (!enableCompileCache) return requireCached(file, cacheVariant(argv));
  // in the same checked directory, not Node's default under the shared tmp
  const dir = codeCacheDir();
  if (dir) enableCompileCache(path.join(dir, 'node'));
  return createRequire(import.meta.url)(file);
}
