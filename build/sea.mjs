#!/usr/bin/env node
// Builds the single-file cpm: one executable (Node's single-executable-application support) that
// runs on a machine or container image with no Node installed — the way luet ships one binary that
// Dockerfiles `COPY --from=`.
//
//   node build/sea.mjs [--arch x64|arm64] [--out FILE]      (npm run build:dist builds dist/ first)
//
// 1. The runtime is a current LTS Node binary from the npm registry package node-linux-<arch>,
//    fetched with `npm pack` into build/.cache/ (no other download). Node ≥ 22.15 has zstd in
//    node:zlib, so cpm's compression needs no native addon or external program there.
// 2. What dist/ holds (bin/cpm.js, src/cli/main.ts, the worker modules) is bundled into one
//    CommonJS script with esbuild (pinned devDependency; SEA runs exactly one script and its
//    require() only sees built-in modules); worker threads run from embedded source.
// 3. The SEA preparation blob is made by a Node of the same version for this machine's
//    architecture, then injected into a copy of the runtime with postject (pinned devDependency).
import { spawnSync } from 'node:child_process';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  promises as fsp,
  readFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import esbuild from 'esbuild';
import { inject } from 'postject';
import { extract } from 'tar-stream';
import { WORKERS, lazyChildProcess } from './bundle.mjs';

/** Node 24 "Krypton" is the current LTS line; override with CPM_SEA_NODE_VERSION. */
export const NODE_VERSION = process.env.CPM_SEA_NODE_VERSION || '24.21.0';
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

const here = path.dirname(fileURLToPath(import.meta.url));
const project = path.resolve(here, '..');
const cacheDir = path.join(here, '.cache');

function fail(message) {
  process.stderr.write(`build/sea: ${message}\n`);
  process.exit(1);
}

function args(argv) {
  const out = { arch: process.arch, out: undefined };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--arch') out.arch = argv[++i];
    else if (argv[i] === '--out') out.out = argv[++i];
    else fail(`unknown argument ${argv[i]}`);
  }
  if (out.arch !== 'x64' && out.arch !== 'arm64')
    fail(`--arch must be x64 or arm64, not ${out.arch}`);
  out.out = path.resolve(out.out ?? path.join(project, 'out', `cpm-linux-${out.arch}`));
  return out;
}

/** `npm pack node-linux-<arch>@<version>` into the cache, then pull out package/bin/node. */
async function nodeBinary(arch, version) {
  const dir = path.join(cacheDir, `node-v${version}-linux-${arch}`);
  const bin = path.join(dir, 'node');
  if (existsSync(bin)) return bin;
  await fsp.mkdir(dir, { recursive: true });
  const spec = `node-linux-${arch}@${version}`;
  process.stderr.write(`build/sea: npm pack ${spec}\n`);
  const r = spawnSync('npm', ['pack', spec, '--json', '--pack-destination', dir], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.status !== 0) fail(`npm pack ${spec} failed`);
  const [{ filename }] = JSON.parse(r.stdout);
  const tgz = path.join(dir, filename);
  const ex = extract();
  let found = false;
  ex.on('entry', (h, stream, next) => {
    if (h.name === 'package/bin/node') {
      found = true;
      pipeline(stream, createWriteStream(bin + '.tmp', { mode: 0o755 })).then(() => next(), next);
    } else {
      stream.on('end', next).resume();
    }
  });
  await pipeline(createReadStream(tgz), zlib.createGunzip(), ex);
  if (!found) fail(`${filename} has no package/bin/node`);
  await fsp.rename(bin + '.tmp', bin);
  await fsp.rm(tgz);
  return bin;
}

/** Bundles one entry into CommonJS for the SEA; only node: built-ins stay external. */
async function cjs(options, version, extra = {}) {
  const result = await esbuild.build({
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node22',
    minify: false,
    // import() becomes require(), as in build/bundle.mjs
    supported: { 'dynamic-import': false },
    legalComments: 'inline',
    logLevel: 'warning',
    absWorkingDir: project,
    ...options,
    banner: {
      js:
        '"use strict";\n' +
        // import.meta.url of every bundled module: the executable itself, so lookups of files
        // "next to cpm" (e.g. its packages-tree/) look beside the binary.
        'const __cpm_import_meta_url = require("node:url").pathToFileURL(process.execPath).href;',
    },
    define: {
      'import.meta.url': '__cpm_import_meta_url',
      __CPM_VERSION__: JSON.stringify(version),
      ...extra,
    },
  });
  return result;
}

/**
 * One CommonJS script with everything cpm needs, from the sources build/bundle.mjs bundles into
 * dist/: bin/cpm.js with its require of dist/load.cjs pointed at src/cli/sea-load.ts, which has
 * src/cli/main.ts in it. SEA runs exactly one script, so each worker thread's bundle is embedded as
 * source text (src/util/worker.ts evaluates it). Its V8 code cache (useCodeCache) is made here:
 * only the top level (nothing has run), but it spares parsing the whole script at each start; the
 * per-user cache of dist/ (src/util/code-cache.ts) was measured slower for the single file
 * (docs/performance.md).
 */
async function bundle(file, version) {
  if (!existsSync(path.join(project, 'dist', 'cpm.cjs')))
    fail('dist/ is missing: run npm run build');
  const sources = {};
  for (const [name, entry] of Object.entries(WORKERS)) {
    const r = await cjs({ entryPoints: [entry], write: false }, version);
    sources[name] = r.outputFiles[0].text;
  }
  const toSrc = {
    name: 'cpm-src',
    setup(b) {
      b.onResolve({ filter: /\/dist\/load\.cjs$/ }, () => ({
        path: path.join(project, 'src', 'cli', 'sea-load.ts'),
      }));
    },
  };
  await cjs(
    {
      entryPoints: [path.join(project, 'bin', 'cpm.js')],
      outfile: file,
      plugins: [toSrc, lazyChildProcess],
    },
    version,
    {
      __CPM_WORKER_SOURCES__: JSON.stringify(sources),
    },
  );
}

/**
 * The official Node binary carries its symbol table, DWARF debug info and the compiler's
 * annotation notes (.gnu.build.attributes: 256 notes) — about 18 MiB nothing at run time reads
 * (stack traces of JavaScript use V8's own tables). `strip` removes them before the blob is
 * injected. A strip that cannot read the binary (another architecture's without multiarch
 * binutils) or no strip at all keeps it whole, with a line saying so.
 */
function slim(file, arch) {
  const r = spawnSync('strip', ['--strip-all', '--remove-section=.gnu.build.attributes', file], {
    encoding: 'utf8',
  });
  if (r.status !== 0)
    process.stderr.write(
      `build/sea: not stripped (${r.error ? 'no strip: apt-get install binutils' : r.stderr.trim()}); linux-${arch} keeps its debug info\n`,
    );
}

/**
 * postject (LIEF, compiled to WebAssembly) prints "warning: Can't find string offset for section
 * name '.note…'" for note sections it rewrites whose names it does not find in the section-name
 * table. Harmless: the binary runs and finds its blob (test/image/sea.test.ts). The lines come
 * through console.log/console.warn, which postject binds when inject() loads its module, so
 * they are filtered for the injection only; anything else it prints is kept.
 */
async function injectQuietly(file, blob) {
  const noise = /^warning: Can't find string offset for section name '\.note[^']*'$/;
  const { log, warn } = console;
  let dropped = 0;
  const keep =
    (print) =>
    (...a) => {
      if (a.length === 1 && noise.test(String(a[0]).trim())) dropped++;
      else print(...a);
    };
  console.log = keep(log);
  console.warn = keep(warn);
  try {
    await inject(file, 'NODE_SEA_BLOB', blob, { sentinelFuse: SEA_FUSE });
  } finally {
    console.log = log;
    console.warn = warn;
  }
  return dropped;
}

/**
 * What the binary was built from, written beside it (FILE.build.json): benches refuse a binary
 * built from another commit or older than dist/ (bench/support.ts singleFile) instead of timing
 * stale code or failing mid-run on a format it cannot read.
 */
function stamp() {
  const git = (...a) => spawnSync('git', a, { cwd: project, encoding: 'utf8' });
  const head = git('rev-parse', 'HEAD');
  const dirty = git('status', '--porcelain', '--', 'src', 'bin', 'build', 'package.json');
  return {
    commit: head.status === 0 ? head.stdout.trim() : null,
    dirty: dirty.status === 0 ? dirty.stdout.trim() !== '' : null,
    node: NODE_VERSION,
  };
}

export async function buildSea({ arch, out }) {
  const pkg = JSON.parse(readFileSync(path.join(project, 'package.json'), 'utf8'));
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-sea-'));
  try {
    const runtime = await nodeBinary(arch, NODE_VERSION);
    // The blob must come from the same Node version; it runs on this machine.
    const hostNode = arch === process.arch ? runtime : await nodeBinary(process.arch, NODE_VERSION);
    const script = path.join(work, 'cpm.cjs');
    await bundle(script, pkg.version);
    const blob = path.join(work, 'sea.blob');
    const config = {
      main: script,
      output: blob,
      disableExperimentalSEAWarning: true,
      // V8 code cache is only valid for the architecture that made it.
      useCodeCache: arch === process.arch,
      useSnapshot: false,
    };
    await fsp.writeFile(path.join(work, 'sea-config.json'), JSON.stringify(config));
    const r = spawnSync(
      hostNode,
      ['--experimental-sea-config', path.join(work, 'sea-config.json')],
      {
        stdio: 'inherit',
      },
    );
    if (r.status !== 0) fail('generating the SEA blob failed');
    await fsp.mkdir(path.dirname(out), { recursive: true });
    await fsp.rm(out, { force: true });
    await fsp.copyFile(runtime, out);
    await fsp.chmod(out, 0o755);
    slim(out, arch);
    const dropped = await injectQuietly(out, await fsp.readFile(blob));
    if (process.env.CPM_SEA_VERBOSE && dropped > 0)
      process.stderr.write(`build/sea: ${dropped} postject note-name warning(s) dropped\n`);
    await fsp.writeFile(`${out}.build.json`, JSON.stringify(stamp(), null, 2) + '\n');
    const { size } = await fsp.stat(out);
    process.stdout.write(
      `wrote ${path.relative(process.cwd(), out)} (cpm ${pkg.version}, Node ${NODE_VERSION} linux-${arch}, ${(size / 1048576).toFixed(1)} MiB)\n`,
    );
    return out;
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await buildSea(args(process.argv.slice(2)));
}
