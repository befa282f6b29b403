#!/usr/bin/env node
// Thin entry: all behaviour lives in the library (dist/cpm.cjs, bundled from src/ by
// build/bundle.mjs). CommonJS on purpose (bin/package.json): a CommonJS entry starts without
// Node's ESM loader, a good part of a short command's run time.
'use strict';
const path = require('node:path');

// process.exit() drops what a pipe has not taken yet (stdout to a pipe is asynchronous): exit only
// once both streams have flushed everything written before this point.
function finish(code) {
  process.exitCode = code;
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  for (const s of [process.stdout, process.stderr]) {
    if (s.destroyed || s.writableEnded) done();
    else s.write('', done);
  }
}

let cli;
try {
  // compiled code kept between runs in a per-user cache (src/util/code-cache.ts): a short command
  // is mostly parsing and compiling dist/cpm.cjs otherwise
  const { loadCli } = require('../dist/load.cjs');
  cli = loadCli(path.join(__dirname, '..', 'dist', 'cpm.cjs'), process.argv.slice(2));
} catch (e) {
  process.stderr.write(`cpm: cannot load dist/ (run npm run build): ${e?.message ?? e}\n`);
  finish(70);
}
cli?.main(process.argv.slice(2)).then(finish, (e) => {
  process.stderr.write(`cpm: ${e?.stack ?? e}\n`);
  finish(70);
});
