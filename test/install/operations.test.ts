/**
 * Install operations through the library, on cpm's own packages-tree built into a real dir://
 * repository (real package images, real layers), into fresh temp roots.
 */
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig, type CpmConfig } from '../../src/config.js';
import { CpmError } from '../../src/errors.js';
import { cleanup } from '../../src/upkeep/cleanup.js';
import { listInstalled, verify } from '../../src/upkeep/query.js';
import {
  planOperation,
  runOperation,
  type OperationContext,
  type OperationOptions,
} from '../../src/install/operations.js';
import { reclaim } from '../../src/install/reclaim.js';
import type { PackageSource } from '../../src/install/source.js';
import { createFromTree } from '../../src/repo/create.js';
import { planToJson, resolve } from '../../src/resolver/index.js';
import { makeRequest } from '../../src/resolver/request.js';
import { loadTree, projectTreeDir } from '../../src/tree/tree.js';
import { failure, tmpDir } from './helpers.js';

const TREE = projectTreeDir();
const COS = (v: string, f: string): string =>
  readFileSync(path.join(TREE, 'system/cos-setup', v, 'root', f), 'utf8');

let cfg: CpmConfig;
let repoUrl: string;
let indexDigests: Map<string, string>;

function ctx(
  root: string,
  source: PackageSource = { kind: 'repo', urls: [repoUrl] },
): OperationContext {
  return { root, dbDir: path.join(root, 'var/lib/cpm'), config: cfg, source };
}
const quiet: OperationOptions = { noFinalizers: true };
const dbText = (root: string): string =>
  readFileSync(path.join(root, 'var/lib/cpm/installed'), 'utf8');

beforeAll(async () => {
  const dir = tmpDir('cpm-ops-');
  cfg = {
    ...defaultConfig(),
    cache_dir: path.join(dir, 'cache'),
    repos_confdir: [path.join(dir, 'repos.conf.d')],
  };
  const out = path.join(dir, 'repo');
  const r = await createFromTree(TREE, { output: `dir://${out}`, cacheDir: cfg.cache_dir });
  repoUrl = `dir://${out}`;
  indexDigests = new Map(
    r.index.packages.map((p) => [
      `${p.category}/${p.name}@${p.version}`,
      p.image?.manifestDigest ?? '',
    ]),
  );
});

describe('install operations (library)', () => {
  it('install, no-op, upgrade, reinstall, uninstall --full on a fresh root', async () => {
    const root = tmpDir();
    const r = await runOperation(ctx(root), 'install', ['system/cos-setup@1.0.0'], quiet);
    expect(r.transaction?.installed).toEqual([
      'system/base-config@1.1.0',
      'system/cloud-config-defaults@1.1.0',
      'system/cos-setup@1.0.0',
    ]);
    expect(readFileSync(path.join(root, 'usr/bin/cos-setup'), 'utf8')).toBe(
      COS('1.0.0', 'usr/bin/cos-setup'),
    );
    const pkgs = listInstalled({ root });
    expect(pkgs.map((p) => [p.id, p.reason, p.origin])).toEqual([
      ['system/base-config@1.1.0', 'dependency', 'repo'],
      ['system/cloud-config-defaults@1.1.0', 'dependency', 'repo'],
      ['system/cos-setup@1.0.0', 'explicit', 'repo'],
    ]);
    for (const p of pkgs) expect(p.imageDigest).toBe(indexDigests.get(p.id));
    const cos = pkgs.find((p) => p.spec.name === 'cos-setup')!;
    expect(cos.files.find((f) => f.path === 'usr/bin/cos-setup')).toMatchObject({
      type: 'f',
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    expect(await verify({ root })).toMatchObject({ problems: [] });

    // the same request again changes nothing, not even the DB bytes
    const before = dbText(root);
    const again = await runOperation(ctx(root), 'install', ['system/cos-setup@1.0.0'], quiet);
    expect(again.planned.noop).toBe(true);
    expect(again.transaction).toBeNull();
    expect(dbText(root)).toBe(before);

    // installing what is there as a dependency changes no file, only its reason (apk, dnf mark)
    const root2 = tmpDir();
    await runOperation(ctx(root2), 'install', ['system/cos-setup@1.0.0'], quiet);
    const db2 = dbText(root2);
    const mark = await runOperation(ctx(root2), 'install', ['system/base-config'], quiet);
    expect(mark.transaction?.installed).toEqual([]);
    expect(mark.transaction?.markedExplicit).toEqual(['system/base-config@1.1.0']);
    // one record changed: base-config's, its reason (and with it the head line's checksum and
    // the end line's byte count)
    const old = db2.split('\n');
    const changed = dbText(root2)
      .split('\n')
      .filter((l, i) => l !== old[i] && !/^\{"cpm-db-(head|end)":/.test(l));
    expect(changed).toHaveLength(1);
    expect(changed[0]).toContain('"reason":"explicit"');
    expect(changed[0]).toContain('system/base-config');
    expect(listInstalled({ root: root2 }).find((p) => p.spec.name === 'base-config')?.reason).toBe(
      'explicit',
    );
    const twice = await runOperation(ctx(root2), 'install', ['system/base-config'], quiet);
    expect(twice.transaction).toBeNull();

    const up = await runOperation(ctx(root), 'upgrade', [], quiet);
    expect(up.transaction?.installed).toEqual(['system/cos-setup@1.1.0']);
    expect(up.transaction?.removed).toEqual(['system/cos-setup@1.0.0']);
    expect(readFileSync(path.join(root, 'usr/bin/cos-setup'), 'utf8')).toBe(
      COS('1.1.0', 'usr/bin/cos-setup'),
    );
    expect(listInstalled({ root }).find((p) => p.spec.name === 'cos-setup')?.reason).toBe(
      'explicit',
    );

    writeFileSync(path.join(root, 'usr/bin/cos-setup'), 'tampered\n');
    const bad = await verify({ root });
    expect(bad.problems.map((p) => [p.kind, p.path])).toEqual([['modified', '/usr/bin/cos-setup']]);
    const re = await runOperation(ctx(root), 'reinstall', ['system/cos-setup'], quiet);
    expect(re.transaction?.installed).toEqual(['system/cos-setup@1.1.0']);
    expect(await verify({ root })).toMatchObject({ problems: [] });

    const un = await runOperation(ctx(root), 'uninstall', ['system/cos-setup'], { full: true });
    expect(un.transaction?.removed).toEqual([
      'system/base-config@1.1.0',
      'system/cloud-config-defaults@1.1.0',
      'system/cos-setup@1.1.0',
    ]);
    expect(listInstalled({ root })).toEqual([]);
    // nothing but cpm's own DB is left
    expect(readdirSync(root)).toEqual(['var']);
  });

  it('--dry-run plans exactly as `cpm plan` and touches nothing', async () => {
    const root = path.join(tmpDir(), 'not-yet');
    const planned = await planOperation(ctx(root), 'install', ['system/cos-setup'], quiet);
    await planned.repos?.close();
    const tree = await loadTree(TREE);
    const expected = planToJson(
      resolve(tree.universe, [], makeRequest('install', ['system/cos-setup'])),
    );
    expect(planned.json).toEqual(expected);
    expect(planned.json.install).toContain('system/cos-setup@1.1.0');
    expect(existsSync(root)).toBe(false);
  });

  it('unsatisfiable and unknown requests fail with plain words and change nothing', async () => {
    const root = tmpDir();
    const e = await failure(
      runOperation(
        ctx(root),
        'install',
        ['system/grub-config', 'system/systemd-boot-config'],
        quiet,
      ),
    );
    expect(e.code).toBe('E_UNSAT');
    expect(e.message).toMatch(/conflicts with system\/systemd-boot-config/);
    const n = await failure(runOperation(ctx(root), 'install', ['nope/missing'], quiet));
    expect(n).toBeInstanceOf(CpmError);
    expect(n.code).toBe('E_NOT_FOUND');
    expect(n.message).toMatch(/nope\/missing: no such package/);
    expect(existsSync(path.join(root, 'var'))).toBe(false);
  });

  it('the same install gives the same DB bytes in another root', async () => {
    const a = tmpDir();
    const b = tmpDir();
    await runOperation(ctx(a), 'install', ['system/cos-setup', 'system/grub-config'], quiet);
    await runOperation(ctx(b), 'install', ['system/grub-config', 'system/cos-setup'], quiet);
    expect(dbText(b)).toBe(dbText(a));
    expect(dbText(a)).not.toMatch(new RegExp(a.replace(/[/.]/g, '\\$&')));
  });

  it('--tree builds a cached repository and installs from it', async () => {
    const root = tmpDir();
    const src: PackageSource = { kind: 'tree', dirs: [TREE] };
    const r = await runOperation(ctx(root, src), 'install', ['system/cos-setup@1.1.0'], quiet);
    expect(r.transaction?.installed).toContain('system/cos-setup@1.1.0');
    expect(listInstalled({ root }).map((p) => p.origin)).toEqual([
      'packages-tree',
      'packages-tree',
      'packages-tree',
    ]);
    // same images as the repository built from the same tree
    for (const p of listInstalled({ root })) expect(p.imageDigest).toBe(indexDigests.get(p.id));
    expect(readdirSync(path.join(cfg.cache_dir, 'trees'))).toHaveLength(1);
  });

  it('--tree twice merges the trees; --values renders them (here: a payload filter)', async () => {
    const extra = path.join(tmpDir('cpm-ops-extra-'), 'extra-tree');
    const files: Record<string, string> = {
      'hello/definition.yaml':
        'category: app\nname: hello\nversion: "1"\nrequires:\n  - {category: system, name: cos-setup, version: ">=1.1"}\n',
      // the values file says which payload file to leave out
      'hello/build.yaml': 'excludes:\n  - "{{ .Values.drop }}"\n',
      'hello/root/etc/hello': 'hi\n',
      'hello/root/etc/drop-me': 'left out\n',
    };
    for (const [f, text] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(extra, f)), { recursive: true });
      writeFileSync(path.join(extra, f), text);
    }
    const values = path.join(path.dirname(extra), 'values.yaml');
    writeFileSync(values, 'drop: "^/etc/drop-me$"\n');
    const root = tmpDir();
    const src: PackageSource = { kind: 'tree', dirs: [extra, TREE], values: [values] };
    const r = await runOperation(ctx(root, src), 'install', ['app/hello'], quiet);
    expect(r.transaction?.installed).toEqual(
      expect.arrayContaining(['app/hello@1', 'system/cos-setup@1.1.0']),
    );
    expect(readFileSync(path.join(root, 'etc/hello'), 'utf8')).toBe('hi\n');
    expect(existsSync(path.join(root, 'etc/drop-me'))).toBe(false);
    expect(listInstalled({ root }).find((p) => p.id === 'app/hello@1')?.origin).toBe(
      'extra-tree_packages-tree',
    );
    // its own cached repository: the single-tree one is not repacked for the merged set
    expect(readdirSync(path.join(cfg.cache_dir, 'trees'))).toHaveLength(2);
  });

  it('reclaim adopts files already in a root; cleanup prunes the cache', async () => {
    const src = tmpDir();
    await runOperation(ctx(src), 'install', ['system/cos-setup'], quiet);
    const root = tmpDir();
    cpSync(src, root, { recursive: true });
    rmSync(path.join(root, 'var/lib/cpm'), { recursive: true });
    writeFileSync(path.join(root, 'etc/cos/extra'), 'not from a package\n');
    const dry = await reclaim(ctx(root), { dryRun: true });
    expect(dry.adopted).toEqual([
      'system/base-config@1.1.0',
      'system/cloud-config-defaults@1.1.0',
      'system/cos-setup@1.1.0',
    ]);
    expect(existsSync(path.join(root, 'var/lib/cpm/installed'))).toBe(false);
    const r = await reclaim(ctx(root));
    expect(r.adopted).toEqual(dry.adopted);
    const pkgs = listInstalled({ root });
    expect(pkgs.map((p) => [p.id, p.reason])).toEqual([
      ['system/base-config@1.1.0', 'dependency'],
      ['system/cloud-config-defaults@1.1.0', 'dependency'],
      ['system/cos-setup@1.1.0', 'explicit'],
    ]);
    const v = await verify({ root });
    expect(v.problems.map((p) => [p.kind, p.path])).toEqual([['foreign', '/etc/cos/extra']]);
    // an older version whose files are not on disk is not adopted
    expect(pkgs.some((p) => p.id === 'system/cos-setup@1.0.0')).toBe(false);

    const before = await cleanup(cfg, { dryRun: true });
    expect(before.bytesFreed).toBeGreaterThan(0);
    const c = await cleanup(cfg);
    expect(c.bytesFreed).toBe(before.bytesFreed);
    expect(existsSync(path.join(cfg.cache_dir, 'trees'))).toBe(false);
    expect((await cleanup(cfg)).bytesFreed).toBe(0);
  });
});
