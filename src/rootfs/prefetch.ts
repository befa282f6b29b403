/**
 * The download phase of a transaction: every remote layer not yet in the cache is fetched before
 * extraction starts, a few at a time (apt and dnf download everything first, then unpack), so the
 * user sees one download total with its rate and ETA, then one extraction total.
 */
import { CpmError } from '../errors.js';
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
  // the first failure ends the phase: the other downloads stop at once (bodies released,
  // partial files removed) instead of running on for an install that has already failed
  const stop = new AbortController();
  let first: unknown;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (!stop.signal.aborted && next < todo.length) {
      const t = todo[next++]!;
      const task = reporter.task('download', t.id, { total: t.bytes, digest: t.layer.digest });
      try {
        await t.layer.fetch!.run(task, stop.signal);
      } catch (e) {
        // the display drops its line (a failed task would otherwise stay shown as running)
        task.cancel();
        if (!stop.signal.aborted) {
          first = layerFailure(e, t.id, t.layer.digest);
          stop.abort(first);
        }
        return;
      }
      task.finish();
    }
  };
  // every worker has cleaned up (its partial removed) before the error is reported
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, todo.length) }, worker));
  if (stop.signal.aborted) throw first;
}

/** A download failure named with the package and layer it was for. */
function layerFailure(e: unknown, id: string, digest: string): unknown {
  if (!(e instanceof CpmError) || e.code === 'E_INTERRUPTED') return e;
  const gone = e.code === 'E_NOT_FOUND';
  return new CpmError(e.code, `downloading layer ${digest} of ${id}: ${e.message}`, {
    ...(e.hint !== undefined
      ? { hint: e.hint }
      : gone
        ? {
            hint: 'the registry no longer holds this layer of the package: refresh the repository (cpm repo update) or publish the package again',
          }
        : {}),
    context: { ...e.context, package: id, digest },
    cause: e,
  });
}
