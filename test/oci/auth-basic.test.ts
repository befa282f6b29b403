/** htpasswd Basic auth against a real registry; credentials never leak into errors or logs. */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpmError } from '../../src/errors.js';
import { BlobStore } from '../../src/oci/blobstore.js';
import { RegistryEndpoint } from '../../src/oci/endpoint.js';
import { pullImage, pushImage } from '../../src/oci/image.js';
import { login, logout } from '../../src/oci/actions.js';
import { buildPackageImage } from '../../src/oci/package-image.js';
import { parseRegistryRef } from '../../src/oci/reference.js';
import { RegistryClient } from '../../src/oci/registry.js';
import { findCredentials } from '../../src/oci/auth.js';
import { makeSpec, tempDir, writeTree } from '../support/layers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';

const PASSWORD = 'hunter2-Sup3rS3cret';
let reg: RegistryInstance;
let dir: string;
let store: BlobStore;

beforeAll(async () => {
  reg = await startRegistry({ htpasswd: { alice: PASSWORD } });
  dir = await tempDir();
  store = new BlobStore(path.join(dir, 'cache'));
});
afterAll(async () => {
  await reg?.stop();
  await fsp.rm(dir, { recursive: true, force: true });
});

function leakCheck(text: string): void {
  expect(text).not.toContain(PASSWORD);
  expect(text).not.toContain(Buffer.from(`alice:${PASSWORD}`).toString('base64'));
}

describe('Basic auth (htpasswd)', () => {
  it('anonymous access is refused with E_AUTH and a login hint', async () => {
    const c = new RegistryClient(reg.host, { credentials: null });
    await expect(c.getManifest('a/b', 'latest')).rejects.toMatchObject({
      code: 'E_AUTH',
      hint: expect.stringContaining('cpm login'),
    });
    await c.close();
  });

  it('push and pull with credentials from an auth file', async () => {
    const authFile = path.join(dir, 'auth.json');
    const lines: string[] = [];
    await login(reg.host, { username: 'alice', password: PASSWORD }, { authFile });
    expect(findCredentials(reg.host, [authFile])).toEqual({
      username: 'alice',
      password: PASSWORD,
    });
    const c = new RegistryClient(reg.host, { authFiles: [authFile], log: (l) => lines.push(l) });
    const payload = await writeTree(path.join(dir, 'p'), { 'etc/x': 'x' });
    const img = await buildPackageImage(makeSpec('sec/app@1'), payload, { store });
    const ep = new RegistryEndpoint(c, parseRegistryRef(`${reg.host}/sec/app:1`));
    await pushImage(store, img.descriptor, ep);
    const pulled = await pullImage(ep, new BlobStore(path.join(dir, 'fresh')));
    expect(pulled.manifestDescriptor.digest).toBe(img.descriptor.digest);
    expect(lines.length).toBeGreaterThan(3);
    leakCheck(lines.join('\n'));
    await c.close();
    expect(await logout(reg.host, { authFile })).toBe(true);
    expect(findCredentials(reg.host, [authFile])).toBeUndefined();
  });

  it('a wrong password fails login and never appears in the error', async () => {
    const wrong = 'WrongPassw0rd-zz';
    const authFile = path.join(dir, 'auth2.json');
    const err = await login(reg.host, { username: 'alice', password: wrong }, { authFile }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CpmError);
    expect((err as CpmError).code).toBe('E_AUTH');
    const all = [
      String(err),
      (err as Error).stack ?? '',
      JSON.stringify(err),
      JSON.stringify((err as CpmError).context),
    ].join('\n');
    expect(all).not.toContain(wrong);
    expect(all).not.toContain(Buffer.from(`alice:${wrong}`).toString('base64'));
    await expect(fsp.access(authFile)).rejects.toThrow();
  });
});
