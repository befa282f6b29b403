#!/usr/bin/env node
// Thin entry: all behaviour lives in the library (dist/cpm.cjs, bundled from src/ by
// build/bundle.mjs). CommonJS on purpose (bin/package.json): a CommonJS entry starts without
// Node's ESM loader, a good part of a short command's run time.
'use strict';
const path = require('node:path');

let cli;

// process.exit() drops what a pipe has not taken yet (stdout to a pipe is asynchronous): exit only
// once both streams have flushed everything written before this point. A stream cpm never made
// (its output went straight to the descriptor: src/util/stdio.ts) holds nothing.
function finish(code) {
  process.exitCode = code;
  const streams = cli?.madeStreams ? cli.madeStreams() : [process.stdout, process.stderr];
  let pending = streams.length + 1;
  const done = () => {
    if (--pending === 0) setImmediate(exit); // after the streams' error events (next ticks)
  };
  const exit = () => {
    // output that could not be written (a full disk, EIO) is a failure even when the work was done
    const failed = cli?.outputFailureReport?.();
    if (failed && code === 0) {
      try {
        require('node:fs').writeSync(2, failed.text);
      } catch {
        // standard error is gone too: the exit code still says it
      }
      process.exit(failed.exit);
    }
    process.exit(code);
  };
  for (const s of streams) {
    if (s.destroyed || s.writableEnded) done();
    else s.write('', done);
  }
  done();
}

try {
  // compiled code kept between runs in a per-user cache (src/util/code-cache.ts): a short command
  // is mostly parsing and compiling dist/cpm.cjs otherwise
  const { loadCli } = require('../dist/load.cjs');
  cli = loadCli(path.join(__dirname, '..', 'dist', 'cpm.cjs'), process.argv.slice(2));
  cli.directStdio?.();
} catch (e) {
  process.stderr.write(`cpm: cannot load dist/ (run npm run build): ${e?.message ?? e}\n`);
  finish(70);
}
cli?.main(process.argv.slice(2)).then(finish, (e) => {
  process.stderr.write(`cpm: ${e?.stack ?? e}\n`);
  finish(70);
});
