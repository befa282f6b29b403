/**
 * resolveInRoot walks an entry's own components without concatenating (the common case) and
 * falls back to the general walk at the first symlink or dot component. Both must give what a
 * plain component-by-component walk with chroot semantics gives, errors included: checked here
 * on random trees full of symlinks (relative, absolute, climbing, looping, dangling) and files
 * in the way.
 */
import { describe, expect, it } from 'vitest';
import {
  UnsafePathError,
  resolveInRoot,
  type NodeInfo,
  type PathView,
} from '../../src/rootfs/fs-path.js';

/** The walk spelled out: a stack of components, the path so far as a list. */
function plain(view: PathView, comps: string[], followLast: boolean): string {
  const cur: string[] = [];
  const todo = comps.slice().reverse();
  let links = 0;
  while (todo.length > 0) {
    const c = todo.pop()!;
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (cur.length === 0) throw new UnsafePathError('symlink points above the root');
      cur.pop();
      continue;
    }
    const rel = [...cur, c].join('/');
    const last = todo.length === 0;
    const node = view.lookup(rel);
    if (node && node.type === 'l' && (!last || followLast)) {
      if (++links > 40) throw new UnsafePathError(`too many levels of symlinks at /${rel}`);
      const target = node.target ?? '';
      let t = target.split('/').filter((x) => x !== '' && x !== '.');
      if (target.startsWith('/')) {
        cur.length = 0;
        const out: string[] = [];
        let depth = 0;
        for (const x of t) {
          if (x === '..') {
            if (depth === 0) continue;
            depth--;
          } else depth++;
          out.push(x);
        }
        t = out;
      }
      for (let i = t.length - 1; i >= 0; i--) todo.push(t[i]!);
      continue;
    }
    if (node && !last && node.type !== 'd') throw new UnsafePathError(`/${rel} is not a directory`);
    cur.push(c);
  }
  return cur.join('/');
}

/** A small deterministic generator, so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

const NAMES = ['a', 'b', 'usr', 'lib', 'x'];

function randomTree(r: () => number): Map<string, NodeInfo> {
  const nodes = new Map<string, NodeInfo>();
  const pick = <T>(l: T[]): T => l[Math.floor(r() * l.length)]!;
  const dirs = [''];
  for (let i = 0; i < 25; i++) {
    const parent = pick(dirs);
    const rel = parent === '' ? pick(NAMES) : `${parent}/${pick(NAMES)}`;
    if (nodes.has(rel)) continue;
    const k = r();
    if (k < 0.45) {
      nodes.set(rel, { type: 'd' });
      dirs.push(rel);
    } else if (k < 0.6) nodes.set(rel, { type: 'f' });
    else {
      const n = 1 + Math.floor(r() * 3);
      const parts: string[] = [];
      for (let j = 0; j < n; j++) parts.push(r() < 0.25 ? '..' : r() < 0.1 ? '.' : pick(NAMES));
      nodes.set(rel, { type: 'l', target: (r() < 0.35 ? '/' : '') + parts.join('/') });
    }
  }
  return nodes;
}

function outcome(fn: () => string): string {
  try {
    return `= ${fn()}`;
  } catch (e) {
    if (e instanceof UnsafePathError) return `! ${e.message}`;
    throw e;
  }
}

describe('resolveInRoot', () => {
  it('gives what the plain walk gives, on random trees with symlinks', () => {
    let checked = 0;
    let viaLinks = 0;
    for (let seed = 1; seed <= 1500; seed++) {
      const r = rng(seed);
      const nodes = randomTree(r);
      const view: PathView = {
        lookup: (rel) => (rel === '' ? { type: 'd' } : (nodes.get(rel) ?? null)),
      };
      for (let q = 0; q < 20; q++) {
        const n = Math.floor(r() * 5);
        const comps: string[] = [];
        for (let j = 0; j < n; j++) comps.push(NAMES[Math.floor(r() * NAMES.length)]!);
        if (r() < 0.1) comps.splice(Math.floor(r() * (n + 1)), 0, r() < 0.5 ? '.' : '');
        for (const followLast of [false, true]) {
          const want = outcome(() => plain(view, comps, followLast));
          const got = outcome(() => resolveInRoot(view, comps, followLast));
          if (got !== want)
            throw new Error(
              `seed ${seed}: ${JSON.stringify(comps)} ${followLast}: ${got} ≠ ${want}`,
            );
          checked++;
          if (want !== `= ${comps.filter((c) => c !== '' && c !== '.').join('/')}`) viaLinks++;
        }
      }
    }
    expect(checked).toBe(60000);
    // the trees do lead through symlinks and into refusals, not only the straight walk
    expect(viaLinks).toBeGreaterThan(10000);
  });

  it('returns the joined name as one flat string when no symlink is on the way', () => {
    const view: PathView = { lookup: (rel) => (rel === 'usr' ? { type: 'd' } : null) };
    expect(resolveInRoot(view, ['usr', 'share', 'doc'], false)).toBe('usr/share/doc');
    expect(resolveInRoot(view, [], false)).toBe('');
    expect(() => resolveInRoot({ lookup: () => ({ type: 'f' }) }, ['etc', 'x'], false)).toThrow(
      '/etc is not a directory',
    );
  });
});
