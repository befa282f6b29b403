/** Bearer token flow against a real registry with `auth: token` and an in-test token server. */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/oci/blobstore.js';
import { RegistryEndpoint } from '../../src/oci/endpoint.js';
import { pullImage, pushImage } from '../../src/oci/image.js';
import { buildPackageImage, type PackageImage } from '../../src/oci/package-image.js';
import { parseRegistryRef } from '../../src/oci/reference.js';
import { RegistryClient } from '../../src/oci/registry.js';
import { makeSpec, tempDir, writeTree } from '../support/layers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';
import { startTokenServer, type TokenServer } from '../support/token-server.js';

const PASSWORD = 'tok-Pa55word-xyz';
let reg: RegistryInstance;
let tokens: TokenServer;
let dir: string;
let store: BlobStore;
let img: PackageImage;

beforeAll(async () => {
  dir = await tempDir();
  tokens = await startTokenServer({
    dir: path.join(dir, 'token'),
    users: { bob: PASSWORD },
    anonymousPull: true,
  });
  reg = await startRegistry({ token: tokens });
  store = new BlobStore(path.join(dir, 'cache'));
  const payload = await writeTree(path.join(dir, 'p'), { 'usr/share/t': 'token' });
  img = await buildPackageImage(makeSpec('tok/app@1'), payload, { store });
});
afterAll(async () => {
  await reg?.stop();
  await tokens?.stop();
  await fsp.rm(dir, { recursive: true, force: true });
});

const ep = (c: RegistryClient, r: string): RegistryEndpoint =>
  new RegistryEndpoint(c, parseRegistryRef(`${reg.host}/${r}`));

describe('Bearer token auth', () => {
  it('pushes with credentials (token per scope, cached) and mounts across repos', async () => {
    const lines: string[] = [];
    const c = new RegistryClient(reg.host, {
      credentials: { username: 'bob', password: PASSWORD },
      log: (l) => lines.push(l),
    });
    await pushImage(store, img.descriptor, ep(c, 'tok/app:1'));
    const first = tokens.requests.length;
    expect(first).toBeGreaterThanOrEqual(1);
    expect(tokens.requests.every((r) => r.account === 'bob' && r.authenticated)).toBe(true);
    expect(tokens.requests.some((r) => r.scopes.includes('repository:tok/app:pull,push'))).toBe(
      true,
    );
    // Same scope again: served from the token cache.
    await pushImage(store, img.descriptor, ep(c, 'tok/app:2'));
    expect(tokens.requests.length).toBe(first);
    // Mount asks for pull on the source repository as well.
    const results: string[] = [];
    await pushImage(store, img.descriptor, ep(c, 'tok/copy:1'), {
      mountFrom: 'tok/app',
      onBlob: (_b, r) => results.push(r),
    });
    expect(results).toEqual(['mounted', 'mounted']);
    expect(tokens.requests.some((r) => r.scopes.includes('repository:tok/app:pull'))).toBe(true);
    const logs = lines.join('\n');
    expect(logs).not.toContain(PASSWORD);
    expect(logs).not.toMatch(/Bearer|eyJ/);
    await c.close();
  });

  it('pulls anonymously when the token server grants pull', async () => {
    const c = new RegistryClient(reg.host, { credentials: null });
    const pulled = await pullImage(ep(c, 'tok/app:1'), new BlobStore(path.join(dir, 'anon')));
    expect(pulled.manifestDescriptor.digest).toBe(img.descriptor.digest);
    expect(tokens.requests.at(-1)!.account).toBeUndefined();
    await c.close();
  });

  it('anonymous push is refused with E_AUTH; wrong password is E_AUTH without the password', async () => {
    const anon = new RegistryClient(reg.host, { credentials: null });
    await expect(pushImage(store, img.descriptor, ep(anon, 'tok/anon:1'))).rejects.toMatchObject({
      code: 'E_AUTH',
    });
    await anon.close();
    const wrong = 'not-the-Passw0rd';
    const bad = new RegistryClient(reg.host, { credentials: { username: 'bob', password: wrong } });
    const err = await bad.getManifest('tok/app', '1').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_AUTH' });
    expect(String(err) + JSON.stringify(err) + ((err as Error).stack ?? '')).not.toContain(wrong);
    await bad.close();
  });
});
