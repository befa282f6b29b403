/**
 * TLS: a real registry serving https with a certificate from a CA made here (openssl).
 * Untrusted → E_NETWORK at once with a hint; trusted via `ca` / --ca-file → push and pull work;
 * --no-tls-verify; --no-plain-http forces https to a loopback registry. Also an `http`
 * repository over https whose repos.conf.d entry names the CA with `ca_file`.
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config.js';
import { CpmError } from '../../src/errors.js';
import { BlobStore } from '../../src/oci/blobstore.js';
import { RegistryEndpoint } from '../../src/oci/endpoint.js';
import { pullImage, pushImage } from '../../src/oci/image.js';
import { buildPackageImage } from '../../src/oci/package-image.js';
import { parseRegistryRef } from '../../src/oci/reference.js';
import { RegistryClient } from '../../src/oci/registry.js';
import { parseRepoFile } from '../../src/repo/config.js';
import { createFromTree } from '../../src/repo/create.js';
import { fetchRepoIndex } from '../../src/repo/open.js';
import { RegistryReader } from '../../src/repo/reader.js';
import { makeSpec, pseudoRandom, tempDir, writeTree } from '../support/layers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';
import { requireBuild, runCpm, type CliResult } from '../support/cli.js';
import { serveFiles } from '../support/static-files.js';

let dir: string;
let reg: RegistryInstance;
let ca: Buffer;
let caFile: string;
let env: NodeJS.ProcessEnv;

/** A CA and a server certificate for 127.0.0.1 / localhost signed by it. */
function makeCerts(d: string): { caFile: string; certFile: string; keyFile: string } {
  const f = (n: string): string => path.join(d, n);
  const ssl = (...args: string[]): void => {
    execFileSync('openssl', args, { stdio: 'pipe' });
  };
  ssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=cpm test CA',
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem'),
  );
  ssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    f('server.key'),
    '-out',
    f('server.csr'),
  );
  writeFileSync(f('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ssl(
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    f('san.ext'),
    '-out',
    f('server.pem'),
  );
  return { caFile: f('ca.pem'), certFile: f('server.pem'), keyFile: f('server.key') };
}

const cpm = (...args: string[]): Promise<CliResult> => runCpm(args, { env });

beforeAll(async () => {
  requireBuild();
  dir = await tempDir('cpm-tls-');
  const certs = makeCerts(dir);
  caFile = certs.caFile;
  ca = readFileSync(caFile);
  reg = await startRegistry({ tls: { certFile: certs.certFile, keyFile: certs.keyFile } });
  env = { ...process.env, CPM_CONFIG: path.join(dir, 'cpm.yaml') };
  await fsp.writeFile(env.CPM_CONFIG!, `cache_dir: ${path.join(dir, 'cli-cache')}\n`);
}, 60_000);

afterAll(async () => {
  await reg?.stop();
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
});

describe('registry over TLS', () => {
  it('an untrusted certificate fails at once (no retries) with E_NETWORK and a --ca-file hint', async () => {
    const log: string[] = [];
    const client = new RegistryClient(reg.host, {
      plainHttp: false,
      credentials: null,
      retryBaseMs: 2000,
      log: (l) => log.push(l),
    });
    const t0 = Date.now();
    const err = await client.ping().catch((e: unknown) => e);
    await client.close();
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(err).toBeInstanceOf(CpmError);
    expect((err as CpmError).code).toBe('E_NETWORK');
    expect((err as CpmError).hint).toContain('--ca-file');
    expect(log.filter((l) => l.includes('retrying'))).toEqual([]);
  });

  it('with the CA trusted, pushes a package image and pulls it back over https', async () => {
    const payload = path.join(dir, 'payload');
    await writeTree(payload, {
      'etc/tls.conf': 'secure=1\n',
      'usr/lib/blob': pseudoRandom(200_000, 3),
    });
    const store = new BlobStore(path.join(dir, 'push-cache'));
    const img = await buildPackageImage(makeSpec('system/tls@1.0'), payload, {
      store,
      sourceDateEpoch: 0,
    });
    const ref = parseRegistryRef(`${reg.host}/cpm/system/tls:1.0`);
    const push = new RegistryEndpoint(new RegistryClient(reg.host, { plainHttp: false, ca }), ref);
    const digest = await pushImage(store, img.descriptor, push);
    await push.close();
    expect(digest).toBe(img.descriptor.digest);

    const fresh = new BlobStore(path.join(dir, 'pull-cache'));
    const pull = new RegistryEndpoint(new RegistryClient(reg.host, { plainHttp: false, ca }), ref);
    const pulled = await pullImage(pull, fresh);
    await pull.close();
    expect(pulled.manifestDescriptor.digest).toBe(digest);
    expect(await fresh.size(img.layer.digest)).toBe(img.layer.size);

    // tlsVerify: false reaches it without the CA.
    const insecure = new RegistryClient(reg.host, { plainHttp: false, tlsVerify: false });
    expect(await insecure.headManifest('cpm/system/tls', '1.0')).toBe(digest);
    await insecure.close();
  });

  it('CLI: --no-plain-http with --ca-file pulls; without the CA it is exit 7 with a hint', async () => {
    const src = `${reg.host}/cpm/system/tls:1.0`;
    const out = path.join(dir, 'cli-out');
    const ok = await cpm(
      'pull',
      src,
      '--no-plain-http',
      '--ca-file',
      caFile,
      '-q',
      '-o',
      `oci:${out}:1.0`,
    );
    expect(ok.err).toBe('');
    expect(ok.code).toBe(0);
    expect(
      JSON.parse(await fsp.readFile(path.join(out, 'index.json'), 'utf8')).manifests,
    ).toHaveLength(1);

    const untrusted = await cpm('pull', src, '--no-plain-http');
    expect(untrusted.code).toBe(7);
    expect(untrusted.err).toContain('--ca-file');

    const skip = await cpm('pull', src, '--no-plain-http', '--no-tls-verify', '--json');
    expect(skip.code).toBe(0);

    // Loopback defaults to plain http, which this https-only registry refuses.
    const plain = await cpm('pull', src);
    expect(plain.code).not.toBe(0);
  });
});

describe('scheme selection', () => {
  it('http for loopback, https elsewhere; insecure / plainHttp override; repo insecure reaches the client', async () => {
    const url = (host: string, o: ConstructorParameters<typeof RegistryClient>[1] = {}): string =>
      new RegistryClient(host, { credentials: null, ...o }).baseUrl;
    expect(url('127.0.0.1:5000')).toBe('http://127.0.0.1:5000');
    expect(url('localhost:5000')).toBe('http://localhost:5000');
    expect(url('[::1]:5000')).toBe('http://[::1]:5000');
    expect(url('registry.example.com')).toBe('https://registry.example.com');
    expect(url('10.0.0.5:5000')).toBe('https://10.0.0.5:5000');
    expect(url('registry.example.com', { insecure: true })).toBe('http://registry.example.com');
    expect(url('registry.example.com', { plainHttp: true })).toBe('http://registry.example.com');
    expect(url('127.0.0.1:5000', { plainHttp: false })).toBe('https://127.0.0.1:5000');

    const [entry] = await parseRepoFile(
      'name: mirror\ntype: oci\nurls: [oci://registry.example.com/cpm]\ninsecure: true\n',
      path.join(dir, 'x.yaml'),
    );
    expect(entry!.insecure).toBe(true);
    const reader = new RegistryReader(entry!.urls[0]!, { insecure: entry!.insecure! });
    expect(reader.client.baseUrl).toBe('http://registry.example.com');
    await expect(
      parseRepoFile('name: m\ntype: oci\nurls: [oci://h/ns]\ninsecure: "yes"\n', 'y.yaml'),
    ).rejects.toThrow(/insecure/);
  });
});

describe('http repository over TLS with ca_file', () => {
  it('fetches the index when the entry names the CA, and fails without it', async () => {
    const tree = path.join(dir, 'tree');
    await writeTree(tree, {
      'system/web/1.0/definition.yaml': 'name: web\ncategory: system\nversion: "1.0"\n',
      'system/web/1.0/root/etc/web.conf': 'x=1\n',
    });
    const static_ = path.join(dir, 'static');
    await createFromTree(tree, { output: `dir://${static_}`, sourceDateEpoch: 1 });
    const server = https.createServer(
      {
        cert: readFileSync(path.join(dir, 'server.pem')),
        key: readFileSync(path.join(dir, 'server.key')),
      },
      serveFiles(static_),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      const confFile = path.join(dir, 'repos.conf.d', 'web.yaml');
      await fsp.mkdir(path.dirname(confFile), { recursive: true });
      // ca_file is relative to the config file.
      const [withCa] = await parseRepoFile(
        `name: web\ntype: http\nurls: [${url}]\nca_file: ../ca.pem\n`,
        confFile,
      );
      expect(withCa!.ca_file).toBe(caFile);
      const cfg = { ...defaultConfig(), cache_dir: path.join(dir, 'repo-cache') };
      const { fetched } = await fetchRepoIndex(cfg, withCa!);
      expect(fetched.index.packages.map((p) => p.name)).toEqual(['web']);

      const [without] = await parseRepoFile(`name: web\ntype: http\nurls: [${url}]\n`, confFile);
      const err = await fetchRepoIndex(cfg, without!).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CpmError);

      const [missing] = await parseRepoFile(
        `name: web\ntype: http\nurls: [${url}]\nca_file: nope.pem\n`,
        confFile,
      );
      const e2 = await fetchRepoIndex(cfg, missing!).catch((e: unknown) => e);
      expect((e2 as CpmError).code).toBe('E_CONFIG');
      expect((e2 as CpmError).message).toContain('nope.pem');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
