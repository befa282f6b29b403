#!/usr/bin/env node
// Thin entry: all behaviour lives in the library (dist/cli/main.js, built from src/).
import module from 'node:module';

// Node ≥ 22 keeps the compiled code of dist/ between runs: a no-op install is mostly startup.
module.enableCompileCache?.();

import('../dist/cli/main.js').then(
  ({ main }) =>
    main(process.argv.slice(2)).then(
      (code) => process.exit(code),
      (e) => {
        process.stderr.write(`cpm: ${e?.stack ?? e}\n`);
        process.exit(70);
      },
    ),
  (e) => {
    process.stderr.write(`cpm: cannot load dist/ (run npm run build): ${e?.message ?? e}\n`);
    process.exit(70);
  },
);
