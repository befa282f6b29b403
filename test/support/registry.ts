/**
 * Starts a real CNCF distribution registry (Debian's `docker-registry`) on 127.0.0.1 with a free
 * port and a temp storage dir, for tests and benches. One per test file: start it in beforeAll,
 * `stop()` it in afterAll (it also removes the temp dir).
 *
 *   const reg = await startRegistry();                                   // anonymous
 *   const reg = await startRegistry({ htpasswd: { alice: 's3cret' } });  // Basic
 *   const reg = await startRegistry({ token: await startTokenServer({...}) }); // Bearer
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports.js';
import type { TokenServer } from './token-server.js';

export const REGISTRY_BIN = process.env.CPM_TEST_REGISTRY_BIN ?? '/usr/bin/docker-registry';

export interface RegistryOptions {
  /** user → password; enables htpasswd Basic auth (needs `htpasswd` from apache2-utils). */
  htpasswd?: Record<string, string>;
  /** Enables token auth against this server. */
  token?: TokenServer;
  /** Storage dir (default: a fresh temp dir, removed on stop). */
  storageDir?: string;
  /** Serve https with this certificate and key (PEM files); `url` is then https://. */
  tls?: { certFile: string; keyFile: string };
}

export interface RegistryInstance {
  /** "127.0.0.1:PORT" — use as the registry part of references. */
  host: string;
  port: number;
  url: string;
  dir: string;
  storageDir: string;
  /** The registry's stderr so far (for failure messages). */
  logs(): string;
  stop(): Promise<void>;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

async function waitReady(url: string, proc: ChildProcess, logs: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`registry exited (${proc.exitCode}):\n${logs()}`);
    try {
      if (url.startsWith('https:')) {
        // Its certificate is the test's own CA: a TCP accept is enough to know it listens.
        if (await canConnect(Number(new URL(url).port))) return;
      } else {
        const res = await fetch(`${url}/v2/`);
        if (res.status === 200 || res.status === 401) return;
      }
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`registry did not become ready:\n${logs()}`);
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryInstance> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-registry-'));
  const storageDir = opts.storageDir ?? path.join(dir, 'storage');
  await fsp.mkdir(storageDir, { recursive: true });
  const port = await freePort();
  let auth = '';
  if (opts.htpasswd) {
    const lines = Object.entries(opts.htpasswd).map(([u, p]) =>
      execFileSync('htpasswd', ['-Bbn', u, p], { encoding: 'utf8' }).trim(),
    );
    const file = path.join(dir, 'htpasswd');
    await fsp.writeFile(file, lines.join('\n') + '\n');
    auth = `auth:\n  htpasswd:\n    realm: cpm-test\n    path: ${file}\n`;
  } else if (opts.token) {
    const t = opts.token;
    auth =
      `auth:\n  token:\n    realm: ${t.realm}\n    service: ${t.service}\n    issuer: ${t.issuer}\n` +
      `    rootcertbundle: ${t.certFile}\n`;
  }
  const config =
    `version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n` +
    `storage:\n  filesystem:\n    rootdirectory: ${storageDir}\n  delete:\n    enabled: true\n` +
    `http:\n  addr: 127.0.0.1:${port}\n` +
    (opts.tls
      ? `  tls:\n    certificate: ${opts.tls.certFile}\n    key: ${opts.tls.keyFile}\n`
      : '') +
    auth;
  const configFile = path.join(dir, 'config.yml');
  await fsp.writeFile(configFile, config);
  const proc = spawn(REGISTRY_BIN, ['serve', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    log = (log + d).slice(-20_000);
  });
  const url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  try {
    await waitReady(url, proc, () => log);
  } catch (e) {
    proc.kill('SIGKILL');
    await fsp.rm(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    host: `127.0.0.1:${port}`,
    port,
    url,
    dir,
    storageDir,
    logs: () => log,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}
