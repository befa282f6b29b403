#!/usr/bin/env node
// Builds dist/: what bin/cpm.js loads, bundled with esbuild (pinned devDependency).
//   dist/cpm.cjs            the CLI and the library, one CommonJS file
//   dist/cpm-WORD.cjs       the same for `cpm WORD …` alone (COMMAND_BUNDLES): only that command
//   dist/load.cjs           what bin/cpm.js loads dist/cpm.cjs with: compiled code kept per user
//   dist/vendor-yaml.cjs    the YAML parser, required the first time a YAML file is read
//   dist/vendor-undici.cjs  the HTTP client, required the first time a registry is contacted
//   dist/NAME.cjs           one file per worker thread (src/util/worker.ts)
// Why this shape (bench/startup, docs/performance.md): loading ~100 ESM files cost more than
// `node -e 0` itself; an ESM bundle split into chunks still paid the ESM loader per chunk; one
// CommonJS file is read once and its modules are only initialised when first used (esbuild wraps
// each one), so the cost left is parsing it, and the two big dependencies stay out of that.
// Type checking is `npm run typecheck` (tsc --noEmit); this only transpiles.
//
//   node build/bundle.mjs
import { readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import esbuild from 'esbuild';

const project = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Worker entry modules: dist/<name>.cjs. Keep in step with WORKERS in src/util/worker.ts
 * (test/util/worker.test.ts checks).
 */
export const WORKERS = {
  'stage-worker': 'src/rootfs/stage-worker.ts',
  'hash-worker': 'src/rootfs/hash-worker.ts',
  'tar-worker': 'src/image/tar-worker.ts',
};

/**
 * Commands that get a bundle of their own, dist/cpm-WORD.cjs: main and that command's file only,
 * chosen by dist/load.cjs (src/cli/load.ts) when argv's command word is WORD. What a short command
 * pays to read, deserialize and set up is the size of its bundle; the tree commands use a fifth of
 * dist/cpm.cjs (docs/performance.md, "Fifth session: the small trees"). Each bundle is whole in
 * itself: a process loads one of them, never two, so no class or state is ever split between them.
 */
export const COMMAND_BUNDLES = ['tree'];

/** Packages kept out of dist/cpm.cjs, each its own file: what imports them loads it on first use. */
const VENDOR = [
  {
    file: 'vendor-yaml.cjs',
    // named exports written out, so esbuild annotates them and Node's import() of this CommonJS
    // file sees `parseDocument` & co. (a bare module.exports = require() shows only `default`)
    source: `import * as y from 'yaml';\nexport const { ${Object.keys(
      createRequire(import.meta.url)('yaml'),
    )
      .filter((k) => k !== 'default' && k !== '__esModule')
      .join(', ')} } = y;`,
  },
  {
    file: 'vendor-undici.cjs',
    // the two modules src/oci/http.ts uses, not the package entry (fetch, WebSocket, mocks…)
    source:
      "exports.agent = require('undici/lib/dispatcher/agent.js');\n" +
      "exports.request = require('undici/lib/api/api-request.js');",
  },
];

/** Options every bundle shares: CommonJS for Node 20, import.meta.url as the file's own URL. */
export function commonOptions(version) {
  return {
    absWorkingDir: project,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    // import() becomes require(): dist/load.cjs runs the bundle as a vm.Script (code cache), where
    // import() would need an experimental loader hook, lost with cached code on Node 20
    supported: { 'dynamic-import': false },
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: 'linked',
    legalComments: 'inline',
    logLevel: 'warning',
    banner: {
      js: 'const __cpm_import_meta_url = require("node:url").pathToFileURL(__filename).href;',
    },
    define: {
      'import.meta.url': '__cpm_import_meta_url',
      __CPM_VERSION__: JSON.stringify(version),
      // a string: an array here would be a module of its own in every bundle
      __CPM_COMMAND_BUNDLES__: JSON.stringify(COMMAND_BUNDLES.join(',')),
    },
  };
}

/**
 * Points imports of a vendored package at its file in dist/ (required from there when first
 * used). Through a CommonJS shim, not an external import: a dynamic import() of a bundled .cjs
 * file would see no named exports.
 */
const vendorPlugin = {
  name: 'cpm-vendor',
  setup(b) {
    b.onResolve({ filter: /^\.\/vendor-[a-z]+\.cjs$/ }, (a) => ({ path: a.path, external: true }));
    b.onResolve({ filter: /^yaml$/ }, () => ({ path: 'yaml', namespace: 'cpm-vendor' }));
    b.onResolve({ filter: /^undici\/lib\/(dispatcher\/agent|api\/api-request)\.js$/ }, (a) => ({
      path: a.path.includes('agent') ? 'undici.agent' : 'undici.request',
      namespace: 'cpm-vendor',
    }));
    b.onLoad({ filter: /.*/, namespace: 'cpm-vendor' }, (a) => {
      const [pkg, member] = a.path.split('.');
      return {
        contents: `module.exports = require('./vendor-${pkg}.cjs')${member ? `.${member}` : ''};`,
        loader: 'js',
        resolveDir: project,
      };
    });
  },
};

/**
 * commander requires node:child_process at load time for executable subcommands, which cpm does
 * not use; loading it (and net, stream behind it) was a good part of `cpm help`. Required when
 * first used instead.
 */
export const lazyChildProcess = {
  name: 'cpm-lazy-child-process',
  setup(b) {
    b.onLoad({ filter: /commander[\\/]lib[\\/]command\.js$/ }, async (a) => {
      const text = await readFile(a.path, 'utf8');
      const eager = "const childProcess = require('node:child_process');";
      if (!text.includes(eager)) return undefined; // another commander: leave it as it is
      return {
        contents: text.replace(
          eager,
          "const childProcess = { spawn: (...a) => require('node:child_process').spawn(...a) };",
        ),
        loader: 'js',
      };
    });
  },
};

/**
 * For dist/cpm-WORD.cjs: the command files other than WORD's and the full command tree
 * (program.ts) become a module that throws when loaded. main() never reaches them for WORD (it
 * loads the file of argv's command word, the one this bundle was chosen by); if it ever did, the
 * command fails as an internal error instead of running without its commands.
 */
function onlyCommand(word) {
  return {
    name: 'cpm-only-command',
    setup(b) {
      b.onResolve({ filter: /^\.\/(commands\/[a-z-]+|program)\.js$/ }, (a) => {
        const own = a.path === `./commands/${word}.js`;
        if (own || !/[\\/]src[\\/]cli[\\/](command-table|main)\.ts$/.test(a.importer))
          return undefined;
        return { path: a.path, namespace: 'cpm-absent' };
      });
      b.onLoad({ filter: /.*/, namespace: 'cpm-absent' }, (a) => ({
        contents: `throw new Error(${JSON.stringify(`${a.path} is not in dist/cpm-${word}.cjs`)});`,
        loader: 'js',
      }));
    },
  };
}

export async function bundleDist() {
  const pkg = JSON.parse(readFileSync(path.join(project, 'package.json'), 'utf8'));
  const outdir = path.join(project, 'dist');
  rmSync(outdir, { recursive: true, force: true });
  const common = commonOptions(pkg.version);
  await esbuild.build({
    ...common,
    entryPoints: { cpm: 'src/cli/main.ts', load: 'src/cli/load.ts', ...WORKERS },
    outdir,
    outExtension: { '.js': '.cjs' },
    plugins: [vendorPlugin, lazyChildProcess],
  });
  for (const word of COMMAND_BUNDLES) {
    await esbuild.build({
      ...common,
      entryPoints: { [`cpm-${word}`]: 'src/cli/main.ts' },
      outdir,
      outExtension: { '.js': '.cjs' },
      plugins: [vendorPlugin, lazyChildProcess, onlyCommand(word)],
    });
  }
  for (const v of VENDOR) {
    await esbuild.build({
      ...common,
      stdin: { contents: v.source, resolveDir: project, sourcefile: v.file },
      outfile: path.join(outdir, v.file),
    });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await bundleDist();
}
