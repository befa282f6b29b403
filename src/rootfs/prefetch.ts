/**
 * The download phase of a transaction: every remote layer not yet in the cache is fetched before
 * extraction starts, a few at a time (apt and dnf download everything first, then unpack), so the
 * user sees one download total with its rate and ETA, then one extraction total.
 */
import { packageId } from '../package/package.js';
import type { Reporter } from '../util/progress.js';
import type { InstallStep, LayerSource } from './types.js';

/** Parallel layer downloads (as `cpm pull`). */
const CONCURRENCY = 4;

export async function prefetchLayers(
  steps: readonly InstallStep[],
  reporter: Reporter,
): Promise<void> {
  const remote = new Map<string, { id: string; layer: LayerSource }>();
  for (const s of steps)
    for (const layer of s.layers)
      if (layer.fetch && !remote.has(layer.digest))
        remote.set(layer.digest, { id: packageId(s.spec), layer });
  if (remote.size === 0) return;
  const todo: Array<{ id: string; layer: LayerSource; bytes: number }> = [];
  for (const r of remote.values()) {
    const bytes = await r.layer.fetch!.missing();
    if (bytes > 0) todo.push({ ...r, bytes });
  }
  if (todo.length === 0) return;
  reporter.phase('download', {
    total: todo.reduce((n, t) => n + t.bytes, 0),
    items: todo.length,
    noun: 'layer',
  });
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < todo.length) {
      const t = todo[next++]!;
      const task = reporter.task('download', t.id, { total: t.bytes, digest: t.layer.digest });
      try {
        await t.layer.fetch!.run(task);
      } catch (e) {
        // the display drops its line (a failed task would otherwise stay shown as running)
        task.cancel();
        failed = true;
        throw e;
      }
      task.finish();
    }
  };
  const results = await Promise.allSettled(
    Array.from({ length: Math.min(CONCURRENCY, todo.length) }, worker),
  );
  const bad = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (bad) throw bad.reason;
}
