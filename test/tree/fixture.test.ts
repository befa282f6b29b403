/**
 * The real-world luet tree (cOS-toolkit, 77 packages): everything must load, the meta/cos-minimal
 * closure must be right, and every build spec must render with every flavor's values file.
 * Anything the tree uses that cpm does not support fails here by name; nothing is skipped.
 */
import { readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { dependencyTree, findPackage } from '../../src/tree/graph.js';
import { packageId } from '../../src/package/package.js';
import { formatProblem } from '../../src/tree/problems.js';
import { parseRef } from '../../src/package/ref.js';
import { loadTree, type LoadedTree } from '../../src/tree/tree.js';

const FIXTURE = resolve(
  dirname(fileURLToPath(import.meta.url)),
  '../../../shared/fixtures/cos-toolkit-tree',
);
const TREE = join(FIXTURE, 'packages');
const FLAVORS = readdirSync(join(FIXTURE, 'values'))
  .filter((f) => f.endsWith('.yaml'))
  .sort();

// Read off the YAML by hand: meta/cos-minimal → cos-core (toolchain, cos-modules, suc-integration)
// and system/cloud-config (12 cloud-config/* stanzas, each requiring system/cos-setup).
const COS_MINIMAL_CLOSURE = [
  'cloud-config/accounting@0.4.2-8',
  'cloud-config/boot-assessment@0.4.2-8',
  'cloud-config/branding@0.4.2-8',
  'cloud-config/default-services@0.4.2-8',
  'cloud-config/defaults@0.4.2-8',
  'cloud-config/live@0.4.2-8',
  'cloud-config/network@0.4.2-8',
  'cloud-config/recovery@0.4.2-8',
  'cloud-config/rootfs@0.4.2-8',
  'cloud-config/selinux@0.4.2-8',
  'cloud-config/upgrade_grub_hooks@0.4.2-8',
  'cloud-config/upgrades@0.4.2-8',
  'meta/cos-core@0.24.1',
  'meta/cos-modules@0.24.1',
  'meta/toolchain@0.24.1',
  'system/base-dracut-modules@0.2.0-6',
  'system/cloud-config@0.24.1',
  'system/cos-config@0.1.0-7',
  'system/cos-setup@0.6.5',
  'system/grub2-config@0.1.1',
  'system/immutable-rootfs@0.8.6',
  'system/suc-integration@0.1-16',
  'toolchain/elemental-cli@0.20230217',
  'toolchain/luet@0.33.0-3',
];

describe('cOS-toolkit fixture tree', () => {
  let tree: LoadedTree;
  let bare: LoadedTree;
  beforeAll(async () => {
    tree = await loadTree(TREE, { values: [join(FIXTURE, 'values', FLAVORS[0]!)] });
    bare = await loadTree(TREE);
  });

  it('loads all 77 packages, 13 categories, 13 collections, 40 build specs, no problems', () => {
    expect(tree.problems.map(formatProblem)).toEqual([]);
    expect(bare.packages).toHaveLength(77);
    expect(tree.stats).toEqual({
      packages: 77,
      categories: 13,
      definitions: 27,
      collections: 13,
      buildSpecs: 40,
      finalizers: 0,
    });
    expect(tree.packages).toHaveLength(77);
  });

  it('meta/cos-minimal has its real runtime closure of 24 packages', () => {
    const root = findPackage(tree.universe, parseRef('meta/cos-minimal'));
    const deps = dependencyTree(tree.universe, root);
    expect(deps.closure).toEqual(COS_MINIMAL_CLOSURE);
    expect(deps.unresolved).toEqual([]);
  });

  it('cross-stanza anchors: system/cloud-config lists all 12 cloud configs, merged lists replace', () => {
    const cc = tree.universe.versions('system/cloud-config')[0]!;
    expect(cc.requires.map((d) => `${d.category}/${d.name}`)).toHaveLength(12);
    expect(cc.requires.map((d) => d.name)).toContain('selinux'); // from the *config anchor of cos-light
    const fips = tree.universe.versions('meta/fips-toolchain')[0]!;
    expect(fips.requires.map((d) => `${d.category}/${d.name}`)).toEqual(['toolchain-fips/luet']);
    const recovery = tree.universe.versions('recovery/cos')[0]!;
    expect(recovery.extra.brand_name).toBe('cOS recovery');
    expect(recovery.labels).toEqual({ 'autobump.revdeps': 'true' });
  });

  it('without values, a build spec that prints a missing key is a problem with file:line (missingkey=error)', () => {
    expect(bare.problems.map(formatProblem)).toEqual([
      expect.stringMatching(
        /^packages\/base\/build\.yaml:1: template: \.Values\.image has no value/,
      ),
      expect.stringMatching(
        /^packages\/golang\/build\.yaml:19: .*\.Values\.golang_arch has no value/,
      ),
      expect.stringMatching(
        /^packages\/golang\/build\.yaml:19: .*\.Values\.golang_arch has no value/,
      ),
      expect.stringMatching(
        /^packages\/tool\/build\.yaml:1: template: \.Values\.tool_image has no value/,
      ),
    ]);
    expect(bare.universe.versions('distro/base')[0]!.build?.spec).toBeNull();
  });

  it.each(FLAVORS)('every build spec renders with values/%s', async (flavor) => {
    const t = await loadTree(TREE, { values: [join(FIXTURE, 'values', flavor)] });
    expect(t.problems.map(formatProblem)).toEqual([]);
    const built = t.packages.filter((p) => p.build);
    expect(built).toHaveLength(77); // every package dir has a build.yaml
    for (const p of built) {
      expect(p.build!.rendered, packageId(p)).not.toBeNull();
      expect(p.build!.spec, packageId(p)).not.toBeNull();
      expect(p.build!.rendered, packageId(p)).not.toContain('<no value>');
    }
  });

  it('renders flavor-specific content correctly', async () => {
    const load = (f: string) => loadTree(TREE, { values: [join(FIXTURE, 'values', f)] });
    const [teal, blueArm, greenX86] = await Promise.all([
      load('teal-x86_64.yaml'),
      load('blue-arm64.yaml'),
      load('green-x86_64.yaml'),
    ]);
    const spec = (t: LoadedTree, fam: string) => t.universe.versions(fam)[0]!.build!.spec!;
    const reqs = (t: LoadedTree, fam: string) =>
      spec(t, fam).requires.map((d) => `${d.category}/${d.name}`);

    // {{if eq .Values.codename "teal"}} adds elemental-selinux only for teal
    expect(reqs(teal, 'system/cos')).toContain('system/elemental-selinux');
    expect(reqs(blueArm, 'system/cos')).not.toContain('system/elemental-selinux');
    // recovery/cos-img takes the other branch of the same build.yaml
    expect(spec(teal, 'recovery/cos-img').copy[0]?.package?.name).toBe('cos');
    expect(spec(teal, 'recovery/cos-img').fields.package_dir).toBe('/output');

    // templates/utils.yaml do_checksum: and/has over skip_checksum
    expect(spec(blueArm, 'build/golang').prelude).toContain('echo "Skipping checksum check"');
    expect(spec(teal, 'build/golang').prelude.join('\n')).toContain(
      'c9c08f783325c4cf840a94333159cc937f05f75d36a8b307951d5bd959cf2ab8  golang.tar.gz',
    );
    expect(spec(blueArm, 'build/golang').prelude.join('\n')).toContain('linux-arm64.tar.gz');

    // "golang{{- if .Values.fips -}}-fips{{- end -}}" and golang_download_package with dict/get/default
    expect(reqs(teal, 'toolchain-fips/luet')).toEqual(['build/golang-fips']);
    expect(reqs(teal, 'toolchain/luet')).toEqual(['build/golang']);
    const cosign = spec(teal, 'toolchain/cosign').prelude.join('\n');
    expect(cosign).toContain('PV="v1.13.1-4"');
    expect(cosign).toContain('git clone https://github.com/sigstore/cosign');

    // distro_install_tools via (dict "Values" .Values "Packages" ...)
    expect(spec(greenX86, 'utils/jq').prelude.join('\n')).toContain(
      'autoconf libtool git gcc make',
    );

    // nested if/else if on distribution and arch
    expect(spec(teal, 'system/kernel').unpack).toBe(true);
    expect(spec(blueArm, 'system/kernel').steps).toContain('dnf install -y kernel');
    expect(spec(blueArm, 'firmware/odroid-c2').image).toBe(
      'registry.opensuse.org/opensuse/leap:15.3',
    );
    expect(spec(teal, 'firmware/odroid-c2').image).toBe('registry.opensuse.org/opensuse/leap:15.4');
    expect(spec(teal, 'system/elemental-selinux').steps).toHaveLength(2);
    expect(spec(blueArm, 'system/elemental-selinux').steps).toEqual([]);
  });
});
