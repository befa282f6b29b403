/**
 * `cpm install IMAGE-REF` through bin/cpm.js (like `apk add ./pkg.apk`): a cpm package image from
 * an OCI layout, a plain image without cpm metadata (umoci) pushed to the real registry by skopeo,
 * ownership tracked like any package, mixed with repository packages in one transaction.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTree } from '../support/layers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';
import { PROJECT, skopeoPush, tarOf, umociImage } from './base-images.js';
import { CPM_BIN, cpmCli, tmpDir } from './helpers.js';

let dir: string;
let cfgFile: string;
let reg: RegistryInstance;

const { cpm, ok } = cpmCli(() => cfgFile);

interface Listed {
  id: string;
  reason: string;
  origin: string;
  imageDigest: string;
}

beforeAll(async () => {
  if (!existsSync(path.join(PROJECT, 'dist/cpm.cjs')))
    throw new Error('run `npm run build` first: this test drives bin/cpm.js');
  dir = tmpDir('cpm-imgref-cli-');
  cfgFile = path.join(dir, 'cpm.yaml');
  writeFileSync(cfgFile, 'cache_dir: cache\nrepos_confdir: [repos.conf.d]\n');
  reg = await startRegistry();
});

afterAll(async () => {
  await reg?.stop();
});

describe('cpm install <image reference>', () => {
  it('installs a cpm package image from an OCI layout, with its own identity, and removes it', async () => {
    const payload = await writeTree(path.join(dir, 'agent'), {
      'usr/bin/agent': { content: '#!/bin/sh\necho agent\n', mode: 0o755 },
      'etc/agent/agent.conf': 'interval=10\n',
    });
    const layout = path.join(dir, 'layout');
    ok('pack', payload, '--name', 'agents/demo-agent@2.1.0', '-o', `oci:${layout}:2.1.0`);
    const root = path.join(dir, 'root1');

    const dry = JSON.parse(
      ok('install', `oci:${layout}:2.1.0`, '--root', root, '--dry-run', '--json'),
    ) as {
      install: string[];
      images: string[];
    };
    expect(dry.images).toEqual([`oci:${layout}:2.1.0`]);
    expect(existsSync(path.join(root, 'usr/bin/agent'))).toBe(false);

    ok('install', `oci:${layout}:2.1.0`, '--root', root);
    expect(readFileSync(path.join(root, 'usr/bin/agent'), 'utf8')).toContain('echo agent');
    const listed = (
      JSON.parse(ok('list', '--installed', '--root', root, '--json')) as { packages: Listed[] }
    ).packages;
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ id: 'agents/demo-agent@2.1.0', reason: 'explicit' });
    expect(listed[0]!.imageDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(ok('owns', '/etc/agent/agent.conf', '--root', root)).toContain(
      'agents/demo-agent@2.1.0',
    );
    expect(cpm('verify', '--root', root).code).toBe(0);

    // a second install of the same image is a no-op; uninstall removes exactly its files
    ok('install', `oci:${layout}:2.1.0`, '--root', root);
    ok('uninstall', 'agents/demo-agent', '--root', root);
    expect(existsSync(path.join(root, 'usr/bin/agent'))).toBe(false);
    expect(JSON.parse(ok('list', '--installed', '--root', root, '--json'))).toMatchObject({
      packages: [],
    });
  });

  it('installs a plain image (no cpm metadata) from the registry, named from the reference', async () => {
    const files = await writeTree(path.join(dir, 'plain'), {
      'opt/tool/bin/tool': { content: 'tool\n', mode: 0o755 },
      'opt/tool/README': 'plain image\n',
    });
    const layout = path.join(dir, 'plain-layout');
    umociImage(layout, '1.4.0', [tarOf(files, path.join(dir, 'plain.tar'))]);
    skopeoPush(`${layout}:1.4.0`, `${reg.host}/tools/plain-tool:1.4.0`);

    const root = path.join(dir, 'root2');
    ok('install', `${reg.host}/tools/plain-tool:1.4.0`, '--root', root);
    expect(readFileSync(path.join(root, 'opt/tool/README'), 'utf8')).toBe('plain image\n');
    const listed = (
      JSON.parse(ok('list', '--installed', '--root', root, '--json')) as { packages: Listed[] }
    ).packages;
    expect(listed).toHaveLength(1);
    expect(listed[0]!.id).toMatch(/plain-tool@1\.4\.0$/);
    expect(listed[0]!.origin).toContain('plain-tool');
    const owns = ok('owns', '/opt/tool/bin/tool', '--root', root);
    expect(owns).toContain(listed[0]!.id);
    expect(cpm('verify', '--root', root).code).toBe(0);
  });

  it('a no-op install by tag asks the registry with one HEAD and never loads undici', async () => {
    const src = await writeTree(path.join(dir, 'noop-src'), { 'etc/noop.conf': 'x = 1\n' });
    const ref = `${reg.host}/tools/noop:1`;
    // packed through a cache of its own, so that the first install downloads the blobs
    const packCfg = path.join(dir, 'pack.yaml');
    writeFileSync(packCfg, 'cache_dir: pack-cache\n');
    const packed = spawnSync(
      process.execPath,
      [CPM_BIN, 'pack', src, '--name', 'tools/noop@1', '-o', ref],
      { encoding: 'utf8', env: { ...process.env, CPM_CONFIG: packCfg } },
    );
    expect(packed.status, packed.stderr).toBe(0);
    // a preload that reports every module request naming undici (the bundle's vendor-undici.cjs)
    const preload = path.join(dir, 'report-undici.cjs');
    writeFileSync(
      preload,
      "const M = require('module'); const load = M._load;\n" +
        'M._load = function (r, ...a) { if (/undici/.test(r)) process._rawDebug(`loads ${r}`); ' +
        'return load.call(this, r, ...a); };\n',
    );
    const root = path.join(dir, 'root-noop');
    const run = (): { status: number | null; stdout: string; stderr: string } =>
      spawnSync(process.execPath, ['-r', preload, CPM_BIN, 'install', ref, '--root', root], {
        encoding: 'utf8',
        env: { ...process.env, CPM_CONFIG: cfgFile },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    const first = run(); // pulls the blobs: undici
    expect(first.status).toBe(0);
    expect(first.stderr).toMatch(/loads .*undici/);
    const again = run();
    expect(again.status).toBe(0);
    expect(again.stdout).toContain('nothing to do');
    expect(again.stderr).not.toMatch(/undici/);
  });

  it('names the reference in the error when the image does not exist', () => {
    const root = path.join(dir, 'root3');
    const r = cpm('install', `${reg.host}/tools/missing:9.9`, '--root', root);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain('tools/missing');
    expect(existsSync(path.join(root, 'var/lib/cpm'))).toBe(false);
  });
});
