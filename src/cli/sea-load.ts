/**
 * dist/load.cjs of the single file (build/sea.mjs points bin/cpm.js's require of it here): cpm is
 * in the same script, compiled with the code cache SEA made at build time.
 */
import * as cli from './main.js';

export function loadCli(_file: string, _argv: readonly string[]): unknown {
  return cli;
}
