/**
 * Every command's --json document, through the real CLI (node bin/cpm.js) against a real
 * registry: the top level is an object (never a bare array) whose keys are the documented ones
 * of src/cli/json-output.ts (docs/cli.md) — every key without a condition present, no key
 * undocumented. Every documented command is run here, so a new --json command needs a line.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JSON_ERROR, JSON_OUTPUT, type JsonKey } from '../../src/cli/json-output.js';
import { tmpDir } from '../install/helpers.js';
import { requireBuild, runCpm } from '../support/cli.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';

let work: string;
let reg: RegistryInstance;
let env: NodeJS.ProcessEnv;

function put(rel: string, text: string): void {
  mkdirSync(path.dirname(path.join(work, rel)), { recursive: true });
  writeFileSync(path.join(work, rel), text);
}

beforeAll(async () => {
  requireBuild();
  work = tmpDir('cpm-json-');
  reg = await startRegistry();
  put(
    'tree/app/hello/definition.yaml',
    'name: hello\ncategory: app\nversion: 1.0\nrequires:\n- category: app\n  name: lib\n',
  );
  put('tree/app/hello/root/etc/hello', 'hello\n');
  put('tree/app/lib/definition.yaml', 'name: lib\ncategory: app\nversion: 1.0\n');
  put('tree/app/lib/root/usr/lib/lib.so', 'lib\n');
  put('payload/etc/p', 'p\n');
  put('cpm.yaml', `cache_dir: ${work}/cache\nrepos_confdir: ${work}/repos.conf.d\n`);
  env = {
    ...process.env,
    CPM_CONFIG: path.join(work, 'cpm.yaml'),
    REGISTRY_AUTH_FILE: path.join(work, 'auth.json'),
    DOCKER_CONFIG: path.join(work, 'docker'),
  };
}, 60_000);
afterAll(async () => {
  await reg?.stop();
});

/** The top level is an object with exactly the documented keys (conditional ones may be absent). */
function expectShape(what: string, doc: unknown, keys: readonly JsonKey[]): void {
  expect(typeof doc, what).toBe('object');
  expect(doc, what).not.toBeNull();
  expect(Array.isArray(doc), `${what}: a bare array`).toBe(false);
  const documented = new Set(keys.map((k) => k.key));
  for (const key of Object.keys(doc as object))
    expect(documented.has(key), `${what}: key "${key}" is not documented`).toBe(true);
  for (const k of keys)
    if (!k.when)
      expect(Object.keys(doc as object), `${what}: documented key missing`).toContain(k.key);
}

const seen = new Set<string>();

/** Runs `cpm ARGS`, expects exit 0 and the documented shape of `command`; returns the document. */
async function json(command: string, args: string[]): Promise<Record<string, unknown>> {
  const r = await runCpm(args, { env, cwd: work });
  expect(r.code, `cpm ${args.join(' ')}: ${r.err}${r.out}`).toBe(0);
  const doc = JSON.parse(r.out) as Record<string, unknown>;
  expectShape(`cpm ${args.join(' ')}`, doc, JSON_OUTPUT[command]!);
  seen.add(command);
  return doc;
}

describe('--json through the CLI', () => {
  it('tree, plan, repository and registry commands', async () => {
    await json('tree validate', ['tree', 'validate', '--tree', 'tree', '--json']);
    const list = await json('tree list', ['tree', 'list', '--tree', 'tree', '--json']);
    expect((list.packages as Array<{ id: string }>).map((p) => p.id).sort()).toEqual([
      'app/hello@1.0',
      'app/lib@1.0',
    ]);
    await json('tree deps', ['tree', 'deps', 'app/hello', '--tree', 'tree', '--json']);
    await json('tree graph', ['tree', 'graph', '--tree', 'tree', '--format', 'json']);
    await json('plan', [
      'plan',
      'install',
      'app/hello',
      '--tree',
      'tree',
      '--root',
      'root',
      '--json',
    ]);

    const ref = `${reg.host}/cpm/p:1.0`;
    await json('pack', [
      'pack',
      'payload',
      '--name',
      'utils/p@1.0',
      '-o',
      'oci:layout:p',
      '--json',
    ]);
    await json('push', ['push', 'oci:layout:p', ref, '--json']);
    await json('pull', ['pull', ref, '--json']);
    await json('login', ['login', reg.host, '-u', 'ci', '-p', 'secret', '--json']);

    await json('repo create', [
      'repo',
      'create',
      '--tree',
      'tree',
      '--output',
      'dir://repo',
      '--json',
    ]);
    // a relative dir:// path is the current directory's, not the repos.conf.d file's
    expect((await runCpm(['repo', 'add', 'local', 'dir://repo'], { env, cwd: work })).code).toBe(0);
    expect(readFileSync(path.join(work, 'repos.conf.d', 'local.yaml'), 'utf8')).toContain(
      `dir://${path.join(work, 'repo')}`,
    );
    await json('repo list', ['repo', 'list', '--json']);
    const upd = await json('repo update', ['repo', 'update', '--json']);
    expect((upd.results as Array<{ status: string }>)[0]!.status).toBe('new');
    await json('search', ['search', 'hello', '--json']);
    await json('info', ['info', 'app/hello', '--json']);
    await json('build', [
      'build',
      '--tree',
      'tree',
      '--output',
      'dir://built',
      '--all',
      '--dry-run',
      '--json',
    ]);
  }, 120_000);

  it('install, query, image and maintenance commands', async () => {
    const dry = await json('install', [
      'install',
      'app/hello',
      '--root',
      'root',
      '-y',
      '--dry-run',
      '--json',
    ]);
    expect(dry.installed).toBeUndefined();
    const done = await json('install', ['install', 'app/hello', '--root', 'root', '-y', '--json']);
    expect(done.installed).toEqual(['app/lib@1.0', 'app/hello@1.0']);
    for (const k of JSON_OUTPUT.install!.filter((x) => x.when === 'not --dry-run'))
      expect(Object.keys(done), k.key).toContain(k.key);

    const list = await json('list', ['list', '--installed', '--root', 'root', '--json']);
    expect(list.root).toBe(path.join(work, 'root'));
    expect((list.packages as Array<{ id: string }>).map((p) => p.id).sort()).toEqual([
      'app/hello@1.0',
      'app/lib@1.0',
    ]);
    const files = await json('files', ['files', 'app/hello', '--root', 'root', '--json']);
    expect(files.package).toBe('app/hello@1.0');
    expect((files.files as Array<{ path: string }>).map((f) => f.path)).toContain('etc/hello');
    await json('owns', ['owns', '/etc/hello', '--root', 'root', '--json']);
    await json('verify', ['verify', '--root', 'root', '--json']);
    await json('recover', ['recover', '--root', 'root', '--json']);
    await json('upgrade', ['upgrade', '--root', 'root', '-y', '--json']);
    await json('reinstall', ['reinstall', 'app/hello', '--root', 'root', '-y', '--json']);
    await json('reclaim', ['reclaim', '--root', 'root', '--dry-run', '--json']);
    await json('image tar', ['image', 'tar', '--root', 'root', '-o', 'root.tar', '--json']);
    await json('image squashfs', ['image', 'squashfs', '--root', 'root', '-o', 'r.sqfs', '--json']);
    await json('image oci', ['image', 'oci', '--root', 'root', '--tag', 'oci:img:1', '--json']);
    await json('uninstall', ['uninstall', 'app/hello', '--root', 'root', '-y', '--json']);
    await json('rootfs init', [
      'rootfs',
      'init',
      '--from',
      'oci:layout:p',
      '--root',
      'r2',
      '--json',
    ]);
    await json('cleanup', ['cleanup', '--dry-run', '--json']);
    await json('demo', ['demo', '--out', 'demo', '--json']);
  }, 240_000);

  it('a failure prints the error object', async () => {
    const r = await runCpm(['info', 'app/nothere', '--json'], { env, cwd: work });
    expect(r.code).toBe(5);
    const doc = JSON.parse(r.out) as { error: { code: string } };
    expectShape('cpm info app/nothere --json', doc, JSON_ERROR);
    expect(doc.error.code).toBe('E_NOT_FOUND');
  });

  it('ran every documented command', () => {
    expect([...seen].sort()).toEqual(Object.keys(JSON_OUTPUT).sort());
  });
});
