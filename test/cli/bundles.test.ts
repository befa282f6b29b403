/**
 * Commands with a bundle of their own (build/bundle.mjs COMMAND_BUNDLES, src/cli/load.ts): the
 * right file is chosen from argv, and what it prints is what the full bundle prints.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import Module from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { bundleFor } from '../../src/cli/load.js';
import { CPM_BIN, PROJECT, requireBuild, runCpm } from '../support/cli.js';
// @ts-expect-error: build/bundle.mjs is plain JavaScript without types
import { COMMAND_BUNDLES } from '../../build/bundle.mjs';

const FULL = '/opt/cpm/dist/cpm.cjs';
const TREE = '/opt/cpm/dist/cpm-tree.cjs';
const FIXTURE = path.resolve(PROJECT, '../shared/fixtures/cos-toolkit-tree');

describe('bundleFor', () => {
  it('takes cpm-WORD.cjs for the command word WORD, the full bundle for anything else', () => {
    const b = ['tree'];
    expect(bundleFor(FULL, ['tree', 'validate', '--json'], b)).toEqual({
      file: TREE,
      variant: 'tree',
    });
    expect(bundleFor(FULL, ['--config', 'c.yaml', '--debug', 'tree', 'list'], b).file).toBe(TREE);
    // a command's help is help: its entry would hold none of the command's work
    expect(bundleFor(FULL, ['tree', '--help'], b)).toEqual({ file: FULL, variant: 'help' });
    expect(bundleFor(FULL, ['tree', 'validate', '-h'], b)).toEqual({ file: FULL, variant: 'help' });
    expect(bundleFor(FULL, ['tree', 'render', '--', '-h'], b).file).toBe(TREE);
    expect(bundleFor(FULL, ['help', 'tree'], b)).toEqual({ file: FULL, variant: 'help' });
    expect(bundleFor(FULL, ['--version'], b)).toEqual({ file: FULL, variant: 'help' });
    expect(bundleFor(FULL, [], b)).toEqual({ file: FULL, variant: 'help' });
    expect(bundleFor(FULL, ['install', 'tree'], b)).toEqual({ file: FULL, variant: 'install' });
    expect(bundleFor(FULL, ['trees'], b)).toEqual({ file: FULL, variant: 'other' });
    expect(bundleFor(FULL, ['tree', 'validate'], [])).toEqual({ file: FULL, variant: 'tree' });
  });
});

/** Exit code, stdout and stderr of main(args) run from one bundle file. */
function runBundle(
  file: string,
  args: string[],
): Promise<{ code: number; out: string; err: string }> {
  const script =
    `require(${JSON.stringify(file)}).main(JSON.parse(process.argv[1]))` +
    `.then((c) => { process.exitCode = c; });`;
  return new Promise((res) =>
    execFile(process.execPath, ['-e', script, JSON.stringify(args)], (e, out, err) =>
      res({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, out, err }),
    ),
  );
}

describe('the built command bundles', () => {
  beforeAll(requireBuild);

  it('exist for every listed command and hold no other command', () => {
    expect(COMMAND_BUNDLES).toEqual(['tree']);
    for (const word of COMMAND_BUNDLES as string[]) {
      const text = readFileSync(path.join(PROJECT, 'dist', `cpm-${word}.cjs`), 'utf8');
      expect(text).toContain(`register${word[0]!.toUpperCase()}${word.slice(1)}`);
      for (const other of ['registerInstall', 'registerRepo', 'registerOci', 'buildProgram'])
        expect(text).not.toContain(`function ${other}(`);
      expect(text.length).toBeLessThan(
        readFileSync(path.join(PROJECT, 'dist/cpm.cjs'), 'utf8').length / 2,
      );
    }
    const load = readFileSync(path.join(PROJECT, 'dist/load.cjs'), 'utf8');
    expect(load).toContain(JSON.stringify(COMMAND_BUNDLES.join(',')));
  });

  it('write a code cache entry only from a run that did its work', async () => {
    const home = mkdtempSync(path.join(tmpdir(), 'cpm-bundles-'));
    const dir = path.join(home, 'cpm', 'code');
    const env = { ...process.env, XDG_CACHE_HOME: home, NODE_DISABLE_COMPILE_CACHE: '' };
    const entries = (): string[] => (existsSync(dir) ? readdirSync(dir) : []).sort();
    const tree = path.join(PROJECT, 'packages-tree');
    expect(
      (await runCpm(['tree', 'validate', '--tree', path.join(home, 'none')], { env })).code,
    ).toBe(5);
    expect(entries().filter((e) => e.startsWith('cpm-tree.cjs-'))).toEqual([]);
    expect((await runCpm(['tree', 'list', '--help'], { env })).code).toBe(0);
    expect(entries().filter((e) => e.startsWith('cpm-tree.cjs-'))).toEqual([]);
    expect((await runCpm(['tree', 'validate', '--tree', tree], { env })).code).toBe(0);
    // Node >= 22 keeps its own compile cache there instead (src/cli/load.ts)
    if (!('enableCompileCache' in Module))
      expect(entries().filter((e) => e.startsWith('cpm-tree.cjs-'))).toEqual([
        expect.stringMatching(/^cpm-tree\.cjs-[0-9a-f]+-tree-/),
      ]);
  }, 60_000);

  it.skipIf(!existsSync(FIXTURE))(
    'print what the full bundle prints (cOS fixture: validate, list, deps, help)',
    async () => {
      const values = path.join(FIXTURE, 'values/green-x86_64.yaml');
      const tree = path.join(FIXTURE, 'packages');
      for (const args of [
        ['tree', 'validate', '--json', '--tree', tree, '--values', values],
        ['tree', 'validate', '-v', '--tree', tree],
        ['tree', 'list', '--tree', tree, '--values', values],
        ['tree', 'deps', 'system/cos-setup', '--tree', tree, '--values', values],
        ['tree', 'render', 'no/such', '--tree', tree],
        ['tree', 'graph', '--format', 'svg', '--tree', tree],
        ['tree', '--help'],
      ]) {
        const full = await runBundle(path.join(PROJECT, 'dist/cpm.cjs'), args);
        const own = await runBundle(path.join(PROJECT, 'dist/cpm-tree.cjs'), args);
        expect(own, args.join(' ')).toEqual(full);
        expect(full.out.length + full.err.length, args.join(' ')).toBeGreaterThan(0);
      }
      // and bin/cpm.js runs the tree bundle: a hook sees it loaded, not the full one
      const seen = await new Promise<string>((res) =>
        execFile(
          process.execPath,
          [
            '-e',
            // the file run, on Node 20 (vm.Script, src/util/code-cache.ts) or later (require)
            `const M = require('node:module'); const vm = require('node:vm');` +
              `const say = (f) => require('node:fs').writeSync(2, 'compiled ' + f + '\\n');` +
              `const S = vm.Script; vm.Script = function (src, o) { say(o.filename); return new S(src, o); };` +
              `const L = M._load; M._load = function (id, ...a) { if (/cpm(-[a-z]+)?\\.cjs$/.test(id)) say(id); return L.call(this, id, ...a); };` +
              `require(${JSON.stringify(CPM_BIN)});`,
            '-',
            'tree',
            'list',
            '--tree',
            tree,
            '--values',
            values,
          ],
          { env: { ...process.env, NODE_DISABLE_COMPILE_CACHE: '' } },
          (_e, _o, err) => res(err),
        ),
      );
      expect(seen).toContain(`compiled ${path.join(PROJECT, 'dist/cpm-tree.cjs')}`);
      expect(seen).not.toContain(`compiled ${path.join(PROJECT, 'dist/cpm.cjs')}`);
    },
    60_000,
  );
});
