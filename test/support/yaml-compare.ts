/**
 * Differences between two LoadedYaml results (the fast reader's and the full converter's): values
 * (types, key order), the line of every container and of each key or item, the source text kept
 * for non-string scalars, which objects are shared (aliases), and the warnings. Empty when they
 * are the same.
 */
import type { LoadedYaml } from '../../src/tree/yaml.js';

export function diffLoaded(a: LoadedYaml, b: LoadedYaml): string[] {
  const out: string[] = [];
  // An alias is the very object its anchor made, in both: the same sharing on each side.
  const seenX = new Map<object, object>();
  const seenY = new Map<object, object>();
  const walk = (x: unknown, y: unknown, path: string): void => {
    if (out.length > 20) return;
    if (x === null || typeof x !== 'object' || y === null || typeof y !== 'object') {
      if (!Object.is(x, y) && !(x instanceof Date && y instanceof Date && +x === +y))
        out.push(`${path}: ${String(x)} != ${String(y)}`);
      return;
    }
    if (seenX.has(x) || seenY.has(y)) {
      if (seenX.get(x) !== y || seenY.get(y) !== x) out.push(`${path}: shared differently`);
      return;
    }
    seenX.set(x, y);
    seenY.set(y, x);
    if (Array.isArray(x) !== Array.isArray(y)) {
      out.push(`${path}: list vs map`);
      return;
    }
    const kx = Object.keys(x);
    const ky = Object.keys(y);
    if (kx.join('\0') !== ky.join('\0')) out.push(`${path}: keys ${kx} != ${ky}`);
    const lx0 = a.positions.lineOf(x);
    const ly0 = b.positions.lineOf(y);
    if (lx0 !== ly0) out.push(`${path}: line ${lx0} != ${ly0}`);
    for (const k of ky) {
      const key = Array.isArray(y) ? Number(k) : k;
      const lx = a.positions.lineOf(x, key);
      const ly = b.positions.lineOf(y, key);
      if (lx !== ly) out.push(`${path}.${k}: key line ${lx} != ${ly}`);
      const v = (y as Record<string, unknown>)[k];
      if (typeof v === 'number' || typeof v === 'boolean') {
        const sx = a.positions.sourceOf(x, key);
        const sy = b.positions.sourceOf(y, key);
        if (sx !== sy) out.push(`${path}.${k}: source ${sx} != ${sy}`);
      }
      walk((x as Record<string, unknown>)[k], v, `${path}.${k}`);
    }
  };
  walk(a.value, b.value, '');
  const wa = JSON.stringify(a.warnings);
  const wb = JSON.stringify(b.warnings);
  if (wa !== wb) out.push(`warnings ${wa} != ${wb}`);
  return out;
}
