/** Auth files, challenge parsing, login/logout — no registry needed. */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  authFileCandidates,
  defaultLoginFile,
  findCredentials,
  parseChallenge,
  removeCredentials,
  saveCredentials,
} from '../../src/oci/auth.js';
import { tempDir } from '../support/layers.js';

let dir: string;
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(() => fsp.rm(dir, { recursive: true, force: true }));

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('auth files', () => {
  it('looks in REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR, ~/.config/containers, then ~/.docker', () => {
    const env = { HOME: '/h', REGISTRY_AUTH_FILE: '/a.json', XDG_RUNTIME_DIR: '/run/u' };
    expect(authFileCandidates(env)).toEqual([
      '/a.json',
      '/run/u/containers/auth.json',
      '/h/.config/containers/auth.json',
      '/h/.docker/config.json',
    ]);
    expect(defaultLoginFile({ HOME: '/h', XDG_RUNTIME_DIR: '/run/u' })).toBe(
      '/run/u/containers/auth.json',
    );
    expect(defaultLoginFile({ HOME: '/h', DOCKER_CONFIG: '/d' })).toBe(
      '/h/.config/containers/auth.json',
    );
  });

  it('reads docker config.json and containers auth.json entries, first file wins', async () => {
    const docker = path.join(dir, 'config.json');
    const containers = path.join(dir, 'auth.json');
    await fsp.writeFile(
      docker,
      JSON.stringify({
        auths: { 'https://reg.example.test:5000/v1/': { auth: b64('dock:er:pw') } },
        credsStore: 'none',
      }),
    );
    await fsp.writeFile(
      containers,
      JSON.stringify({ auths: { 'other.test': { auth: b64('u:p') } } }),
    );
    expect(findCredentials('reg.example.test:5000', [containers, docker])).toEqual({
      username: 'dock',
      password: 'er:pw',
    });
    expect(findCredentials('other.test', [containers, docker])).toEqual({
      username: 'u',
      password: 'p',
    });
    expect(
      findCredentials('missing.test', [containers, docker, path.join(dir, 'nope.json')]),
    ).toBeUndefined();
  });

  it('a malformed auth file is E_CONFIG without echoing its content', async () => {
    const bad = path.join(dir, 'bad.json');
    await fsp.writeFile(bad, '{"auths": {"x": {"auth": "c2VjcmV0"}} SECRET-TEXT');
    let err: unknown;
    try {
      findCredentials('x', [bad]);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'E_CONFIG' });
    expect(JSON.stringify(err) + String(err)).not.toContain('SECRET');
  });

  it('save/remove keep other entries and write mode 0600', async () => {
    const file = path.join(dir, 'sub', 'login.json');
    await saveCredentials('127.0.0.1:5000', { username: 'alice', password: 'pw1' }, file);
    await saveCredentials('other.test', { username: 'bob', password: 'pw2' }, file);
    await saveCredentials('127.0.0.1:5000', { username: 'alice', password: 'pw3' }, file);
    expect((await fsp.stat(file)).mode & 0o777).toBe(0o600);
    expect(findCredentials('127.0.0.1:5000', [file])).toEqual({
      username: 'alice',
      password: 'pw3',
    });
    expect(await removeCredentials('127.0.0.1:5000', file)).toBe(true);
    expect(await removeCredentials('127.0.0.1:5000', file)).toBe(false);
    expect(findCredentials('127.0.0.1:5000', [file])).toBeUndefined();
    expect(findCredentials('other.test', [file])).toEqual({ username: 'bob', password: 'pw2' });
  });
});

describe('WWW-Authenticate', () => {
  it('parses Bearer and Basic challenges', () => {
    expect(
      parseChallenge(
        'Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:pull,push"',
      ),
    ).toEqual({
      scheme: 'bearer',
      params: {
        realm: 'http://127.0.0.1:1/token',
        service: 'reg',
        scope: 'repository:a/b:pull,push',
      },
    });
    expect(parseChallenge('Basic realm="cpm test"')).toEqual({
      scheme: 'basic',
      params: { realm: 'cpm test' },
    });
  });
});
