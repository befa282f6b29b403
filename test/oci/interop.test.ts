/**
 * The CLI (`node bin/cpm.js pack|pull|push`, needs `npm run build`) against a real registry,
 * cross-checked with skopeo and umoci in both directions.
 */
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/oci/blobstore.js';
import { readJsonBlob } from '../../src/oci/image.js';
import { OciLayout } from '../../src/oci/layout.js';
import { readPackageMetadata } from '../../src/oci/package-image.js';
import { RegistryClient } from '../../src/oci/registry.js';
import { MEDIA, type ImageConfig, type ImageManifest } from '../../src/oci/types.js';
import { pseudoRandom, readLayer, tempDir, writeTree } from '../support/layers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';
import { requireBuild, runCpm, type CliResult } from '../support/cli.js';

const run = promisify(execFile);

let reg: RegistryInstance;
let dir: string;
let payload: string;
let env: NodeJS.ProcessEnv;

const cpm = (...args: string[]): Promise<CliResult> => runCpm(args, { env });

async function skopeo(...args: string[]): Promise<string> {
  return (await run('skopeo', args, { maxBuffer: 16 << 20 })).stdout;
}

beforeAll(async () => {
  requireBuild();
  reg = await startRegistry();
  dir = await tempDir();
  env = {
    ...process.env,
    XDG_CACHE_HOME: path.join(dir, 'cache'),
    CPM_CONFIG: path.join(dir, 'cpm.yaml'),
  };
  await fsp.writeFile(env.CPM_CONFIG!, `cache_dir: ${path.join(dir, 'cache', 'cpm')}\n`);
  payload = await writeTree(path.join(dir, 'payload'), {
    'usr/bin/hello': { content: '#!/bin/sh\necho hello\n', mode: 0o755 },
    'etc/hello.conf': 'greeting=hi\n',
    'usr/share/hello/data': pseudoRandom(20_000, 4),
  });
});
afterAll(async () => {
  await reg?.stop();
  await fsp.rm(dir, { recursive: true, force: true });
});

const packArgs = [
  '--name',
  'apps/hello@1.0+1',
  '--requires',
  'system/base@>=1.0',
  '--description',
  'hi',
  '--finalize',
  'echo done',
];

describe('cpm pack / pull / push with skopeo and umoci', () => {
  it.each(['gzip', 'zstd'])(
    'pack is reproducible (%s): two layouts and the registry get one digest',
    async (compression) => {
      const a = await cpm(
        'pack',
        payload,
        ...packArgs,
        '--compression',
        compression,
        '-q',
        '-o',
        `oci:${dir}/rep-a-${compression}:v1`,
      );
      // -q: nothing on stderr (progress is there otherwise; test/cli/progress.test.ts)
      expect(a.err).toBe('');
      expect(a.code).toBe(0);
      const b = await cpm(
        'pack',
        payload,
        ...packArgs,
        '--compression',
        compression,
        '--json',
        '-o',
        `oci:${dir}/rep-b-${compression}:v1`,
      );
      const c = await cpm(
        'pack',
        payload,
        ...packArgs,
        '--compression',
        compression,
        '-o',
        `${reg.host}/apps/hello:1.0-1-${compression}`,
      );
      const digest = a.out.trim().split('@').pop();
      expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(JSON.parse(b.out).digest).toBe(digest);
      expect(c.out.trim().endsWith(`@${digest}`)).toBe(true);
      const la = await fsp.readFile(path.join(dir, `rep-a-${compression}`, 'index.json'), 'utf8');
      const lb = await fsp.readFile(path.join(dir, `rep-b-${compression}`, 'index.json'), 'utf8');
      expect(la).toBe(lb);
    },
  );

  it('skopeo inspects and copies what cpm pushed; digests survive the copy', async () => {
    const ref = `${reg.host}/apps/hello:1.0-1-gzip`;
    const raw = JSON.parse(
      await skopeo('inspect', '--tls-verify=false', '--raw', `docker://${ref}`),
    ) as ImageManifest;
    expect(raw.annotations?.['io.cpm.package.name']).toBe('hello');
    const info = JSON.parse(await skopeo('inspect', '--tls-verify=false', `docker://${ref}`)) as {
      Labels: Record<string, string>;
      Digest: string;
      Architecture: string;
    };
    expect(info.Labels['io.cpm.package.version']).toBe('1.0+1');
    expect(info.Labels['io.cpm.package.requires']).toBe('system/base >=1.0');
    await skopeo('copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${dir}/skopeo-out:t`);
    const lay = await OciLayout.open(path.join(dir, 'skopeo-out'));
    const desc = await lay.resolve('t');
    expect(desc.digest).toBe(info.Digest);
    const man = await readJsonBlob<ImageManifest>(lay.blobs, desc.digest);
    const cfg = await readJsonBlob<ImageConfig>(lay.blobs, man.config.digest);
    const meta = readPackageMetadata(cfg, man);
    expect(meta).toMatchObject({
      category: 'apps',
      name: 'hello',
      version: '1.0+1',
      finalize: { install: ['echo done'] },
    });
    // The layer is a plain tar anyone can read.
    const entries = await readLayer(await lay.blobs.read(man.layers[0]!.digest));
    expect(entries.find((e) => e.name === 'usr/bin/hello')).toMatchObject({ mode: 0o755, uid: 0 });
  });

  it('skopeo reads a cpm layout; cpm pull --output writes a layout skopeo reads; cpm push to the registry', async () => {
    const inspect = JSON.parse(await skopeo('inspect', `oci:${dir}/rep-a-zstd:v1`)) as {
      Labels: Record<string, string>;
    };
    expect(inspect.Labels['io.cpm.package.name']).toBe('hello');
    const p = await cpm(
      'pull',
      `${reg.host}/apps/hello:1.0-1-gzip`,
      '--output',
      `oci:${dir}/pulled`,
    );
    expect(p.code).toBe(0);
    const pulledInfo = JSON.parse(await skopeo('inspect', `oci:${dir}/pulled:1.0-1-gzip`)) as {
      Digest: string;
    };
    expect(p.out.trim().endsWith(pulledInfo.Digest)).toBe(true);
    const q = await cpm('push', `oci:${dir}/rep-a-zstd:v1`, `${reg.host}/apps/pushed:zstd`);
    expect(q.code).toBe(0);
    const pushed = JSON.parse(
      await skopeo(
        'inspect',
        '--tls-verify=false',
        '--raw',
        `docker://${reg.host}/apps/pushed:zstd`,
      ),
    ) as ImageManifest;
    expect(pushed.layers[0]!.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
  });

  it('CLI flags: pull --platform picks from an index; push --chunk-size and --mount-from', async () => {
    const host = process.arch === 'arm64' ? 'arm64' : 'amd64';
    const other = host === 'arm64' ? 'amd64' : 'arm64';
    const digests: Record<string, string> = {};
    for (const arch of ['amd64', 'arm64']) {
      const r = await cpm(
        'pack',
        payload,
        '--name',
        'multi/app@1',
        '--platform',
        `linux/${arch}`,
        '-o',
        `${reg.host}/multi/app:${arch}`,
        '--json',
      );
      expect(r.code).toBe(0);
      digests[arch] = (JSON.parse(r.out) as { digest: string }).digest;
    }
    expect(digests.amd64).not.toBe(digests.arm64);
    const client = new RegistryClient(reg.host, { credentials: null });
    const manifests = [];
    for (const arch of ['amd64', 'arm64']) {
      const m = await client.getManifest('multi/app', digests[arch]!);
      manifests.push({
        mediaType: m.mediaType,
        digest: m.digest,
        size: m.bytes.length,
        platform: { os: 'linux', architecture: arch },
      });
    }
    const index = { schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests };
    await client.putManifest('multi/app', '1', Buffer.from(JSON.stringify(index)), MEDIA.ociIndex);

    const pulled = async (...flags: string[]): Promise<string> => {
      const r = await cpm('pull', `${reg.host}/multi/app:1`, '--json', ...flags);
      expect(r.err).toBe('');
      return (JSON.parse(r.out) as { manifest: { digest: string } }).manifest.digest;
    };
    expect(await pulled()).toBe(digests[host]);
    expect(await pulled('--platform', `linux/${other}`)).toBe(digests[other]);
    const bad = await cpm('pull', `${reg.host}/multi/app:1`, '--platform', 'linux/s390x');
    expect(bad.code).toBe(5);

    // Mount: the layer is already in multi/app, so nothing is uploaded again.
    const m = await cpm(
      'push',
      `${reg.host}/multi/app:amd64`,
      `${reg.host}/multi/mounted:1`,
      '--mount-from',
      'multi/app',
      '--json',
    );
    expect(m.code).toBe(0);
    expect(JSON.parse(m.out)).toMatchObject({ digest: digests.amd64 });
    const amdMan = JSON.parse(
      (await client.getManifest('multi/app', digests.amd64!)).bytes.toString(),
    ) as ImageManifest;
    expect(await client.hasBlob('multi/mounted', amdMan.layers[0]!.digest)).toBe(
      amdMan.layers[0]!.size,
    );

    const c = await cpm(
      'push',
      `oci:${dir}/rep-a-zstd:v1`,
      `${reg.host}/apps/chunked:v1`,
      '--chunk-size',
      '4096',
      '--json',
    );
    expect(c.code).toBe(0);
    const inspected = JSON.parse(
      await skopeo('inspect', '--tls-verify=false', `docker://${reg.host}/apps/chunked:v1`),
    ) as { Digest: string };
    expect(inspected.Digest).toBe((JSON.parse(c.out) as { digest: string }).digest);
    await client.close();
  });

  it('pulls what umoci built (init/new/insert/repack) from the layout and via skopeo from the registry', async () => {
    const layout = path.join(dir, 'umoci');
    await run('umoci', ['init', '--layout', layout]);
    await run('umoci', ['new', '--image', `${layout}:base`]);
    await writeTree(path.join(dir, 'ins'), { 'greeting.txt': 'from umoci\n' });
    await run('umoci', [
      'insert',
      '--image',
      `${layout}:base`,
      path.join(dir, 'ins', 'greeting.txt'),
      '/greeting.txt',
    ]);
    const bundle = path.join(dir, 'bundle');
    await run('umoci', ['unpack', '--image', `${layout}:base`, bundle]);
    await fsp.writeFile(path.join(bundle, 'rootfs', 'second.txt'), 'repacked\n');
    await run('umoci', ['repack', '--image', `${layout}:v2`, bundle]);

    const local = await cpm('pull', `oci:${layout}:v2`, '--json');
    expect(local.err).toBe('');
    const j = JSON.parse(local.out) as { layers: Array<{ digest: string }> };
    expect(j.layers.length).toBe(2);
    const cache = new BlobStore(path.join(dir, 'cache', 'cpm'));
    const second = await readLayer(
      await (await OciLayout.open(layout)).blobs.read(j.layers[1]!.digest),
    );
    expect(second.map((e) => e.name)).toContain('second.txt');

    await skopeo(
      'copy',
      '--dest-tls-verify=false',
      `oci:${layout}:v2`,
      `docker://${reg.host}/umoci/img:v2`,
    );
    const remote = await cpm('pull', `${reg.host}/umoci/img:v2`, '--json');
    expect(remote.code).toBe(0);
    const r = JSON.parse(remote.out) as { layers: Array<{ digest: string }> };
    for (const l of r.layers) expect(await cache.has(l.digest)).toBe(true);
  });

  it('CLI errors carry codes: bad reference, missing tag', async () => {
    const bad = await cpm('pull', 'no-host-here/x:1');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('does not look like a registry host');
    const missing = await cpm('pull', `${reg.host}/apps/hello:nope`, '--json');
    expect(missing.code).toBe(5);
    expect(JSON.parse(missing.out).error.code).toBe('E_NOT_FOUND');
  });
});
