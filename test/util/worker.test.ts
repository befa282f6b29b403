/** The one worker-thread pattern: every worker module is listed for the bundler and starts. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CTL_SLOTS } from '../../src/rootfs/ring-ctl.js';
import type { StageData } from '../../src/rootfs/stage-worker.js';
import { WORKERS, startWorker, workerAvailable } from '../../src/util/worker.js';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');

describe('worker threads', () => {
  it('build/bundle.mjs bundles exactly the workers src/util/worker.ts can start', async () => {
    const bundleScript: string = '../../build/bundle.mjs'; // plain JS: no types to check
    const { WORKERS: BUNDLED } = (await import(bundleScript)) as {
      WORKERS: Record<string, string>;
    };
    expect(Object.keys(BUNDLED).sort()).toEqual(Object.keys(WORKERS).sort());
    for (const [name, file] of Object.entries(WORKERS)) {
      expect(BUNDLED[name]).toBe(`src/${file}`);
      expect(existsSync(path.join(SRC, file))).toBe(true);
    }
  });

  it('starts the stage worker from source and gets a reply', async () => {
    expect(workerAvailable('stage-worker')).toBe(true);
    const data: StageData = {
      ring: new SharedArrayBuffer(16),
      ctl: new SharedArrayBuffer(CTL_SLOTS * 4),
    };
    const w = startWorker('stage-worker', data);
    try {
      const reply = await new Promise((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
        w.postMessage({ id: 7, jobs: [] });
      });
      expect(reply).toEqual({ id: 7, hashes: [], error: null });
    } finally {
      await w.terminate();
    }
  });
});
