/**
 * Output through a real pipe is never cut short: bin/cpm.js used to call process.exit() while the
 * pipe still held unread output, truncating it at the pipe's 64 KiB buffer.
 */
import { execFile, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const PROJECT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = join(PROJECT, 'bin/cpm.js');

/** A tree whose `tree list --json` is well above 1 MB. */
function bigTree(n: number): string {
  const root = join(mkdtempSync(join(tmpdir(), 'cpm-pipe-')), 'packages');
  mkdirSync(join(root, 'big'), { recursive: true });
  const desc = 'x'.repeat(400);
  const lines = ['packages:'];
  for (let i = 0; i < n; i++)
    lines.push(`  - {name: p${i}, category: big, version: "1.${i}", description: "${desc}"}`);
  writeFileSync(join(root, 'big/collection.yaml'), lines.join('\n') + '\n');
  return root;
}

describe('stdout to a pipe', () => {
  it('delivers more than 1 MB of JSON to a slow reader, whole', async () => {
    const tree = bigTree(3000);
    const child = spawn('node', [BIN, 'tree', 'list', '--json', '--tree', tree], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Read nothing for a while, so the pipe fills and cpm finishes before the reader drains it.
    child.stdout.pause();
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    const exited = new Promise<number>((res) => child.on('exit', (c) => res(c ?? -1)));
    await new Promise((r) => setTimeout(r, 1500));
    child.stdout.resume();
    const closed = new Promise((res) => child.stdout.on('end', res));
    const [code] = await Promise.all([exited, closed]);
    const out = Buffer.concat(chunks);
    expect(code).toBe(0);
    expect(out.length).toBeGreaterThan(1 << 20);
    const list = JSON.parse(out.toString('utf8')) as { packages: Array<{ id: string }> };
    expect(list.packages).toHaveLength(3000);
  }, 60_000);

  it('delivers it whole through a pipe another process made non-blocking', async () => {
    // cpm writes straight to the descriptor (src/util/stdio.ts). A node sharing the pipe makes its
    // own process.stdout, which sets O_NONBLOCK on the pipe for both; the reader waits until cpm
    // has fallen back to its stream (its first write past the full pipe met EAGAIN), so what is
    // left must reach the reader through the stream, in order.
    const tree = bigTree(3000);
    const dir = mkdtempSync(join(tmpdir(), 'cpm-pipe-'));
    const m = (n: string): string => join(dir, n);
    writeFileSync(
      m('hook.cjs'),
      `const fs = require('node:fs');\n` +
        `const d = Object.getOwnPropertyDescriptor(process, 'stdout');\n` +
        `Object.defineProperty(process, 'stdout', { ...d, get() {\n` +
        `  fs.writeFileSync(process.env.M_STREAM, ''); return d.get.call(process); } });\n` +
        `process.on('exit', () => fs.writeFileSync(process.env.M_EXIT, ''));\n`,
    );
    const other =
      `const fs = require('node:fs'); process.stdout; fs.writeFileSync(process.env.M_OTHER, '');` +
      `setInterval(() => fs.existsSync(process.env.M_EXIT) && process.exit(0), 50);`;
    const script =
      `( "$NODE" -e "$OTHER" & while [ ! -e "$M_OTHER" ]; do sleep 0.05; done; ` +
      `exec "$NODE" -r "$HOOK" "$BIN" tree list --json --tree "$TREE" ) | ` +
      `{ i=0; while [ ! -e "$M_STREAM" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; ` +
      `cat > "$OUT"; }`;
    const env = {
      ...process.env,
      NODE: process.execPath,
      BIN,
      TREE: tree,
      OTHER: other,
      HOOK: m('hook.cjs'),
      M_OTHER: m('other'),
      M_STREAM: m('stream'),
      M_EXIT: m('exit'),
      OUT: m('out'),
    };
    const r = await new Promise<{ code: number; err: string }>((res) =>
      execFile('sh', ['-c', script], { env }, (e, _o, err) =>
        res({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, err }),
      ),
    );
    expect(r).toEqual({ code: 0, err: '' });
    expect(existsSync(m('stream'))).toBe(true); // the fallback was taken
    const list = JSON.parse(readFileSync(m('out'), 'utf8')) as { packages: Array<{ id: string }> };
    const ids = list.packages.map((p) => p.id);
    expect(new Set(ids)).toEqual(
      new Set(Array.from({ length: 3000 }, (_, i) => `big/p${i}@1.${i}`)),
    );
    expect(ids).toHaveLength(3000);
  }, 60_000);
});

describe('short commands', () => {
  it("print without loading Node's stream modules, and exit with everything written", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cpm-pipe-'));
    const log = join(dir, 'modules');
    const hook = join(dir, 'hook.cjs');
    // at exit, the built-in modules loaded (written with fs: the hook must not make a stream)
    writeFileSync(
      hook,
      `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(log)}, ` +
        `process.moduleLoadList.join('\\n')));\n`,
    );
    const run = (args: string[]): Promise<{ code: number; out: string; modules: string[] }> =>
      new Promise((res) => {
        execFile(process.execPath, ['-r', hook, BIN, ...args], (e, out) =>
          res({
            code: e ? (typeof e.code === 'number' ? e.code : -1) : 0,
            out,
            modules: readFileSync(log, 'utf8').split('\n'),
          }),
        );
      });
    const v = await run(['--version']);
    expect(v.out).toMatch(/^\d+\.\d+\.\d+/);
    expect(v.modules).not.toContain('NativeModule net');
    expect(v.modules).not.toContain('NativeModule stream');
    const tree = bigTree(3);
    const t = await run(['tree', 'list', '--json', '--tree', tree]);
    expect(t.code).toBe(0);
    expect((JSON.parse(t.out) as { packages: unknown[] }).packages).toHaveLength(3);
    expect(t.modules).not.toContain('NativeModule stream');
    // an error report goes the same way, to stderr
    const bad = await run(['tree', 'render', 'big/nothing', '--tree', tree]);
    expect(bad.code).toBe(5);
    expect(bad.modules).not.toContain('NativeModule stream');
  }, 60_000);

  it.each([
    ['--version', ['--version']],
    ['a tree command (straight to the descriptor)', ['tree', 'list', '--tree', 'TREE']],
    ["help (commander writes through Node's stream)", ['help']],
  ])('%s into a full disk: E_NO_SPACE with one line, no stack, no exit 0', async (_what, args) => {
    const tree = bigTree(3);
    const r = await new Promise<{ code: number | null; err: string }>((res) => {
      const full = openSync('/dev/full', 'w');
      const child = spawn('node', [BIN, ...args.map((a) => (a === 'TREE' ? tree : a))], {
        stdio: ['ignore', full, 'pipe'],
      });
      closeSync(full);
      let err = '';
      child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
      child.on('close', (code) => res({ code, err }));
    });
    expect(r.err).toBe('cpm: writing standard output: no space left on device (ENOSPC)\n');
    expect(r.code).toBe(14);
  });

  it('stops quietly when its reader goes away (EPIPE is not a failure of cpm)', async () => {
    const tree = bigTree(3000);
    const r = await new Promise<{ code: number | null; err: string }>((res) => {
      const child = spawn('node', [BIN, 'tree', 'list', '--json', '--tree', tree], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout.once('data', () => child.stdout.destroy());
      let err = '';
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.on('close', (code) => res({ code, err }));
    });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
  }, 60_000);
});

describe('short commands to a pipe make no stream', () => {
  // making process.stdout or process.stderr loads Node's stream modules and, for a pipe, net: 5–15
  // ms of a 100 ms command. Help and usage errors print through util/stdio.ts (commanderOutput).
  const hook = join(mkdtempSync(join(tmpdir(), 'cpm-loaded-')), 'hook.cjs');
  writeFileSync(
    hook,
    "process.on('exit', () => require('node:fs').writeSync(2, '\\nLOADED ' + process.moduleLoadList.join(',') + '\\n'));\n",
  );
  const run = (...args: string[]): Promise<{ out: string; loaded: string[] }> =>
    new Promise((res) => {
      execFile('node', ['--require', hook, BIN, ...args], (_e, stdout, stderr) => {
        const line = stderr.split('\n').find((l) => l.startsWith('LOADED ')) ?? '';
        const loaded = line
          .slice('LOADED '.length)
          .split(',')
          .filter((m) => m.startsWith('NativeModule '))
          .map((m) => m.slice('NativeModule '.length));
        res({ out: stdout + stderr.replace(/\nLOADED .*\n$/, ''), loaded });
      });
    });
  const streams = (l: string[]): string[] => l.filter((m) => ['stream', 'net', 'tty'].includes(m));

  it('cpm --version, cpm help, cpm install --help and a usage error', async () => {
    for (const args of [['--version'], ['help'], ['install', '--help'], ['bogus']]) {
      const r = await run(...args);
      expect(r.out.length, args.join(' ')).toBeGreaterThan(5);
      expect(streams(r.loaded), args.join(' ')).toEqual([]);
    }
  });
});
