/**
 * A registry that answers 401 gets the same way out from every command that reads it: install,
 * upgrade, info, search, repo update, pull and an image-reference install all exit with E_AUTH (7)
 * and say `cpm login HOST` (a wrong password: check the credentials). Real CLI, real registry
 * with htpasswd auth.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT } from '../install/base-images.js';
import { tmpDir } from '../install/helpers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';

const run = promisify(execFile);
const BIN = path.join(PROJECT, 'bin/cpm.js');
const PASSWORD = 'pa55-w0rd';

let work: string;
let reg: RegistryInstance;

async function cpm(
  args: string[],
  authFile: string,
  input?: string,
): Promise<{ out: string; err: string; code: number }> {
  const env = {
    ...process.env,
    CPM_CONFIG: path.join(work, 'cpm.yaml'),
    REGISTRY_AUTH_FILE: path.join(work, authFile),
    DOCKER_CONFIG: path.join(work, 'no-docker'),
  };
  const p = run('node', [BIN, ...args], { env, cwd: work, maxBuffer: 64 << 20 });
  if (input !== undefined) p.child.stdin!.end(input);
  try {
    const r = await p;
    return { out: r.stdout, err: r.stderr, code: 0 };
  } catch (e) {
    const x = e as { stdout: string; stderr: string; code: number };
    return { out: x.stdout, err: x.stderr, code: x.code };
  }
}

beforeAll(async () => {
  if (!existsSync(path.join(PROJECT, 'dist/cpm.cjs')))
    throw new Error('dist/ is missing: run "npm run build" first (npm test does it)');
  work = tmpDir('cpm-auth-hint-');
  reg = await startRegistry({ htpasswd: { alice: PASSWORD } });
  writeFileSync(
    path.join(work, 'cpm.yaml'),
    `cache_dir: ${path.join(work, 'cache')}\nrepos_confdir: ${path.join(work, 'repos.conf.d')}\n`,
  );
  const dir = path.join(work, 'tree', 'app', 'hello');
  mkdirSync(path.join(dir, 'root', 'etc'), { recursive: true });
  writeFileSync(path.join(dir, 'definition.yaml'), 'name: hello\ncategory: app\nversion: 1.0\n');
  writeFileSync(path.join(dir, 'root', 'etc', 'hello'), 'hello\n');
  // publish with credentials, as the owner of the registry would
  const login = await cpm(
    ['login', reg.host, '-u', 'alice', '--password-stdin'],
    'good.json',
    PASSWORD,
  );
  expect(login.code, login.err).toBe(0);
  const url = `oci://${reg.host}/cpm`;
  const c = await cpm(['repo', 'create', '--tree', 'tree', '--output', url, '--push'], 'good.json');
  expect(c.code, c.err).toBe(0);
  writeFileSync(
    path.join(work, 'bad.json'),
    JSON.stringify({
      auths: { [reg.host]: { auth: Buffer.from('alice:wrong').toString('base64') } },
    }),
  );
}, 120_000);
afterAll(async () => {
  await reg?.stop();
});

describe('a registry answering 401', () => {
  const url = (): string => `oci://${reg.host}/cpm`;
  const commands: Array<[string, () => string[]]> = [
    ['install --repo', () => ['install', 'app/hello', '--repo', url(), '--root', 'r1', '-y']],
    ['upgrade --repo', () => ['upgrade', '--repo', url(), '--root', 'r1', '-y']],
    ['info --repo', () => ['info', 'app/hello', '--repo', url()]],
    ['search --repo', () => ['search', 'hello', '--repo', url()]],
    ['install IMAGE', () => ['install', `${reg.host}/cpm/hello:1.0`, '--root', 'r2', '-y']],
    ['pull', () => ['pull', `${reg.host}/cpm/hello:1.0`]],
  ];

  it.each(commands)('%s without credentials: E_AUTH and a cpm login hint', async (_, args) => {
    const r = await cpm(args(), 'none.json');
    expect(r.code, r.err).toBe(7);
    expect(r.err).toMatch(/authentication required or refused/);
    expect(r.err).toContain(`hint: log in first: cpm login ${reg.host}`);
  });

  it.each(commands)('%s with a wrong password: check the credentials', async (_, args) => {
    const r = await cpm(args(), 'bad.json');
    expect(r.code, r.err).toBe(7);
    expect(r.err).toContain(`hint: check the credentials (cpm login ${reg.host})`);
  });

  it('a configured repository: repo update, install and upgrade say it too', async () => {
    expect((await cpm(['repo', 'add', 'locked', url()], 'none.json')).code).toBe(0);
    for (const args of [
      ['repo', 'update'],
      ['install', 'app/hello', '--root', 'r3', '-y'],
      ['upgrade', '--root', 'r3', '-y', '-U'],
    ]) {
      const r = await cpm(args, 'none.json');
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(7);
      expect(r.err, args.join(' ')).toContain(`hint: log in first: cpm login ${reg.host}`);
    }
    // with credentials the same commands go through
    const ok = await cpm(['install', 'app/hello', '--root', 'r3', '-y'], 'good.json');
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toContain('installed app/hello@1.0');
  });
});
