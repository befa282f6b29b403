/**
 * Dependency closures of the cOS-toolkit tree checked against an independent walk of its YAML that
 * follows luet's rules and shares no code with cpm's loader, versions or universe:
 *
 * - Packages (luet pkg/tree/{package,collection}.go, installer recipe): every definition.yaml and
 *   every `packages:` entry of a collection.yaml, walked in name order; YAML merge keys (`<<:`)
 *   resolved as go-yaml does. The runtime requires are the definition's `requires`.
 * - A requirement is looked up as luet's InMemoryDatabase does (pkg/database/database_mem.go):
 *   getProvide first — a package whose `provides` names the requirement with the same version text,
 *   or with a range that contains a real version of the name that the requirement accepts — else
 *   the real package whose version the selector accepts (every family of this tree has one
 *   version, so "newest" never has to choose; asserted below).
 * - `luet tree pkglist --deps` lists what the solver installs for a package minus the package
 *   itself: for a tree without conflicts and one version per family that is exactly the
 *   transitive requires closure computed here.
 *
 * The literal numbers were counted by hand from the YAML files and agree with the walk:
 * meta/cos-minimal → cos-core (toolchain: elemental-cli, luet; cos-modules: cos-config, cos-setup,
 * immutable-rootfs, grub2-config, base-dracut-modules; suc-integration) and system/cloud-config
 * (12 cloud-config/* stanzas, each requiring system/cos-setup): 3 + 2 + 6 + 1 + 12 = 24.
 * meta/cos-core: the 10 of those under cos-core. meta/cos-verify: luet-cosign → cosign = 2.
 * system/cos has no runtime requires at all (its requires are in build.yaml: build time).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { planBuild } from '../../src/build/plan.js';
import { resolve as resolvePlan } from '../../src/resolver/index.js';
import { makeRequest } from '../../src/resolver/request.js';
import { dependencyTree, findPackage, lookupDependencyTree } from '../../src/tree/graph.js';
import { parseRef } from '../../src/package/ref.js';
import { loadTree, type LoadedTree } from '../../src/tree/tree.js';

const FIXTURE = resolve(
  dirname(fileURLToPath(import.meta.url)),
  '../../../shared/fixtures/cos-toolkit-tree',
);
const TREE = join(FIXTURE, 'packages');

interface Ref {
  category?: string;
  name: string;
  version?: string;
}
interface Pkg extends Ref {
  category: string;
  version: string;
  requires?: Ref[];
  provides?: Ref[];
}

/** The tree's packages as luet's installer recipe reads them (first of an id kept). */
function readTree(dir: string): Pkg[] {
  const out: Pkg[] = [];
  const seen = new Set<string>();
  const add = (p: Pkg): void => {
    const key = `${p.category}/${p.name}@${p.version}`;
    if (!seen.has(key)) out.push(p);
    seen.add(key);
  };
  const walk = (d: string): void => {
    const entries = readdirSync(d, { withFileTypes: true }).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    );
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name === 'definition.yaml') add(parse(readFileSync(p, 'utf8'), { merge: true }));
      else if (e.name === 'collection.yaml')
        for (const c of (parse(readFileSync(p, 'utf8'), { merge: true }) as { packages: Pkg[] })
          .packages)
          add(c);
    }
  };
  walk(dir);
  return out.map((p) => ({ ...p, version: String(p.version) }));
}

// The versions the tree's runtime selectors meet are numbers joined by dots and hyphens (anything
// else stops the walk): compared field by field. That is enough for the selectors this tree writes
// (>=0, >0.6.1-1, >0.20220216, <1.0.0, ...).
function fields(v: string): number[] {
  if (!/^\d+([.-]\d+)*$/.test(v)) throw new Error(`the walk cannot compare version "${v}"`);
  return v.split(/[.-]/).map(Number);
}
function compare(a: string, b: string): number {
  const x = fields(a);
  const y = fields(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? -1) - (y[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}
function accepts(selector: string | undefined, v: string): boolean {
  if (!selector) return true;
  const m = /^(>=|<=|>|<|=)?(.+)$/.exec(selector)!;
  if ((m[1] ?? '=') === '=' && m[2] === v) return true; // the same text: equal, whatever it is
  const c = compare(v, m[2]!);
  const op = m[1] ?? '=';
  return { '>=': c >= 0, '<=': c <= 0, '>': c > 0, '<': c < 0, '=': c === 0 }[op]!;
}

const idOf = (p: Pkg): string => `${p.category}/${p.name}@${p.version}`;

function lookup(all: Pkg[], r: Ref): Pkg | undefined {
  const cat = r.category ?? '';
  const real = all.filter((q) => q.category === cat && q.name === r.name);
  for (const p of all)
    for (const pr of p.provides ?? []) {
      if ((pr.category ?? '') !== cat || pr.name !== r.name) continue;
      if ((pr.version ?? '') === (r.version ?? '')) return p;
      if (real.some((q) => accepts(r.version, q.version) && accepts(pr.version, q.version)))
        return p;
    }
  return real.find((q) => accepts(r.version, q.version));
}

function closureOf(all: Pkg[], roots: Pkg[]): { closure: string[]; unresolved: string[] } {
  const seen = new Set<string>();
  const unresolved: string[] = [];
  const visit = (p: Pkg): void => {
    for (const r of p.requires ?? []) {
      const q = lookup(all, r);
      if (!q) unresolved.push(`${r.category ?? ''}/${r.name} ${r.version ?? ''}`);
      else if (!seen.has(idOf(q))) {
        seen.add(idOf(q));
        visit(q);
      }
    }
  };
  roots.forEach(visit);
  return { closure: [...seen].sort(), unresolved };
}

const byFamily = (all: Pkg[], fam: string): Pkg =>
  all.find((p) => `${p.category}/${p.name}` === fam)!;

describe('cOS tree closures agree with an independent walk by luet rules', () => {
  let yaml: Pkg[];
  let t: LoadedTree;
  beforeAll(async () => {
    yaml = readTree(TREE);
    t = await loadTree(TREE, { values: [join(FIXTURE, 'values/teal-x86_64.yaml')] });
  });

  it('the walk sees the same 77 packages, one version per family', () => {
    expect(yaml).toHaveLength(77);
    expect(yaml.map(idOf).sort()).toEqual(
      t.packages.map((p) => `${p.category}/${p.name}@${p.version}`).sort(),
    );
    const families = new Set(yaml.map((p) => `${p.category}/${p.name}`));
    expect(families.size).toBe(77);
  });

  it.each([
    ['meta/cos-minimal', 24],
    ['meta/cos-core', 10],
    ['meta/cos-verify', 2],
    ['meta/toolchain', 2],
    ['system/cos', 0],
  ])('%s: %i packages in the runtime closure', (fam, count) => {
    const mine = closureOf(yaml, [byFamily(yaml, fam)]);
    expect(mine.closure).toHaveLength(count);
    expect(mine.unresolved).toEqual([]);
    const cpm = dependencyTree(t.universe, findPackage(t.universe, parseRef(fam)));
    expect(cpm.closure).toEqual(mine.closure);
    expect(cpm.unresolved).toEqual([]);
    // the resolver installs the package and exactly that closure into an empty root
    const plan = resolvePlan(t.universe, [], makeRequest('install', [fam]));
    expect(plan.install.sort()).toEqual([...mine.closure, idOf(byFamily(yaml, fam))].sort());
  });

  it('every package of the tree: cpm tree deps closure and install plan = the walk closure', () => {
    let total = 0;
    for (const p of yaml) {
      const mine = closureOf(yaml, [p]);
      const cpm = dependencyTree(t.universe, findPackage(t.universe, parseRef(idOf(p))));
      expect(cpm.closure, idOf(p)).toEqual(mine.closure);
      expect(cpm.unresolved, idOf(p)).toEqual(mine.unresolved);
      // installing it installs what luet's lookup answers for it (utils/installer: cos-wrapper)
      const got = lookup(yaml, p)!;
      const plan = resolvePlan(t.universe, [], makeRequest('install', [idOf(p)]));
      expect(plan.install.sort(), idOf(p)).toEqual(
        [...closureOf(yaml, [got]).closure, idOf(got)].sort(),
      );
      total += mine.closure.length;
    }
    // the sum of all 77 closure sizes: one number that moves if any edge or lookup changes
    expect(total).toBe(123);
  });

  it('utils/installer resolves to system/cos-wrapper: luet lists cos-wrapper and elemental-cli', () => {
    // luet pkglist --deps drops only the package of the requested name from the solution
    const mine = closureOf(yaml, [lookup(yaml, { category: 'utils', name: 'installer' })!]);
    const cpm = lookupDependencyTree(t.universe, parseRef('utils/installer'));
    expect(['system/cos-wrapper@0.32-16', ...cpm.closure]).toEqual([
      'system/cos-wrapper@0.32-16',
      ...mine.closure,
    ]);
    expect(mine.closure).toEqual(['toolchain/elemental-cli@0.20230217']);
  });

  it('system/cos (requires_final_images): the image holds its build requires and their runtime closure', async () => {
    // packages/cos/build.yaml, read by hand: distro/base, system/kernel, system/dracut-initrd,
    // meta/cos-minimal, meta/cos-verify, toolchain/luet-mtree, system/cos-features, and for the
    // teal flavour (codename "teal") system/elemental-selinux.
    const common = [
      'distro/base',
      'system/kernel',
      'system/dracut-initrd',
      'meta/cos-minimal',
      'meta/cos-verify',
      'toolchain/luet-mtree',
      'system/cos-features',
    ];
    const expected = (fams: string[]): string[] => {
      const roots = fams.map((f) => byFamily(yaml, f));
      return [...new Set([...roots.map(idOf), ...closureOf(yaml, roots).closure])].sort();
    };
    const teal = expected([...common, 'system/elemental-selinux']);
    const blue = expected(common);
    expect([teal.length, blue.length]).toEqual([34, 33]);
    const finals = async (values: string): Promise<string[]> => {
      const tree = await loadTree(TREE, { values: [join(FIXTURE, 'values', values)] });
      const node = planBuild(tree, ['system/cos']).order.find((n) =>
        n.id.startsWith('system/cos@'),
      )!;
      return node.finals.map((n) => n.id).sort();
    };
    expect(await finals('teal-x86_64.yaml')).toEqual(teal);
    expect(await finals('blue-x86_64.yaml')).toEqual(blue);
  });
});
