/**
 * Real luet trees load as luet loads them. Fixtures (YAML only, pinned commits, licences and
 * SOURCE.md in ../shared/fixtures/<name>/): kairos-io/packages (2026-08 and 2023-09),
 * mocaccinoOS desktop, extra and micro, cOS-toolkit, and mudler/luet tests/fixtures.
 *
 * Where the expected numbers come from (luet cannot run here; no Go toolchain):
 * - Package counts follow luet's loader (pkg/tree/{package,collection}.go): filepath.Walk in name
 *   order, one package per definition.yaml, one per collection.yaml entry, and
 *   InMemoryDatabase.CreatePackage keeps the first package of a fingerprint (name-category-version).
 *   Counted independently of cpm by a 20-line PyYAML walk written to those rules (quoted in each
 *   SOURCE.md); luet's installer recipe adds `subpackages:` entries on top.
 * - luet's own tests fix some numbers directly: template_requires loads 7 packages
 *   (pkg/tree/compiler_recipe_test.go), subpackage 4 and subpackage_collection 8 in the installer
 *   recipe (pkg/compiler/compiler_test.go).
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  findPackage,
  lookupDependencyTree,
  lookupPackage,
  treeGraph,
} from '../../src/tree/graph.js';
import { resolve as resolvePlan } from '../../src/resolver/index.js';
import { makeRequest } from '../../src/resolver/request.js';
import { formatProblem } from '../../src/tree/problems.js';
import { loadTree, type LoadedTree } from '../../src/tree/tree.js';
import { packageId } from '../../src/package/package.js';
import { parseRef } from '../../src/package/ref.js';

const F = resolve(dirname(fileURLToPath(import.meta.url)), '../../../shared/fixtures');
const tree = (name: string): string => join(F, name, 'packages');
// These fixtures live in shared/ beside the project (data from public repositories is never
// committed here); a machine whose shared/ predates them skips their tests, and says so.
const have = (...names: string[]): boolean => names.every((n) => existsSync(join(F, n)));
const missing = [
  'kairos-packages',
  'kairos-packages-2023-09',
  'mocaccino-desktop',
  'mocaccino-extra',
  'mocaccino-micro',
  'luet-fixtures',
].filter((n) => !have(n));
if (missing.length > 0)
  console.warn(`luet-trees: skipping the tests of missing fixtures in ${F}: ${missing.join(', ')}`);

let savedEpoch: string | undefined;
beforeAll(() => {
  savedEpoch = process.env.SOURCE_DATE_EPOCH;
  process.env.SOURCE_DATE_EPOCH = '1700000000';
});
afterAll(() => {
  if (savedEpoch === undefined) delete process.env.SOURCE_DATE_EPOCH;
  else process.env.SOURCE_DATE_EPOCH = savedEpoch;
});

describe('package counts match luet (first of a fingerprint kept)', () => {
  for (const [name, values, count] of [
    ['kairos-packages', 'values/amd64.yaml', 27],
    ['kairos-packages-2023-09', 'values/amd64.yaml', 77],
    ['mocaccino-desktop', 'values/amd64.yaml', 349],
    ['mocaccino-extra', 'values/amd64.yaml', 52],
    ['mocaccino-micro', 'arches/amd64/values.yaml', 40],
    ['cos-toolkit-tree', 'values/green-x86_64.yaml', 77],
  ] as const) {
    it.skipIf(!have(name))(`${name} with ${values}: ${count} packages, no problems`, async () => {
      const t = await loadTree(tree(name), { values: [join(F, name, values)] });
      expect(t.problems.map(formatProblem)).toEqual([]);
      expect(t.packages).toHaveLength(count);
    });
  }

  it.skipIf(!have('kairos-packages-2023-09'))(
    'kairos 2023-09: the repeated toolchain-go stanzas are dropped with a warning each',
    async () => {
      const t = await loadTree(tree('kairos-packages-2023-09'), {
        values: [join(F, 'kairos-packages-2023-09/values/amd64.yaml')],
      });
      const repeats = t.warnings.filter((w) => / identically; the first is kept/.test(w.message));
      expect(repeats.map((w) => `${w.file}:${w.line}`)).toEqual([
        'packages/toolchain-go/collection.yaml:14',
        'packages/toolchain-go/collection.yaml:20',
        'packages/toolchain-go/collection.yaml:38',
        'packages/toolchain-go/collection.yaml:44',
      ]);
    },
  );

  it.skipIf(!have('mocaccino-desktop', 'mocaccino-extra'))(
    'mocaccino desktop + extra merge as luet --tree A --tree B: 349 + 52 = 401',
    async () => {
      const t = await loadTree([tree('mocaccino-desktop'), tree('mocaccino-extra')], {
        values: [
          join(F, 'mocaccino-desktop/values/amd64.yaml'),
          join(F, 'mocaccino-extra/values/amd64.yaml'),
        ],
      });
      expect(t.problems.map(formatProblem)).toEqual([]);
      expect(t.packages).toHaveLength(401);
      expect(t.dirs).toHaveLength(2);
      // Shown from the trees' common directory, so the two packages/ stay apart.
      expect(t.packages.some((p) => p.definitionFile.startsWith('mocaccino-extra/packages/'))).toBe(
        true,
      );
    },
  );

  it.skipIf(!have('mocaccino-extra'))(
    'a package in two trees: the first tree wins, with a warning',
    async () => {
      const t = await loadTree([tree('mocaccino-extra'), tree('mocaccino-extra')], {
        values: [join(F, 'mocaccino-extra/values/amd64.yaml')],
      });
      expect(t.packages).toHaveLength(52);
      expect(t.warnings.filter((w) => /also in an earlier tree/.test(w.message))).toHaveLength(52);
    },
  );
});

describe.skipIf(!have('kairos-packages'))('kairos-io/packages (2026-08)', () => {
  it('renders utils/luet with sprig dateInZone/now and loads linux-rpi rpi-6.6.y-1', async () => {
    const t = await loadTree(tree('kairos-packages'), {
      values: [join(F, 'kairos-packages/values/amd64.yaml')],
    });
    const luet = findPackage(t.universe, parseRef('utils/luet'));
    expect(luet.build?.spec?.steps[0]).toContain(
      '-X github.com/mudler/luet/cmd.BuildTime=2023-11-14T22:13:20Z',
    );
    const rpi = findPackage(t.universe, parseRef('kernels/linux-rpi'));
    expect(rpi.version).toBe('rpi-6.6.y-1');
    expect(t.warnings.map(formatProblem)).toContain(
      'packages/kernels/linux-rpi/collection.yaml:4: packages[0].version: "rpi-6.6.y-1" is not a Debian-style version; loaded as luet does: it sorts below every valid version and only "=rpi-6.6.y-1" or an any-version selector matches it',
    );
  });
});

describe('cOS toolkit: a provided package resolves to its provider (luet FindPackage)', () => {
  // luet's InMemoryDatabase.FindPackage/FindPackages (pkg/database/database_mem.go) ask getProvide
  // first: a request whose name a package provides, at a version the provided version or range
  // accepts, is answered by that provider. The solver, `luet build` and `luet tree pkglist --deps`
  // all look packages up that way. cOS: system/cos-wrapper provides utils/installer ">=0", and the
  // real utils/installer is 0.30.0, inside that range.
  const values = [join(F, 'cos-toolkit-tree/values/green-x86_64.yaml')];
  let t: LoadedTree;
  beforeAll(async () => {
    // A second tree (merged as luet --tree A --tree B) with packages that require the provided
    // names: utils/installer by a range, grub-config (provided by system/grub2-config as
    // ">0.0.12", no real package of that name) by the same range and by a disjoint one.
    const extra = join(mkdtempSync(join(tmpdir(), 'cpm-provides-')), 'packages');
    const pkg = (name: string, req: string): void => {
      mkdirSync(join(extra, name), { recursive: true });
      writeFileSync(
        join(extra, name, 'definition.yaml'),
        `category: test\nname: ${name}\nversion: "1"\nrequires:\n  - ${req}\n`,
      );
    };
    pkg('needs-installer', '{category: utils, name: installer, version: ">=0.1"}');
    pkg('needs-grub-config', '{name: grub-config, version: ">0.0.12"}');
    pkg('needs-old-grub-config', '{name: grub-config, version: "<0.0.12"}');
    t = await loadTree([tree('cos-toolkit-tree'), extra], { values });
    expect(t.problems.map(formatProblem)).toEqual([]);
  });

  it('utils/installer renders, and has the requires of, system/cos-wrapper; --own its own', () => {
    const hit = lookupPackage(t.universe, parseRef('utils/installer'));
    expect(packageId(hit.pkg)).toBe('system/cos-wrapper@0.32-16');
    expect(hit.provides).toBe('utils/installer');
    expect(hit.pkg.build?.spec?.steps).toEqual([
      'cp -rfv installer.sh /usr/sbin/cos-installer && chmod +x /usr/sbin/cos-installer',
      'cp -rfv upgrade.sh /usr/sbin/cos-upgrade && chmod +x /usr/sbin/cos-upgrade',
      'cp -rfv reset.sh /usr/sbin/cos-reset && chmod +x /usr/sbin/cos-reset',
      'cp -rfv deploy.sh /usr/sbin/cos-deploy && chmod +x /usr/sbin/cos-deploy',
    ]);
    // packages/cos-wrapper/definition.yaml requires toolchain/elemental-cli >0.20220216 only
    const deps = lookupDependencyTree(t.universe, parseRef('utils/installer'));
    expect(deps.closure).toEqual(['toolchain/elemental-cli@0.20230217']);
    expect(deps.root).toMatchObject({
      id: 'system/cos-wrapper@0.32-16',
      providedBy: 'utils/installer',
    });
    // packages/backports/installer/definition.yaml: luet-mtree, elemental-cli, luet-cosign (which
    // requires cosign), grub2-config, cos-config
    const own = lookupDependencyTree(t.universe, parseRef('utils/installer'), true);
    expect(packageId(own.pkg)).toBe('utils/installer@0.30.0');
    expect(own.closure).toEqual([
      'system/cos-config@0.1.0-7',
      'system/grub2-config@0.1.1',
      'toolchain/cosign@1.13.1-4',
      'toolchain/elemental-cli@0.20230217',
      'toolchain/luet-cosign@0.0.11-10',
      'toolchain/luet-mtree@0.0.10-7',
    ]);
  });

  it('a requirement of a provided name resolves to the provider in deps, graph and plan', () => {
    const need = lookupDependencyTree(t.universe, parseRef('test/needs-installer'));
    expect(need.closure).toEqual([
      'system/cos-wrapper@0.32-16',
      'toolchain/elemental-cli@0.20230217',
    ]);
    expect(need.root.children[0]).toMatchObject({
      id: 'system/cos-wrapper@0.32-16',
      providedBy: 'utils/installer',
    });
    // same provide string (luet: its exact key) → the provider; a disjoint range → nothing
    const grub = lookupDependencyTree(t.universe, parseRef('test/needs-grub-config'));
    expect(grub.closure).toEqual(['system/grub2-config@0.1.1']);
    const old = lookupDependencyTree(t.universe, parseRef('test/needs-old-grub-config'));
    expect(old.closure).toEqual([]);
    expect(old.unresolved).toEqual([
      'grub-config <0.0.12 (required by test/needs-old-grub-config@1)',
    ]);
    const edges = treeGraph(t.universe).edges.filter((e) => e.from.startsWith('test/'));
    expect(edges.map((e) => `${e.from} -> ${e.to}`)).toEqual([
      'test/needs-grub-config@1 -> system/grub2-config@0.1.1',
      'test/needs-installer@1 -> system/cos-wrapper@0.32-16',
      'test/needs-old-grub-config@1 -> grub-config',
    ]);
    // the resolver uses the same rule: installing it installs the provider, not utils/installer
    const plan = resolvePlan(t.universe, [], makeRequest('install', ['test/needs-installer']));
    expect(plan.install.sort()).toEqual([
      'system/cos-wrapper@0.32-16',
      'test/needs-installer@1',
      'toolchain/elemental-cli@0.20230217',
    ]);
  });
});

describe.skipIf(!have('luet-fixtures'))("luet's own tests/fixtures", () => {
  const root = join(F, 'luet-fixtures/fixtures');
  // Values files the luet integration tests write for these fixtures (tests/integration/22_*.sh,
  // 01_simple_docker.sh): bb: "ttt", extra: "bar". Without them luet prints "<no value>".
  const values: Record<string, Record<string, string>> = {
    build_values: { bb: 'ttt' },
    build_values_nested: { bb: 'ttt' },
    docker_repo: { extra: 'bar' },
  };

  it.each([
    ['template_requires', 7],
    ['subpackage', 4],
    ['subpackage_collection', 8],
  ])("%s: %d packages (luet's Go tests)", async (name, count) => {
    const t = await loadTree(join(root, name));
    expect(t.problems.map(formatProblem)).toEqual([]);
    expect(t.packages).toHaveLength(count);
  });

  it('subpackages carry their include/exclude filter and their parent', async () => {
    const t = await loadTree(join(root, 'subpackage'));
    const baz = findPackage(t.universe, parseRef('test/baz'));
    expect(baz.subpackageOf).toBe('test/alpine@1.0');
    expect(baz.filter).toEqual({ includes: ['usr/bin/cksum'], excludes: [] });
  });

  it('every fixture directory with YAML loads without problems: 192 packages in all', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dirs = readdirSync(root).filter((d) => readdirSync(join(root, d)).length > 0);
    let total = 0;
    const bad: string[] = [];
    for (const d of dirs) {
      const v = values[d];
      let vals: string[] = [];
      if (v) {
        const f = join(mkdtempSync(join(tmpdir(), 'cpm-luetfx-')), 'default.yaml');
        writeFileSync(
          f,
          Object.entries(v)
            .map(([k, x]) => `${k}: "${x}"\n`)
            .join(''),
        );
        vals = [f];
      }
      const t = await loadTree(join(root, d), { values: vals });
      bad.push(...t.problems.map(formatProblem));
      total += t.packages.length;
    }
    expect(bad).toEqual([]);
    // 67 of luet's 71 fixture directories hold YAML; dockerfiles, overlay, parser and plugin hold
    // Dockerfiles, ebuilds and a plugin script (not trees cpm reads). 183 packages by the counting
    // rule above, plus 9 subpackages.
    expect(dirs).toHaveLength(67);
    expect(total).toBe(192);
    expect(existsSync(join(root, 'dockerfiles'))).toBe(false);
  });
});
