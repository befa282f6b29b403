#!/usr/bin/env node
// Thin entry: all behaviour lives in the library (dist/cli/main.js, built from src/).
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`cpm: ${e?.stack ?? e}\n`);
    process.exit(70);
  },
);
