/**
 * The one way cpm starts a worker thread: every worker is a typed module (src/…/NAME.ts, linted
 * and type checked like the rest) that talks over parentPort. Where its code comes from depends on
 * how cpm runs:
 * - from dist/ (bin/cpm.js): build/bundle.mjs writes each worker as dist/NAME.cjs beside cpm.cjs;
 * - the single file (build/sea.mjs): the worker bundles are embedded as source text and evaluated;
 * - from src/ (tests, tsx): the .ts module, with tsx's loader registered inside the worker (Node 20
 *   workers ignore --import in execArgv).
 */
import { existsSync } from 'node:fs';
import { createRequire as requireFrom } from 'node:module'; // not createRequire: bundles' banners declare that
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/** Worker modules by name, relative to src/. Keep in step with WORKERS in build/bundle.mjs. */
export const WORKERS = {
  'stage-worker': 'rootfs/stage-worker.ts',
  'hash-worker': 'rootfs/hash-worker.ts',
  'tar-worker': 'image/tar-worker.ts',
} as const;
export type WorkerName = keyof typeof WORKERS;

/** Defined by build/sea.mjs: each worker's bundle as CommonJS source. */
declare const __CPM_WORKER_SOURCES__: Record<string, string> | undefined;

function embedded(name: WorkerName): string | undefined {
  return typeof __CPM_WORKER_SOURCES__ === 'object' ? __CPM_WORKER_SOURCES__[name] : undefined;
}

/** How to start `name`: the built file, the embedded source, or the .ts through tsx. */
function locate(name: WorkerName): { url: URL } | { source: string } {
  const source = embedded(name);
  if (source !== undefined) return { source };
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return { url: new URL(`./${name}.cjs`, here) };
  const ts = new URL(`../${WORKERS[name]}`, here);
  const api = pathToFileURL(requireFrom(here).resolve('tsx/esm/api')).href;
  return {
    source: `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(ts.href)}); });`,
  };
}

const located = new Map<WorkerName, { url: URL } | { source: string }>();

/** True when `name` can be started here (its built file or source exists). */
export function workerAvailable(name: WorkerName): boolean {
  const where = located.get(name) ?? locate(name);
  located.set(name, where);
  return 'source' in where || existsSync(fileURLToPath(where.url));
}

export function startWorker(name: WorkerName, workerData: unknown): Worker {
  const where = located.get(name) ?? locate(name);
  located.set(name, where);
  return 'url' in where
    ? new Worker(where.url, { workerData })
    : new Worker(where.source, { eval: true, workerData });
}
