/**
 * Everyday use as with apk and dnf, through the real CLI (node bin/cpm.js) and a real registry:
 * stale indexes are refreshed (metadata_expire, --refresh/-U) or the answer says it is from the
 * cache; repository URLs that are not one are refused, not taken as a directory under $PWD.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT } from '../install/base-images.js';
import { tmpDir } from '../install/helpers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';
import { runCpm, type CliResult } from '../support/cli.js';

const run = promisify(execFile);
const BIN = path.join(PROJECT, 'bin/cpm.js');

let work: string;
let reg: RegistryInstance;

function cpm(args: string[], config = 'cpm.yaml'): Promise<CliResult> {
  return runCpm(args, { env: { ...process.env, CPM_CONFIG: path.join(work, config) }, cwd: work });
}

/** A one-package tree: app/hello at `version`, one file. */
function tree(version: string): string {
  const dir = path.join(work, `tree-${version}`, 'app', 'hello');
  mkdirSync(path.join(dir, 'root', 'etc'), { recursive: true });
  writeFileSync(
    path.join(dir, 'definition.yaml'),
    `name: hello\ncategory: app\nversion: ${version}\n`,
  );
  writeFileSync(path.join(dir, 'root', 'etc', 'hello'), `hello ${version}\n`);
  return path.join(work, `tree-${version}`);
}

beforeAll(async () => {
  if (!existsSync(path.join(PROJECT, 'dist/cpm.cjs')))
    throw new Error('dist/ is missing: run "npm run build" first (npm test does it)');
  work = tmpDir('cpm-everyday-');
  reg = await startRegistry();
  const common = `cache_dir: ${path.join(work, 'cache')}\nrepos_confdir: ${path.join(work, 'repos.conf.d')}\n`;
  writeFileSync(path.join(work, 'cpm.yaml'), common);
  writeFileSync(path.join(work, 'expire.yaml'), `${common}metadata_expire: 1s\n`);
}, 60_000);
afterAll(async () => {
  await reg?.stop();
});

describe('a stale index', () => {
  it('upgrade says the answer is from the cache; -U refreshes; metadata_expire refreshes by itself', async () => {
    const url = `oci://${reg.host}/cpm`;
    /** Publishes app/hello at `version` to the registry. */
    const publish = async (version: string): Promise<void> => {
      const r = await cpm(['repo', 'create', '--tree', tree(version), '--output', url, '--push']);
      expect(r.code, r.err).toBe(0);
    };
    await publish('1.0');
    expect((await cpm(['repo', 'add', 'local', url])).code).toBe(0);
    const i = await cpm(['install', 'app/hello', '--root', 'root', '-y']);
    expect(i.code, i.err).toBe(0);
    expect(i.out).toContain('installed app/hello@1.0');

    // a new version is published; the cached index does not know it yet
    await publish('1.1');
    const stale = await cpm(['upgrade', '--root', 'root', '-y']);
    expect(stale.code, stale.err).toBe(0);
    expect(stale.out).toBe('nothing to do\n');
    expect(stale.err).toMatch(
      /^hint: answered from cached indexes \(local fetched \d+s ago\); cpm upgrade --refresh \(-U\) fetches them first$/m,
    );
    const fresh = await cpm(['upgrade', '--root', 'root', '-y', '-U']);
    expect(fresh.code, fresh.err).toBe(0);
    expect(fresh.out).toContain('installed app/hello@1.1');

    // metadata_expire: 1s — an index older than that is fetched again before use
    await publish('1.2');
    await new Promise((r) => setTimeout(r, 1200));
    const expired = await cpm(['upgrade', '--root', 'root', '-y'], 'expire.yaml');
    expect(expired.code, expired.err).toBe(0);
    expect(expired.out).toContain('installed app/hello@1.2');
  }, 120_000);
});

describe('repository URLs', () => {
  it('a registry written without oci:// and an unknown scheme are usage errors, nothing added', async () => {
    const a = await cpm(['repo', 'add', 'cos', `${reg.host}/cpm`]);
    expect(a.code).toBe(2);
    expect(a.err).toContain(`looks like a registry (${reg.host}), not a directory`);
    expect(a.err).toContain(`hint: write oci://${reg.host}/cpm for a registry`);
    const f = await cpm(['repo', 'add', 'cos', 'ftp://x']);
    expect(f.code).toBe(2);
    expect(f.err).toContain('ftp:// is not a repository URL scheme');
    expect(existsSync(path.join(work, 'repos.conf.d', 'cos.yaml'))).toBe(false);
    const i = await cpm(['install', 'app/hello', '--repo', `${reg.host}/cpm`, '--root', 'r2']);
    expect(i.code).toBe(2);
    expect(i.err).toContain(`--repo ${reg.host}/cpm looks like a registry`);
  }, 60_000);
});

describe('errors that point the right way', () => {
  const repo = () => `dir://${path.join(work, 'typo-repo')}`;
  beforeAll(async () => {
    const r = await cpm([
      'repo',
      'create',
      '--tree',
      path.join(PROJECT, 'packages-tree'),
      '--output',
      repo(),
    ]);
    expect(r.code, r.err).toBe(0);
  }, 60_000);

  it('a typo gets "did you mean"; info does not send you to a search that finds nothing', async () => {
    const i = await cpm(['install', 'system/cos-setpu', '--repo', repo(), '--root', 'typo', '-y']);
    expect(i.code).toBe(5);
    expect(i.err).toContain('hint: did you mean system/cos-setup?');
    const n = await cpm(['info', 'system/cos-setpu', '--repo', repo()]);
    expect(n.code).toBe(5);
    expect(n.err).toContain('hint: did you mean system/cos-setup?');
    expect(n.err).not.toContain('cpm search cos-setpu');
  });

  it('info against a closed port is a network error with its own exit code, not "no package"', async () => {
    const n = await cpm(['info', 'system/cos-setup', '--repo', 'oci://127.0.0.1:1/cpm']);
    expect(n.code).toBe(7);
    expect(n.err).toMatch(/ECONNREFUSED/);
    expect(n.err).not.toMatch(/no package/);
  });

  it('repo update of an unknown name names the configured ones; empty and broken files in repos.conf.d', async () => {
    const u = await cpm(['repo', 'update', 'nosuchrepo']);
    expect(u.code).toBe(5);
    expect(u.err).toContain('no repository named "nosuchrepo" is configured (configured: local)');
    const dir = path.join(work, 'repos.conf.d');
    writeFileSync(path.join(dir, 'empty.yaml'), '');
    const l = await cpm(['repo', 'list']);
    expect(l.code, l.err).toBe(0);
    expect(l.err).toBe(
      `cpm: warning: ${path.join(dir, 'empty.yaml')}: no repository in it, ignored\n`,
    );
    writeFileSync(path.join(dir, 'broken.yaml'), 'name: b\nurls: [oci://x\n');
    const b = await cpm(['repo', 'list']);
    expect(b.err).toMatch(new RegExp(`cpm: warning: ${path.join(dir, 'broken.yaml')}:\\d+: `));
    expect(b.err).not.toMatch(/\(node:\d+\)|--trace-warnings/);
    await import('node:fs').then((fs) => {
      fs.rmSync(path.join(dir, 'empty.yaml'));
      fs.rmSync(path.join(dir, 'broken.yaml'));
    });
  });

  it('CPM_CONFIG= (empty) is unset; --tree that does not exist is a clear error', async () => {
    const env = { ...process.env, CPM_CONFIG: '' };
    const r = await run('node', [BIN, '--version'], { env }).then(
      () => 0,
      (e: { code: number }) => e.code,
    );
    expect(r).toBe(0);
    const l = await run('node', [BIN, 'list', '--installed', '--root', work], { env }).then(
      (x) => ({ code: 0, err: x.stderr }),
      (e: { code: number; stderr: string }) => ({ code: e.code, err: e.stderr }),
    );
    expect(l.err).not.toContain("open ''");
    expect(l.code).toBe(0);
    const t = await cpm([
      'install',
      'x/y',
      '--tree',
      path.join(work, 'nope'),
      '--root',
      'tr',
      '-y',
    ]);
    expect(t.code).toBe(5);
    expect(t.err).toContain(`cpm: packages tree ${path.join(work, 'nope')} does not exist`);
  });
});
