/**
 * SIGKILL at every filesystem-operation index of an install, an upgrade and an uninstall; then
 * the root is moved elsewhere and recovery there must leave exactly the old or the new state, with the DB matching the disk, verify
 * clean and nothing orphaned. The child is bundled once with esbuild so each run starts fast.
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXIT_CODES } from '../../src/errors.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { installPackages, recover, type LayerSource } from '../../src/rootfs/index.js';
import { verify } from '../../src/upkeep/query.js';
import { rawLayer, step, tmpDir, layerFromFiles } from '../install/helpers.js';
import type { InstallStep } from '../../src/rootfs/types.js';
import { bundleChild } from '../support/child.js';
import { rootSnapshot } from '../support/root-snapshot.js';

const here = path.dirname(fileURLToPath(import.meta.url));
let child: string;

beforeAll(async () => {
  child = await bundleChild(path.join(here, 'fault-child.ts'), 'cpm-fault-', { workers: true });
});

/** Layer sources made by helpers are files; recover their paths for the child. */
function describeStep(s: InstallStep, files: Map<LayerSource, string>): unknown {
  return {
    ...s,
    layers: s.layers.map((l) => ({
      file: files.get(l)!,
      mediaType: l.mediaType,
      digest: l.digest,
    })),
  };
}

function runChild(
  job: unknown,
  env: Record<string, string>,
): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [child, JSON.stringify(job)], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

interface Scenario {
  name: string;
  prepare: (root: string) => Promise<void>;
  job: (root: string) => unknown;
  /** Extra environment for the child (e.g. CPM_STAGE_WORKER_AFTER). */
  env?: Record<string, string>;
  /** The first line a journal left by a kill must have (at least one kill leaves one). */
  journal?: string;
}

/**
 * `kill`: SIGKILL at op i, then `cpm recover`. A signal: SIGINT/SIGTERM at op i must end the run
 * with exit 130/143 and an "interrupted" line, the root old or new with no leftover to recover.
 */
async function runScenario(
  sc: Scenario,
  mode: 'kill' | 'SIGINT' | 'SIGTERM' | 'ENOSPC' | 'EIO' = 'kill',
): Promise<void> {
  const dir = tmpDir('cpm-fault-sc-');
  const template = path.join(dir, 'template');
  await sc.prepare(template);
  const oldState = rootSnapshot(template);
  const fresh = (name: string): string => {
    const r = path.join(dir, name);
    cpSync(template, r, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
    return r;
  };
  // learn the op count and the new state
  const full = fresh('full');
  const countFile = path.join(dir, 'count');
  const ok = await runChild(sc.job(full), { ...sc.env, CPM_FAULT_COUNT: countFile });
  expect(ok.code, ok.stderr).toBe(0);
  const newState = rootSnapshot(full);
  expect(newState).not.toBe(oldState);
  const total = Number(readFileSync(countFile, 'utf8'));
  expect(total).toBeGreaterThan(10);

  const indexes = Array.from({ length: total }, (_, i) => i + 1);
  let seenOld = 0;
  let seenNew = 0;
  let seenJournal = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = indexes.shift();
      if (i === undefined) return;
      let root = fresh(`r${i}`);
      const r = await runChild(sc.job(root), {
        ...sc.env,
        CPM_FAULT_AT: String(i),
        ...(mode === 'kill'
          ? {}
          : mode.startsWith('SIG')
            ? { CPM_FAULT_SIGNAL: mode }
            : { CPM_FAULT_ERRNO: mode }),
      });
      if (mode === 'kill') {
        expect(r.signal, `op ${i}: ${r.stderr}`).toBe('SIGKILL');
        const jf = path.join(root, 'var/lib/cpm/journal');
        if (sc.journal && existsSync(jf)) {
          expect(readFileSync(jf, 'utf8').split('\n')[0], `op ${i}`).toBe(sc.journal);
          seenJournal++;
        }
        // the journal is root-relative: the crashed root recovers after a move
        const moved = `${root}-moved`;
        renameSync(root, moved);
        root = moved;
        await recover(root);
      } else if (mode === 'ENOSPC' || mode === 'EIO') {
        // a full or failing disk at op i: its own exit code and errno, never "internal error"
        // or blame on the package; whatever is left, the next run (recover) sorts out
        expect(r.code, `op ${i}: ${r.stderr}`).toBe(
          EXIT_CODES[mode === 'ENOSPC' ? 'E_NO_SPACE' : 'E_IO'],
        );
        expect(r.stderr, `op ${i}`).toContain(`(${mode})`);
        expect(r.stderr, `op ${i}`).toMatch(/\nhint: /);
        expect(r.stderr, `op ${i}`).not.toMatch(/internal error|malformed or hostile|\n\s+at /);
        await recover(root);
      } else {
        expect(r.code, `op ${i}: ${r.stderr}`).toBe(mode === 'SIGINT' ? 130 : 143);
        expect(r.stderr, `op ${i}`).toMatch(new RegExp(`^cpm: interrupted by ${mode}; `, 'm'));
        for (const left of ['.cpm-tx', 'var/lib/cpm/lock', 'var/lib/cpm/journal'])
          expect(existsSync(path.join(root, left)), `op ${i}: ${left} left`).toBe(false);
      }
      const state = rootSnapshot(root);
      const isOld = state === oldState;
      const isNew = state === newState;
      expect(
        isOld || isNew,
        `${sc.name}: after SIGKILL at op ${i}/${total} the root is neither old nor new:\n${state}`,
      ).toBe(true);
      if (isOld) seenOld++;
      else seenNew++;
      expect((await verify({ root })).problems, `op ${i}`).toEqual([]);
      expect(existsSync(path.join(root, '.cpm-tx'))).toBe(false);
      expect(existsSync(path.join(root, 'var/lib/cpm/journal'))).toBe(false);
      expect(existsSync(path.join(root, 'var/lib/cpm/installed.new'))).toBe(false);
      rmSync(root, { recursive: true, force: true });
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  expect(seenOld).toBeGreaterThan(0);
  expect(seenNew).toBeGreaterThan(0);
  if (sc.journal && mode === 'kill') expect(seenJournal).toBeGreaterThan(0);
}

describe('SIGKILL at every filesystem operation, then recovery', () => {
  const files = new Map<LayerSource, string>();
  const v1 = async (): Promise<InstallStep> =>
    step('app/svc@1.0', [
      layerFromFiles(
        {
          'usr/bin/svc': 'v1',
          'usr/lib/svc/old.so': 'old',
          'etc/svc.conf': 'port=1\n',
          'usr/share/doc/svc/README': 'r',
        },
        'none',
      ),
    ]);
  // helpers' fileLayer keeps the path private: re-read it from the open() stream
  const fileOf = async (l: LayerSource): Promise<string> => {
    const s = (await l.open()) as unknown as { path: string; destroy(): void };
    s.destroy();
    return s.path;
  };
  const job = async (root: string, install: InstallStep[], remove: string[]): Promise<unknown> => {
    for (const s of install) for (const l of s.layers) files.set(l, await fileOf(l));
    return { root, install: install.map((s) => describeStep(s, files)), remove };
  };

  it('install, upgrade and uninstall', async () => {
    const base = step('base/root@1', [
      await rawLayer([
        { name: 'etc/', type: 'directory' },
        { name: 'etc/os-release', content: 'ID=x\n' },
        { name: 'usr/bin/', type: 'directory' },
      ]),
    ]);
    const pkg1 = await v1();
    const pkg2 = step('app/svc@2.0', [
      layerFromFiles(
        {
          'usr/bin/svc': 'v2',
          'usr/bin/svc-helper': 'h',
          'etc/svc.conf': 'port=1\nnew=1\n',
          'usr/share/svc/data/x': 'x',
          'usr/share/doc/svc/README': 'r2',
        },
        'none',
      ),
    ]);
    // two packages in one transaction sharing new directories: some move whole from a package's
    // stage tree, some are made and filled entry by entry
    const pkgA = step('app/a@1', [
      await rawLayer([
        { name: 'opt/', type: 'directory' },
        { name: 'opt/a/', type: 'directory', mode: 0o750 },
        { name: 'opt/a/sub/f', content: 'a' },
        { name: 'opt/a/sub/l', type: 'symlink', linkname: 'f' },
        { name: 'opt/a/sub/h', type: 'link', linkname: 'opt/a/sub/f' },
        { name: 'opt/shared/x', content: 'x' },
      ]),
    ]);
    const pkgB = step('app/b@1', [
      await rawLayer([
        { name: 'opt/shared/', type: 'directory', mode: 0o700 },
        { name: 'opt/shared/y', content: 'y' },
        { name: 'opt/b/deep/er/z', content: 'z' },
      ]),
    ]);
    const twoJob = await job('', [pkgA, pkgB], []);
    const installJob = await job('', [pkg1], []);
    const upgradeJob = await job('', [pkg2], []);
    const uninstallJob = await job('', [], ['app/svc']);
    const scenarios: Scenario[] = [
      {
        name: 'install',
        prepare: async (r) => {
          await installPackages(r, [base]);
        },
        job: (root) => ({ ...(installJob as object), root }),
      },
      {
        name: 'install two packages',
        prepare: async (r) => {
          await installPackages(r, [base]);
        },
        job: (root) => ({ ...(twoJob as object), root }),
      },
      {
        name: 'upgrade',
        prepare: async (r) => {
          await installPackages(r, [base, pkg1]);
          execFileSync('sh', ['-c', `echo 'port=9' > ${r}/etc/svc.conf`]);
        },
        job: (root) => ({ ...(upgradeJob as object), root }),
      },
      {
        name: 'uninstall',
        prepare: async (r) => {
          await installPackages(r, [base, pkg2]);
          execFileSync('sh', ['-c', `echo 'port=9' > ${r}/etc/svc.conf`]);
        },
        job: (root) => ({ ...(uninstallJob as object), root }),
      },
    ];
    for (const sc of scenarios) await runScenario(sc);
    // a signal in the commit window is honoured, never dropped: rolled back or finished, exit 130/143
    await runScenario(scenarios[2]!, 'SIGINT');
    await runScenario(scenarios[3]!, 'SIGTERM');
    // environment faults at every operation: install (ENOSPC), upgrade (EIO), uninstall (ENOSPC)
    await runScenario(scenarios[0]!, 'ENOSPC');
    await runScenario(scenarios[2]!, 'EIO');
    await runScenario(scenarios[3]!, 'ENOSPC');
  }, 480_000);
});

describe('fresh-root mode: SIGKILL, signals and faults at every operation', () => {
  const files = new Map<LayerSource, string>();
  const fileOf = async (l: LayerSource): Promise<string> => {
    const s = (await l.open()) as unknown as { path: string; destroy(): void };
    s.destroy();
    return s.path;
  };

  it('one package into an empty root: the next run leaves it empty or installed', async () => {
    // two layers: directories (one read-only), implicit parents, a symlink written through, a
    // hard link, a fifo, whiteouts and an opaque directory, a file replaced by a directory
    const pkg = step('app/fresh@1', [
      await rawLayer([
        { name: 'etc/', type: 'directory' },
        { name: 'etc/a.conf', content: 'a' },
        { name: 'etc/gone', content: 'g' },
        { name: 'usr/lib/x/lib.so', content: 'l' },
        { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
        { name: 'lib/through', content: 't' },
        { name: 'usr/bin/tool', content: 's', mode: 0o4755 },
        { name: 'usr/bin/tool2', type: 'link', linkname: 'usr/bin/tool' },
        { name: 'ro/', type: 'directory', mode: 0o555 },
        { name: 'ro/f', content: 'r' },
        { name: 'opt/old/f', content: 'o' },
        { name: 'swap', content: 's' },
        { name: 'fifo', type: 'fifo' },
      ]),
      await rawLayer([
        { name: 'etc/.wh.gone', content: '' },
        { name: 'opt/.wh..wh..opq', content: '' },
        { name: 'opt/new', content: 'n' },
        { name: 'swap/', type: 'directory' },
        { name: 'swap/in', content: 'i' },
        { name: 'etc/a.conf', content: 'a2', mode: 0o600 },
      ]),
    ]);
    for (const l of pkg.layers) files.set(l, await fileOf(l));
    const job = { install: [describeStep(pkg, files)], remove: [] };
    const sc: Scenario = {
      name: 'fresh install',
      env: { CPM_FRESH_ROOT: '1' }, // /tmp may not be tmpfs, where it is chosen by itself
      // what cpm leaves in a new root after taking its lock: the DB directory
      prepare: async (r) => void (await recover(r)),
      job: (root) => ({ ...job, root }),
      journal: 'cpm-journal 3',
    };
    // the worker thread creates the files: its batches are journalled before it gets them
    await runScenario({ ...sc, env: { ...sc.env, CPM_STAGE_WORKER_AFTER: '0' } });
    await runScenario(sc);
    await runScenario(sc, 'SIGTERM');
    await runScenario(sc, 'ENOSPC');
    await runScenario({ ...sc, env: { ...sc.env, CPM_STAGE_WORKER_AFTER: '0' } }, 'EIO');
  }, 480_000);
});
