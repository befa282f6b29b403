/**
 * The node:http transport of small registry exchanges (src/oci/http-node.ts), against local
 * servers: undici's response shape (repeated headers as arrays, body helpers), keep-alive, the
 * idle timeout on a silent server and within a body, the connect timeout, TLS options.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CONNECT_TIMEOUT, IDLE_TIMEOUT, NodeHttpPool } from '../../src/oci/http-node.js';
import { RegistryClient } from '../../src/oci/registry.js';

let server: Server;
let base: string;
const connections: number[] = [];
let handler: (path: string, res: ServerResponse) => void = (_p, res) => res.end();

beforeAll(async () => {
  server = createServer((req, res) => handler(req.url ?? '', res));
  let n = 0;
  server.on('connection', () => connections.push(++n));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const pools: NodeHttpPool[] = [];
afterEach(() => {
  for (const p of pools.splice(0)) p.close();
  connections.length = 0;
});
function pool(opts: Partial<ConstructorParameters<typeof NodeHttpPool>[0]> = {}): NodeHttpPool {
  const p = new NodeHttpPool({
    connections: 2,
    connectTimeoutMs: 5000,
    idleTimeoutMs: 5000,
    rejectUnauthorized: true,
    ...opts,
  });
  pools.push(p);
  return p;
}

describe('NodeHttpPool', () => {
  it('gives undici’s response shape: lower-case headers, repeated ones as an array, body helpers', async () => {
    handler = (_p, res) => {
      res.setHeader('WWW-Authenticate', ['Bearer realm="a"', 'Basic realm="b"']);
      res.setHeader('Docker-Content-Digest', 'sha256:00');
      res.end('{"a":1}');
    };
    const p = pool();
    const r = await p.request(`${base}/x`, { method: 'GET' });
    expect(r.statusCode).toBe(200);
    expect(r.headers['www-authenticate']).toEqual(['Bearer realm="a"', 'Basic realm="b"']);
    expect(r.headers['docker-content-digest']).toBe('sha256:00');
    expect(await r.body.json()).toEqual({ a: 1 });
    const t = await p.request(`${base}/x`, { method: 'GET' });
    expect(Buffer.from(await t.body.arrayBuffer()).toString()).toBe('{"a":1}');
    const h = await p.request(`${base}/x`, { method: 'HEAD' });
    await h.body.dump();
    expect(h.statusCode).toBe(200);
    // one connection, kept alive across the three exchanges
    expect(connections).toEqual([1]);
  });

  it('dump() drops a body that never ends without reading it all, and resolves', async () => {
    const chunk = Buffer.alloc(64 << 10);
    handler = (_p, res) => {
      const more = (): void => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', more);
      };
      more();
    };
    const r = await pool().request(`${base}/endless`, { method: 'GET' });
    await r.body.dump();
    expect(r.body.destroyed).toBe(true);
  });

  it('a server that never answers ends in the idle timeout code; so does a body that stalls', async () => {
    handler = () => undefined;
    const silent = pool({ idleTimeoutMs: 200 });
    await expect(silent.request(`${base}/hang`, { method: 'HEAD' })).rejects.toMatchObject({
      code: IDLE_TIMEOUT,
    });
    handler = (_p, res) => {
      res.setHeader('content-length', '100');
      res.write('x');
    };
    const r = await pool({ idleTimeoutMs: 200 }).request(`${base}/stall`, { method: 'GET' });
    await expect(r.body.text()).rejects.toMatchObject({ code: IDLE_TIMEOUT });
  });

  it('a body cut short of its Content-Length is an error, not a short text', async () => {
    handler = (_p, res) => {
      res.setHeader('content-length', '100');
      res.write('x', () => res.socket?.destroy());
    };
    const r = await pool().request(`${base}/cut`, { method: 'GET' });
    await expect(r.body.text()).rejects.toThrow();
  });

  it('sends a Buffer body with its length', async () => {
    let got = '';
    const s = createServer((req, res) => {
      got = `${req.method} ${req.headers['content-length']} `;
      req.on('data', (c: Buffer) => (got += c.toString()));
      req.on('end', () => res.end());
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}/m`;
    const r = await pool().request(url, { method: 'PUT', body: Buffer.from('hello') });
    await r.body.dump();
    s.closeAllConnections();
    s.close();
    expect(got).toBe('PUT 5 hello');
  });

  it('an aborted signal ends the exchange', async () => {
    handler = () => undefined;
    const ac = new AbortController();
    const p = pool().request(`${base}/hang`, { method: 'GET', signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
  });
});

describe('the registry client reading a small body', () => {
  it('words a body that stalls or is not JSON as the registry’s error, not an internal one', async () => {
    const registry = base.slice('http://'.length);
    const c = new RegistryClient(registry, { credentials: null, idleTimeoutMs: 200, retries: 0 });
    try {
      handler = (_p, res) => {
        res.setHeader('content-length', '100');
        res.write('{');
      };
      const stalled = await c.getManifest('a/b', '1').catch((e: unknown) => e);
      expect(stalled).toMatchObject({ code: 'E_NETWORK', context: { registry } });
      expect((stalled as Error).message).toBe(
        `${registry}: manifest a/b:1: no data for 0.2 s (idle timeout)`,
      );
      handler = (_p, res) => res.end('<html>');
      const garbled = await c.listTags('a/b').catch((e: unknown) => e);
      expect(garbled).toMatchObject({ code: 'E_REGISTRY', context: { registry } });
      expect((garbled as Error).message).toBe(`${registry}: tags of a/b: the answer is not JSON`);
      handler = (_p, res) => res.end('null');
      expect(await c.listTags('a/b')).toEqual([]);
    } finally {
      await c.close();
    }
  });

  it('refuses a manifest over 4 MiB, announced or chunked without a length, and reads no more of it', async () => {
    const registry = base.slice('http://'.length);
    const c = new RegistryClient(registry, { credentials: null, idleTimeoutMs: 2000, retries: 0 });
    const piece = Buffer.alloc(1 << 20, 0x20);
    let sent = 0;
    try {
      handler = (_p, res) => {
        res.setHeader('content-length', String(5 << 20));
        res.end();
      };
      const announced = await c.getManifest('a/b', '1').catch((e: unknown) => e);
      expect(announced).toMatchObject({ code: 'E_REGISTRY', context: { registry } });
      expect((announced as Error).message).toBe(
        `${registry}: manifest a/b:1 is too large (${5 << 20} bytes)`,
      );
      // chunked, no length: an endless body is cut off after the limit
      handler = (_p, res) => {
        const more = (): void => {
          while (sent < 64 << 20 && res.write(piece)) sent += piece.length;
          if (sent < 64 << 20) res.once('drain', more);
          else res.end();
        };
        res.on('close', () => res.removeAllListeners('drain'));
        more();
      };
      const chunked = await c.getManifest('a/b', '1').catch((e: unknown) => e);
      expect(chunked).toMatchObject({ code: 'E_REGISTRY', context: { registry } });
      expect((chunked as Error).message).toMatch(/manifest a\/b:1 is too large \(\d+ bytes\)$/);
      expect(sent).toBeLessThan(32 << 20);
      // a manifest under the limit still reads
      handler = (_p, res) => res.end(JSON.stringify({ schemaVersion: 2, mediaType: 'x/y' }));
      expect((await c.getManifest('a/b', '1')).mediaType).toBe('x/y');
    } finally {
      await c.close();
    }
  });
});

describe('connect timeout', () => {
  // a listening socket that never accepts, its queue filled: a further connect is never answered
  let py: ChildProcess;
  let port = 0;
  const fillers: Socket[] = [];
  beforeAll(async () => {
    py = spawn('python3', [
      '-c',
      'import socket,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(120)',
    ]);
    port = await new Promise<number>((resolve) =>
      py.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))),
    );
    for (let i = 0; i < 3; i++) {
      const s = connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      fillers.push(s);
    }
    await new Promise((r) => setTimeout(r, 200));
  });
  afterAll(() => {
    for (const s of fillers) s.destroy();
    py.kill();
  });

  it('is its own code, and the registry client words it as a connect timeout', async () => {
    const t0 = Date.now();
    await expect(
      pool({ connectTimeoutMs: 300 }).request(`http://127.0.0.1:${port}/v2/`, { method: 'GET' }),
    ).rejects.toMatchObject({ code: CONNECT_TIMEOUT });
    expect(Date.now() - t0).toBeLessThan(3000);
    const c = new RegistryClient(`127.0.0.1:${port}`, {
      credentials: null,
      connectTimeoutMs: 300,
      retries: 1,
      retryBaseMs: 10,
    });
    const err = await c.headManifest('a/b', '1').catch((e: unknown) => e);
    await c.close();
    expect(err).toMatchObject({ code: 'E_NETWORK', context: { registry: `127.0.0.1:${port}` } });
    expect((err as Error).message).toMatch(/no connection within 0\.3 s \(connect timeout\)/);
  });
});
