/**
 * Progress as the user sees it, through the real CLI against the real local registry: plain
 * lines when stderr is a pipe (no carriage returns, no escape codes, a line per layer start and
 * finish, a summary with time and bytes), JSON lines with --json (stdout keeps its one result
 * object), bars on a terminal (a pty made by script(1)), and a pull stopped by a real SIGINT that
 * says where it stopped and that it was interrupted. Figures are checked for structure only: the
 * byte counts are exact (the layers' compressed sizes), the times and rates are whatever they
 * were.
 */
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpmCli, tmpDir } from '../install/helpers.js';
import { CPM_BIN, spawnCpm } from '../support/cli.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { pseudoRandom } from '../support/layers.js';
import { pushTestPackages } from '../support/pushed-tree.js';
import type { RegistryInstance } from '../support/registry.js';

let dir: string;
let reg: RegistryInstance;
let proxy: FaultProxy;
let n = 0;
/** A fresh cache per run: every run downloads. */
const freshConfig = (): string => {
  const cfg = path.join(dir, `cpm-${++n}.yaml`);
  writeFileSync(cfg, `cache_dir: ${dir}/cache-${n}\nrepos_confdir: []\n`);
  return cfg;
};

/** layer digest → compressed size, from the registry's manifests (via cpm pull --json). */
const layerSizes = new Map<string, number>();

beforeAll(async () => {
  dir = tmpDir('cpm-progress-');
  let pack: (...args: string[]) => string;
  ({ reg, proxy, pack } = await pushTestPackages(dir, [
    { name: 'big', blob: pseudoRandom(3 << 20, 1), requires: ['small'] },
    { name: 'small', blob: pseudoRandom(256 << 10, 2) },
  ]));
  for (const name of ['big', 'small']) {
    const out = pack('pull', `${reg.host}/cpm/test/${name}:1.0`, '--json', '-q');
    for (const l of (JSON.parse(out) as { layers: Array<{ digest: string; size: number }> }).layers)
      layerSizes.set(l.digest, l.size);
  }
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  await reg?.stop();
});

const cpm = (cfg: string, args: string[]): { code: number; out: string; err: string } =>
  cpmCli(() => cfg).cpm(...args);
/** `cpm install test/big` from the registry into `root`, with a fresh cache. */
const install = (root: string, ...more: string[]): { code: number; out: string; err: string } =>
  cpm(freshConfig(), [
    'install',
    'test/big',
    '--repo',
    `oci://${reg.host}/cpm`,
    '--root',
    root,
    ...more,
  ]);

const SIZE = String.raw`\d+(\.\d)? (B|KiB|MiB|GiB)`;
const HEX12 = '[0-9a-f]{12}';

/**
 * Runs cpm as a child (the proxy runs in this process), sends SIGINT once its stderr shows
 * `started` (after `settleMs` more), and returns the exit code and all of stderr.
 */
async function interruptWhen(
  cfg: string,
  args: string[],
  started: RegExp,
  settleMs: number,
  poll = 50,
): Promise<{ code: number | null; err: string }> {
  const { child, done } = spawnCpm(args, { ...process.env, CPM_CONFIG: cfg });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const t0 = Date.now();
  while (!started.test(err)) {
    if (Date.now() - t0 > 30_000) throw new Error(`${args[0]} did not start: ${err}`);
    await new Promise((r) => setTimeout(r, poll));
  }
  if (settleMs) await new Promise((r) => setTimeout(r, settleMs));
  child.kill('SIGINT');
  return { code: (await done).code, err };
}

describe('install progress without a terminal (stderr is a pipe)', () => {
  it('prints plain step lines: phase totals, a line per layer start and finish, a summary', () => {
    const root = path.join(dir, 'root-plain');
    const r = install(root);
    expect(r.code, r.err).toBe(0);
    expect(r.err).not.toContain('\r');
    expect(r.err).not.toContain('\x1b');
    const lines = r.err.trim().split('\n');
    const total = [...layerSizes.values()].reduce((a, b) => a + b, 0);
    const human = (b: number): string => `${(b / 1024 ** 2).toFixed(1)} MiB`;
    // what the download phase will move, from the manifests' compressed sizes
    expect(lines).toContain(`download 2 layers, ${human(total)}`);
    expect(lines).toContain(`extract 2 layers, ${human(total)}`);
    for (const verb of ['download', 'extract'])
      for (const name of ['big', 'small']) {
        expect(lines).toContainEqual(
          expect.stringMatching(new RegExp(`^${verb} test/${name}@1\\.0 ${HEX12} \\(${SIZE}\\)$`)),
        );
        expect(lines).toContainEqual(
          expect.stringMatching(
            new RegExp(
              `^${verb}ed test/${name}@1\\.0 ${HEX12} ${SIZE} in \\d+\\.\\ds( \\(${SIZE}/s\\))?$`,
            ),
          ),
        );
      }
    // every download finished before the first extraction started
    const lastDownloaded = lines.findLastIndex((l) => l.startsWith('downloaded test/'));
    const firstExtract = lines.findIndex((l) => /^extract test\//.test(l));
    expect(lastDownloaded).toBeLessThan(firstExtract);
    expect(lines.at(-1)).toMatch(
      new RegExp(
        `^downloaded 2 layers, ${human(total)} in \\d+\\.\\ds.*; extracted 2 layers, ${human(total)} in \\d+\\.\\ds.*; \\d+\\.\\ds in all$`,
      ),
    );
  });

  it('with --json: JSON lines on stderr with exact byte counts, one result object on stdout', () => {
    const root = path.join(dir, 'root-json');
    const r = install(root, '--json');
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ installed: ['test/small@1.0', 'test/big@1.0'] });
    const events = r.err
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const total = [...layerSizes.values()].reduce((a, b) => a + b, 0);
    expect(events).toContainEqual({ event: 'phase', phase: 'download', total, items: 2 });
    expect(events).toContainEqual({ event: 'phase', phase: 'extract', total, items: 2 });
    for (const phase of ['download', 'extract']) {
      const finished = events.filter((e) => e.event === 'finish' && e.phase === phase);
      expect(finished).toHaveLength(2);
      for (const f of finished) {
        expect(f.bytes).toBe(layerSizes.get(f.digest as string));
        expect(f.seconds).toEqual(expect.any(Number));
      }
      const started = events.filter((e) => e.event === 'start' && e.phase === phase);
      expect(started.map((s) => s.digest).sort()).toEqual([...layerSizes.keys()].sort());
    }
    const summary = events.at(-1)!;
    expect(summary).toMatchObject({ event: 'summary', result: 'done' });
    expect(summary.phases).toEqual([
      { phase: 'download', items: 2, bytes: total, total, seconds: expect.any(Number) },
      { phase: 'extract', items: 2, bytes: total, total, seconds: expect.any(Number) },
    ]);
  });

  it('-q prints nothing on success', () => {
    const r = install(path.join(dir, 'root-quiet'), '-q');
    expect(r.code, r.err).toBe(0);
    expect(r.err).toBe('');
  });
});

describe('pack progress', () => {
  it('says what it does: walk, the bytes to read, the pack task, the layer, the write, a summary', () => {
    const payload = path.join(dir, 'tree/test/big/1.0/root');
    const out = path.join(dir, 'packed');
    const r = cpm(freshConfig(), [
      'pack',
      payload,
      '--name',
      'test/big@1.0',
      '-o',
      `oci:${out}:1.0`,
    ]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^oci:.*:1\.0@sha256:[0-9a-f]{64}\n$/);
    expect(r.err).not.toContain('\r');
    expect(r.err.trim().split('\n')).toEqual([
      `walk ${payload}`,
      '4 entries, 1 file, 3.0 MiB to read',
      'pack 1 layer, 3.0 MiB',
      'pack test/big@1.0 (3.0 MiB)',
      expect.stringMatching(new RegExp(`^packed test/big@1\\.0 3\\.0 MiB in \\d+\\.\\ds`)),
      expect.stringMatching(
        new RegExp(`^layer sha256:[0-9a-f]{64} ${SIZE} \\(gzip\\); write oci:${out}:1\\.0$`),
      ),
      expect.stringMatching(/^packed 1 layer, 3\.0 MiB in \d+\.\ds.*; \d+\.\ds in all$/),
    ]);
  });
});

describe('a pack interrupted by SIGINT', () => {
  it('stops with exit 130, says where it stopped, and leaves no partial blob in the cache', async () => {
    const payload = path.join(dir, 'big-payload');
    mkdirSync(payload, { recursive: true });
    // incompressible, large enough that gzip is still busy when the signal comes
    const chunk = pseudoRandom(4 << 20, 7);
    writeFileSync(
      path.join(payload, 'blob'),
      Buffer.concat(Array.from({ length: 12 }, () => chunk)),
    );
    const cfg = freshConfig();
    const { code, err } = await interruptWhen(
      cfg,
      ['pack', payload, '--name', 'test/huge@1.0', '-o', `oci:${dir}/huge:1.0`],
      /pack test\/huge@1\.0 \(/,
      0,
      20,
    );
    expect(code, err).toBe(130);
    const lines = err.trim().split('\n');
    expect(lines).toContainEqual(
      expect.stringMatching(
        new RegExp(`^pack test/huge@1\\.0 interrupted at ${SIZE}/48\\.0 MiB  \\d+%$`),
      ),
    );
    expect(lines.at(-2)).toMatch(/^interrupted by SIGINT after \d+\.\ds: packed 0 of 1 layer, /);
    expect(lines.at(-1)).toBe('cpm: interrupted by SIGINT; nothing was changed');
    const cacheDir = readFileSync(cfg, 'utf8').match(/cache_dir: (.*)/)![1]!;
    const blobs = path.join(cacheDir, 'blobs/sha256');
    expect(existsSync(blobs) ? readdirSync(blobs).filter((f) => f.startsWith('.')) : []).toEqual(
      [],
    );
    expect(existsSync(path.join(dir, 'huge'))).toBe(false);
  });
});

describe('install progress on a terminal', () => {
  it('draws bars with sizes, percentage and a total line, then the summary', () => {
    const root = path.join(dir, 'root-tty');
    const cfg = freshConfig();
    const cmd = [
      'stty',
      'cols',
      '120',
      ';',
      process.execPath,
      CPM_BIN,
      'install',
      'test/big',
      '--repo',
    ]
      .concat([`oci://${reg.host}/cpm`, '--root', root, '-y'])
      .map((a) => (a === ';' ? a : `'${a}'`))
      .join(' ');
    // script(1) runs the command on a pty: stderr is a terminal
    const r = spawnSync('script', ['-qfec', cmd, '/dev/null'], {
      encoding: 'utf8',
      env: { ...process.env, CPM_CONFIG: cfg, COLUMNS: '120' },
    });
    expect(r.status, r.stdout).toBe(0);
    const screen = r.stdout;
    // bars are redrawn in place: carriage returns and erase-line codes
    expect(screen).toContain('\r');
    expect(screen).toContain('\x1b[2K');
    expect(screen).toMatch(/total (download|extract) \d\/2 \[[#.]+\] +\d/);
    expect(screen).toMatch(new RegExp(`${SIZE}/${SIZE} +\\d+%`));
    expect(screen).toMatch(/downloaded 2 layers, .*; extracted 2 layers, .* in all/);
  });
});

describe('a pull interrupted by SIGINT', () => {
  it('shows where each layer stopped and an interrupted summary, exit 130', async () => {
    proxy.reset();
    // the big layer stalls after 64 KiB: the pull is mid-download when the signal comes
    proxy.add({
      path: /\/blobs\/sha256:/,
      fault: { kind: 'stall', afterBytes: 64 << 10 },
      times: Infinity,
    });
    const big = [...layerSizes.entries()].sort((a, b) => b[1] - a[1])[0]!;
    const { code, err } = await interruptWhen(
      freshConfig(),
      ['pull', `${proxy.host}/cpm/test/big:1.0`],
      /download \S+ [0-9a-f]{12}/,
      500,
    );
    expect(code, err).toBe(130);
    const lines = err.trim().split('\n');
    expect(lines).toContain(`download 1 layer, ${(big[1] / 1024 ** 2).toFixed(1)} MiB`);
    expect(lines).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^download \\S+/cpm/test/big:1\\.0 ${big[0].slice(7, 19)} interrupted at ${SIZE}/${SIZE}  \\d+%$`,
        ),
      ),
    );
    expect(lines).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^interrupted by SIGINT after \\d+\\.\\ds: downloaded 0 of 1 layer, ${SIZE} of ${SIZE} in`,
        ),
      ),
    );
    expect(lines.at(-1)).toMatch(/interrupted by SIGINT; nothing was changed/);
    expect(err).not.toMatch(/internal error|\n\s+at /);
  });

  it('rootfs init from a stalled registry: the pull before the transaction is interrupted too', async () => {
    proxy.reset();
    proxy.add({
      path: /\/blobs\/sha256:/,
      fault: { kind: 'stall', afterBytes: 64 << 10 },
      times: Infinity,
    });
    const root = path.join(dir, 'root-init-int');
    const { code, err } = await interruptWhen(
      freshConfig(),
      ['rootfs', 'init', '--from', `${proxy.host}/cpm/test/big:1.0`, '--root', root],
      /download \S+ [0-9a-f]{12}/,
      500,
    );
    expect(code, err).toBe(130);
    expect(err).toMatch(/^download \S+ [0-9a-f]{12} interrupted at /m);
    expect(err).toMatch(/^interrupted by SIGINT after /m);
    expect(err.trim().split('\n').at(-1)).toBe('cpm: interrupted by SIGINT; nothing was changed');
    expect(existsSync(path.join(root, 'usr'))).toBe(false);
  });
});

describe('two installs sharing a cache', () => {
  it('the second waits for the layer the first is downloading, says so, and does not fetch it', async () => {
    const big = [...layerSizes.entries()].sort((a, b) => b[1] - a[1])[0]![0];
    proxy.reset();
    // the first one's download of the big layer is slow to start
    proxy.add({ path: new RegExp(big), fault: { kind: 'delay', ms: 2000 } });
    const cfg = freshConfig();
    const env = { ...process.env, CPM_CONFIG: cfg };
    const install = (root: string) =>
      spawnCpm(
        [
          'install',
          'test/big',
          '--repo',
          `oci://${proxy.host}/cpm`,
          '--root',
          path.join(dir, root),
        ],
        env,
      );
    const a = install('root-shared-a');
    const cache = readFileSync(cfg, 'utf8').match(/cache_dir: (.*)/)![1]!;
    const lock = path.join(cache, 'blobs/sha256', `.ingest-${big.slice(7)}`);
    const t0 = Date.now();
    // the lock is a symlink to nowhere: lstat, not exists
    while (!lstatSync(lock, { throwIfNoEntry: false })) {
      if (Date.now() - t0 > 30_000) throw new Error('the first install took no lock');
      await new Promise((r) => setTimeout(r, 20));
    }
    const b = install('root-shared-b');
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect(ra.code, ra.err).toBe(0);
    expect(rb.code, rb.err).toBe(0);
    expect(rb.err.split('\n')).toContain(
      `download test/big@1.0 ${big.slice(7, 19)}: waiting for ${big.slice(0, 19)} being downloaded by pid ${a.child.pid}`,
    );
    expect(proxy.requests.filter((r) => r.method === 'GET' && r.path.includes(big))).toHaveLength(
      1,
    );
    expect(readFileSync(path.join(dir, 'root-shared-b/usr/share/big/blob')).length).toBe(3 << 20);
  });
});
