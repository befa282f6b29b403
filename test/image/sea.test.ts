/**
 * The single-file cpm (npm run build:dist) runs where there is no Node at all: a Debian minbase
 * root under bubblewrap. Builds the executable once (~10 s once the Node runtime is cached) and a
 * minbase root once per day (mmdebstrap, ~1 min), cached in bench/.work/. Set CPM_SKIP_SEA=1 to
 * skip on machines without network access to the npm registry and Debian mirrors.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeBlocks } from '../support/docs.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';

const project = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const skip = process.env.CPM_SKIP_SEA === '1';
const arch = process.arch === 'arm64' ? 'arm64' : 'x64';
const binary = path.join(project, 'out', `cpm-linux-${arch}`);
const version = (
  JSON.parse(await fsp.readFile(path.join(project, 'package.json'), 'utf8')) as { version: string }
).version;

/** bwrap arguments for a root at `dir` as `/`, with cpm's single-file build on the PATH. */
function boxArgs(dir: string, binary: string): string[] {
  return [
    '--bind',
    dir,
    '/',
    '--dev',
    '/dev',
    '--proc',
    '/proc',
    '--tmpfs',
    '/tmp',
    '--ro-bind',
    binary,
    '/usr/local/bin/cpm',
    '--setenv',
    'PATH',
    '/usr/local/bin:/usr/bin:/bin',
  ];
}

function run(cmd: string, args: string[], opts: { cwd?: string } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd, maxBuffer: 1 << 26 });
  if (r.error) throw r.error;
  return r;
}

async function distIsStale(): Promise<boolean> {
  const main = path.join(project, 'dist', 'cpm.cjs');
  if (!existsSync(main)) return true;
  const built = (await fsp.stat(main)).mtimeMs;
  for (const f of await fsp.readdir(path.join(project, 'src'), { recursive: true })) {
    if (f.endsWith('.ts') && (await fsp.stat(path.join(project, 'src', f))).mtimeMs > built)
      return true;
  }
  return false;
}

/** A Debian minbase root (no Node), made once a day and kept in bench/.work/. */
async function minbaseRoot(): Promise<string> {
  const day = new Date().toISOString().slice(0, 10);
  const base = path.join(project, 'bench', '.work', `minbase-${day}`);
  const root = path.join(base, 'root');
  if (existsSync(path.join(base, 'done'))) return root;
  await fsp.rm(base, { recursive: true, force: true });
  await fsp.mkdir(root, { recursive: true });
  const tar = path.join(base, 'minbase.tar');
  const mm = run('mmdebstrap', ['--quiet', '--variant=minbase', '--format=tar', 'bookworm', tar]);
  expect(mm.status, mm.stderr).toBe(0);
  // Device nodes cannot be made without root; bwrap supplies /dev anyway.
  const x = run('tar', ['-xf', tar, '-C', root, '--exclude=./dev/*', '--no-same-owner']);
  expect(x.status, x.stderr).toBe(0);
  await fsp.rm(tar);
  await fsp.writeFile(path.join(base, 'done'), day);
  return root;
}

describe.skipIf(skip)('single-file cpm (SEA)', () => {
  let root: string;

  beforeAll(async () => {
    // `npm test` builds dist/ first; rebuild only when it is missing or older than src/ (the
    // build rewrites dist/, which other tests running at the same time should not see).
    if (await distIsStale()) {
      const b = run('npm', ['run', '--silent', 'build'], { cwd: project });
      expect(b.status, b.stdout + b.stderr).toBe(0);
    }
    const built = run(process.execPath, [path.join(project, 'build', 'sea.mjs')], { cwd: project });
    expect(built.status, built.stderr).toBe(0);
    // postject's note-name warnings are not shown; the runtime's symbols and debug info are gone
    expect(built.stdout + built.stderr).not.toMatch(/Can't find string offset/);
    const sections = run('readelf', ['-S', '-W', binary], {}).stdout;
    for (const s of ['.symtab', '.debug_info', '.gnu.build.attributes'])
      expect(sections, s).not.toContain(` ${s} `);
    root = await minbaseRoot();
  }, 600_000);

  const inRoot = (args: string[]) =>
    run('bwrap', [
      ...boxArgs(root, binary),
      '--ro-bind',
      path.join(project, 'packages-tree'),
      '/srv/packages-tree',
      '--unsetenv',
      'SOURCE_DATE_EPOCH',
      '--',
      ...args,
    ]);

  it('the root really has no Node', () => {
    const r = inRoot([
      '/bin/sh',
      '-c',
      'command -v node nodejs; ls /usr/bin/node* 2>/dev/null; true',
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('');
  });

  it('cpm --version', () => {
    const r = inRoot(['cpm', '--version']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(version);
  });

  it('cpm tree list on a packages tree', () => {
    const r = inRoot(['cpm', 'tree', 'list', '--tree', '/srv/packages-tree']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^system\/cos-setup@\S+/m);
  });

  it('writes a zstd tar with the runtime’s built-in zstd (no zstd program in the root)', () => {
    const r = inRoot([
      '/bin/sh',
      '-c',
      'command -v zstd && exit 3; SOURCE_DATE_EPOCH=1700000000 cpm image tar --root /srv/packages-tree -o /tmp/t.tar.zst --compression zstd --no-xattrs --json && head -c 4 /tmp/t.tar.zst | od -An -tx1',
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/28 b5 2f fd/);
  });

  it('names the packages to install when no squashfs tool is there', () => {
    const r = inRoot([
      'cpm',
      'image',
      'squashfs',
      '--root',
      '/srv/packages-tree',
      '-o',
      '/tmp/x.sqfs',
    ]);
    expect(r.status).toBe(12);
    expect(r.stderr).toMatch(/squashfs-tools-ng/);
  });

  describe('the Dockerfile RUN step: cpm install -y into / from a registry', () => {
    let reg: RegistryInstance;
    let work: string;
    let box: string;
    const inBox = (script: string) =>
      run('bwrap', [
        ...boxArgs(box, binary),
        '--unsetenv',
        'NODE_EXTRA_CA_CERTS',
        '--',
        '/bin/sh',
        '-c',
        script,
      ]);

    beforeAll(async () => {
      reg = await startRegistry();
      work = await fsp.mkdtemp(path.join(project, 'bench', '.work', 'sea-run-'));
      box = path.join(work, 'root');
      // A copy: the RUN step changes the root, the cached minbase must stay as it is.
      const cp = run('cp', ['-a', root, box]);
      expect(cp.status, cp.stderr).toBe(0);
      // The single-file cpm publishes the tree too (it is the CI job of docs/ci.md).
      const env = `XDG_CACHE_HOME=${work}/cache CPM_CONFIG=/dev/null SOURCE_DATE_EPOCH=0`;
      const pub = run('sh', [
        '-c',
        `${env} ${binary} repo create --tree ${project}/packages-tree --output oci://${reg.host}/cpm --push`,
      ]);
      expect(pub.status, pub.stderr).toBe(0);
    }, 300_000);
    afterAll(async () => {
      await reg?.stop();
      if (work) await fsp.rm(work, { recursive: true, force: true });
    });

    it('runs the RUN step of docs/ci.md as written: cos-setup and its dependencies into /', () => {
      // the Dockerfile's RUN step, its registry this test's (the doc's image is this box)
      const [dockerfile] = codeBlocks(
        path.join(project, 'docs/ci.md'),
        '## A Dockerfile with the single-file cpm',
        'dockerfile',
      );
      const step = /^RUN ([\s\S]*?[^\\])\n(?!\s)/m
        .exec(dockerfile!)![1]!
        .replace(/\\\n\s*/g, '')
        .replaceAll('oci://ghcr.io/OWNER/cpm-packages', `oci://${reg.host}/cpm`);
      expect(step).toContain('cpm install -y system/cos-setup');
      const r = inBox(`${step} && cpm list --installed --json`);
      expect(r.status, r.stderr).toBe(0);
      const listed = (
        JSON.parse(r.stdout.slice(r.stdout.indexOf('{\n'))) as { packages: Array<{ id: string }> }
      ).packages;
      expect(listed.map((p) => p.id.split('@')[0])).toEqual([
        'system/base-config',
        'system/cloud-config-defaults',
        'system/cos-setup',
      ]);
      expect(existsSync(path.join(box, 'var/lib/cpm/installed'))).toBe(true);
    });

    it('runs the finalizers directly in / (no bubblewrap in the image) and verifies clean', () => {
      const r = inBox('cpm reinstall -y system/cos-setup && cpm verify');
      expect(r.status, r.stderr).toBe(0);
      expect(existsSync(path.join(box, 'usr/local/cloud-config'))).toBe(true);
      // a Debian root cpm did not unpack: foreign files are not looked for, and it says why
      expect(r.stderr).toMatch(/foreign files not checked: the root has files no package owns/);
    });
  });
});
