/**
 * Several processes sharing one blob cache (two CI jobs, parallel `RUN cpm install` with a cache
 * mount): real processes fetching the same large blob from the real registry at once all succeed
 * and leave one verified blob, no partials and no lock; a second process waits for the first
 * (the ingest lock) and uses its blob without a download of its own, or takes over and resumes
 * when the first is killed while it waits; the partial of a process killed with SIGKILL is taken
 * over and resumed with Range, but never the file of a writer that is still alive.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobStore, ownerGone, STALE_MS, type BlobRef } from '../../src/oci/blobstore.js';
import { sha256 } from '../../src/oci/digest.js';
import { RegistryClient } from '../../src/oci/registry.js';
import { bundleChild } from '../support/child.js';
import { startFaultProxy, type Fault, type FaultProxy } from '../support/fault-proxy.js';
import { tempDir } from '../support/layers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO = 'test/shared';
let reg: RegistryInstance;
let proxy: FaultProxy;
let dir: string;
let child: string;
let big: BlobRef;
let n = 0;

beforeAll(async () => {
  reg = await startRegistry();
  proxy = await startFaultProxy(reg.url);
  dir = await tempDir('cpm-shared-cache-');
  child = await bundleChild(path.join(here, 'fetch-child.ts'), 'cpm-fetch-child-');
  // random bytes: large enough that two downloads overlap for a long while
  const src = new BlobStore(path.join(dir, 'src'));
  big = await src.putBytes(randomBytes(48 << 20));
  const c = new RegistryClient(reg.host, { credentials: null });
  await c.pushBlob(REPO, big, src);
  await c.close();
}, 60_000);
afterAll(async () => {
  await proxy?.stop();
  await reg?.stop();
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
});

const freshCache = (): string => path.join(dir, `cache${n++}`);
const blobDir = (cache: string): string => path.join(cache, 'blobs', 'sha256');
const partials = async (cache: string): Promise<string[]> =>
  (await fsp.readdir(blobDir(cache)).catch(() => [] as string[])).filter((f) =>
    f.startsWith('.partial-'),
  );

function start(cache: string, go: string, host = reg.host): ChildProcess {
  return spawn(process.execPath, [child, host, REPO, big.digest, String(big.size), cache, go], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** A fresh cache, and a first writer fetching through the proxy with `fault` on the blob. */
async function firstWriter(fault: Fault) {
  const cache = freshCache();
  const go = path.join(dir, `go${n++}`);
  await fsp.writeFile(go, '');
  proxy.reset();
  proxy.add({ path: new RegExp(big.digest), fault });
  const first = start(cache, go, proxy.host);
  return { cache, go, first, firstDone: exited(first) };
}

/** The blob's GETs the proxy saw, by their Range ('full' without). */
const blobGets = (): string[] =>
  proxy.requests
    .filter((r) => r.method === 'GET' && r.path.includes(big.digest))
    .map((r) => r.range ?? 'full');

function exited(p: ChildProcess): Promise<{ code: number | null; out: string; err: string }> {
  let out = '';
  let err = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) => p.on('close', (code) => resolve({ code, out, err })));
}

async function waitFor<T>(what: string, f: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('a blob cache shared by processes', () => {
  it('two processes downloading the same blob at once both succeed; one verified blob, no partials', async () => {
    for (let round = 0; round < 2; round++) {
      const cache = freshCache();
      const go = path.join(dir, `go${n++}`);
      const runs = [start(cache, go), start(cache, go), start(cache, go)].map(exited);
      await new Promise((r) => setTimeout(r, 300)); // every child is up and waiting
      await fsp.writeFile(go, '');
      const results = await Promise.all(runs);
      for (const r of results) expect(r, r.err).toMatchObject({ code: 0, out: 'stored\n' });
      const s = new BlobStore(cache);
      expect(sha256(await s.read(big.digest))).toBe(big.digest);
      expect(await partials(cache)).toEqual([]);
      expect(await fsp.readdir(blobDir(cache))).toEqual([big.digest.slice(7)]);
    }
  }, 120_000);

  it('a second process waits for the first one downloading the blob and uses its verified blob', async () => {
    // a slow first writer: its lock is taken, the registry answers 2 s later
    const { cache, go, first, firstDone } = await firstWriter({ kind: 'delay', ms: 2000 });
    const lock = new BlobStore(cache).ingestPath(big.digest);
    await waitFor('the first to take the lock', async () =>
      (await fsp.readlink(lock).catch(() => '')).includes(`-${first.pid}-`) ? true : undefined,
    );
    const second = exited(start(cache, go, proxy.host));
    const [a, b] = await Promise.all([firstDone, second]);
    expect(a, a.err).toMatchObject({ code: 0, out: 'stored\n' });
    expect(b, b.err).toMatchObject({ code: 0, out: 'stored\n' });
    expect(b.err).toContain(
      `waiting for ${big.digest.slice(0, 19)} being downloaded by pid ${first.pid}\n`,
    );
    // one download in all: the second took the first one's blob
    expect(blobGets()).toEqual(['full']);
    expect(sha256(await new BlobStore(cache).read(big.digest))).toBe(big.digest);
    expect(await fsp.readdir(blobDir(cache))).toEqual([big.digest.slice(7)]);
  }, 60_000);

  it('a process waiting for a writer that is killed takes over its partial and finishes', async () => {
    // the first writer's body stops after 5 MB with the connection open
    const { cache, go, first, firstDone } = await firstWriter({
      kind: 'stall',
      afterBytes: 5_000_000,
    });
    const kept = await waitFor('the first to write 5 MB', async () => {
      for (const f of await partials(cache)) {
        const size = (await fsp.stat(path.join(blobDir(cache), f))).size;
        if (size >= 5_000_000) return size;
      }
      return undefined;
    });
    const p = start(cache, go, proxy.host);
    let err = '';
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const second = exited(p);
    await waitFor('the second to wait', async () =>
      err.includes('waiting for') ? true : undefined,
    );
    // it only waits: no request of its own while the first is alive
    expect(blobGets()).toEqual(['full']);
    first.kill('SIGKILL');
    expect((await firstDone).code).toBe(null);
    const r = await second;
    expect(r, r.err).toMatchObject({ code: 0, out: 'stored\n' });
    expect(blobGets()).toEqual(['full', `bytes=${kept}-`]);
    expect(sha256(await new BlobStore(cache).read(big.digest))).toBe(big.digest);
    expect(await fsp.readdir(blobDir(cache))).toEqual([big.digest.slice(7)]);
  }, 60_000);

  it('takes over the partial of a process killed with SIGKILL and resumes it with Range', async () => {
    const cache = freshCache();
    const go = path.join(dir, `go${n++}`);
    await fsp.writeFile(go, '');
    // the body stops after 5 MB and the connection stays open: the child waits, then is killed
    proxy.add({ path: new RegExp(big.digest), fault: { kind: 'stall', afterBytes: 5_000_000 } });
    const p = start(cache, go, proxy.host);
    const done = exited(p);
    const [name, kept] = await waitFor('the child to write its partial', async () => {
      for (const f of await partials(cache)) {
        const size = (await fsp.stat(path.join(blobDir(cache), f))).size;
        if (size >= 5_000_000) return [f, size] as const;
      }
      return undefined;
    });
    // the file is the child's own (not the released name): it is alive, so it is not taken
    expect(name).toMatch(
      new RegExp(`^\\.partial-${big.digest.slice(7)}\\.[0-9a-f]+-\\d+-${p.pid}-[0-9a-f]+$`),
    );
    const st = await fsp.stat(path.join(blobDir(cache), name));
    expect(ownerGone(name.split('.').pop()!, st.mtimeMs)).toBe(false);
    p.kill('SIGKILL');
    expect((await done).code).toBe(null);
    expect(ownerGone(name.split('.').pop()!, st.mtimeMs)).toBe(true);

    proxy.reset();
    const c = new RegistryClient(proxy.host, { credentials: null });
    try {
      await c.fetchBlob(REPO, big, new BlobStore(cache));
    } finally {
      await c.close();
    }
    const gets = proxy.requests.filter((r) => r.method === 'GET' && r.path.includes(big.digest));
    expect(gets.map((r) => r.range ?? 'full')).toEqual([`bytes=${kept}-`]);
    expect(sha256(await new BlobStore(cache).read(big.digest))).toBe(big.digest);
    expect(await partials(cache)).toEqual([]);
  }, 60_000);

  it('leaves the partial of a live writer alone (downloads on its own) and takes over a stale one', async () => {
    const cache = freshCache();
    // each run of cpm has its own store (a store lists the writers' files once)
    const run = (): BlobStore => new BlobStore(cache);
    const s = run();
    await fsp.mkdir(blobDir(cache), { recursive: true });
    // a live writer in this boot and pid namespace: a sleeping process of ours
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      // this process's boot and pid namespace, as its own writers name them
      const w = await s.partialWriter(big);
      const ownName = (await partials(cache))[0]!;
      await w.abort(true);
      const [boot, ns] = ownName.slice(ownName.lastIndexOf('.') + 1).split('-');
      const tagOf = (pid: number): string => `${boot}-${ns}-${pid}-00`;
      const live = `${s.partialPath(big.digest)}.${tagOf(sleeper.pid!)}`;
      await fsp.writeFile(live, Buffer.alloc(1000));
      const c = new RegistryClient(proxy.host, { credentials: null });
      proxy.reset();
      try {
        await c.fetchBlob(REPO, big, run());
        // the live writer's file is untouched and was not used
        expect((await fsp.stat(live)).size).toBe(1000);
        const gets = () =>
          proxy.requests.filter((r) => r.method === 'GET' && r.path.includes(big.digest));
        expect(gets().map((r) => r.range ?? 'full')).toEqual(['full']);

        // the same file, unchanged for longer than STALE_MS (an owner in another container):
        // taken over; its zeros fail verification and the blob is fetched once from zero
        await s.delete(big.digest);
        const old = new Date(Date.now() - STALE_MS - 60_000);
        await fsp.utimes(live, old, old);
        proxy.reset();
        await c.fetchBlob(REPO, big, run());
        expect(gets().map((r) => r.range ?? 'full')).toEqual(['bytes=1000-', 'full']);
        expect(sha256(await s.read(big.digest))).toBe(big.digest);
        expect(await partials(cache)).toEqual([]);
      } finally {
        await c.close();
      }
    } finally {
      sleeper.kill('SIGKILL');
    }
  }, 60_000);
});
