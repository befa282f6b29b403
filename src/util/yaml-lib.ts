/**
 * The `yaml` package, loaded the first time something needs it: a tree command whose files the
 * fast reader takes all (src/tree/yaml-fast.ts) never parses its 165 kB of code (≈ 25 ms of
 * CPU at every start otherwise). Synchronous, as the tree reader's fallback is.
 */
import { createRequire as requireFrom } from 'node:module'; // not createRequire: bundles' banners declare that
import type * as Yaml from 'yaml';

let lib: typeof Yaml | undefined;

export function yamlLib(): typeof Yaml {
  // A require() call esbuild sees is bundled (dist/: dist/vendor-yaml.cjs, required here on first
  // use; the single file: inline). From src/ as ESM (tsx, vitest) there may be no require.
  lib ??=
    typeof require === 'function'
      ? (require('yaml') as typeof Yaml) // eslint-disable-line @typescript-eslint/no-require-imports -- the lazy load this module is for
      : (requireFrom(import.meta.url)('yaml') as typeof Yaml);
  return lib;
}
