/**
 * The recipes of README.md (registry block), docs/bases.md and docs/ci.md, run as written: each
 * block is extracted from the markdown and run line by line with `sh -ec`, `cpm` being this
 * checkout's bin/cpm.js, against real registries on 127.0.0.1 (docker-registry; the CI one with
 * htpasswd auth) and the suite's small shell base (test/install/base-images.ts) where the docs
 * name a distribution image. A doc that drifts from the code fails here. Substitutions (the only
 * ones) are listed per block; what is not run:
 *  - docs/bases.md "Ubuntu, Fedora, openSUSE": pulls from public registries;
 *  - the Dockerfiles that install into `/` (docs/bases.md's second, docs/ci.md's): they change the
 *    machine they run on; test/image/sea.test.ts runs those steps inside a bubblewrap box;
 *  - docs/ci.md's `npm ci && npm run build` step (this checkout is built) and the `uses:` steps.
 * The Debian block runs mmdebstrap only with CPM_TEST_MMDEBSTRAP=1, as test/install/base.test.ts;
 * otherwise its first line is replaced by a copy of the shell base tar.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { PROJECT, shellBaseTar, skopeoPush, tarOf, umociImage } from '../install/base-images.js';
import { tmpDir } from '../install/helpers.js';
import { codeBlocks, runLines, shBlocks, substitute } from '../support/docs.js';
import { writeTree } from '../support/layers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';

const README = path.join(PROJECT, 'README.md');
const BASES = path.join(PROJECT, 'docs/bases.md');
const CI = path.join(PROJECT, 'docs/ci.md');
const PASSWORD = 'gh-token-0123';
const MMDEBSTRAP = !!process.env.CPM_TEST_MMDEBSTRAP;

let work: string;
let env: NodeJS.ProcessEnv;
let reg: RegistryInstance;
let ghcr: RegistryInstance;
/** The shell base as an uncompressed tar, and as an OCI layout `layout:bookworm`. */
let baseTar: string;
let baseLayout: string;

/** A plain (non-cpm) image of a few files as an OCI layout tag. */
async function plainImage(
  layout: string,
  tag: string,
  files: Record<string, string>,
): Promise<string> {
  const dir = tmpDir('cpm-recipe-img-');
  await writeTree(dir, files);
  return umociImage(layout, tag, [tarOf(dir, `${dir}.tar`)]);
}

function run(block: string, subs: Record<string, string>, cwd = work) {
  mkdirSync(cwd, { recursive: true });
  return runLines(substitute(block, subs), { cwd, env });
}

beforeAll(async () => {
  work = tmpDir('cpm-recipes-');
  const bin = path.join(work, 'bin');
  mkdirSync(bin);
  writeFileSync(
    path.join(bin, 'cpm'),
    `#!/bin/sh\nexec "${process.execPath}" "${path.join(PROJECT, 'bin/cpm.js')}" "$@"\n`,
  );
  chmodSync(path.join(bin, 'cpm'), 0o755);
  writeFileSync(
    path.join(work, 'cpm.yaml'),
    `cache_dir: ${path.join(work, 'cache')}\nrepos_confdir: ${path.join(work, 'repos.conf.d')}\n`,
  );
  env = {
    ...process.env,
    PATH: `${bin}:${process.env.PATH}`,
    CPM_CONFIG: path.join(work, 'cpm.yaml'),
    REGISTRY_AUTH_FILE: path.join(work, 'auth.json'),
    DOCKER_CONFIG: path.join(work, 'docker'),
  };
  symlinkSync(path.join(PROJECT, 'packages-tree'), path.join(work, 'packages-tree'));
  reg = await startRegistry();
  ghcr = await startRegistry({ htpasswd: { 'ci-bot': PASSWORD } });
  baseTar = shellBaseTar(work);
  baseLayout = umociImage(path.join(work, 'base-layout'), 'bookworm', [baseTar]);
}, 120_000);
afterAll(async () => {
  await reg?.stop();
  await ghcr?.stop();
});

describe('README: the registry block', () => {
  it('publishes, adds, searches, unpacks a base and installs a package and an image', async () => {
    const blocks = shBlocks(README, '## A five-minute tour');
    const block = blocks.find((b) => b.includes('127.0.0.1:5000/cpm --push'));
    expect(block, 'the README registry block').toBeDefined();
    skopeoPush(baseLayout, `${reg.host}/bases/debian:bookworm`);
    const agent = await plainImage(path.join(work, 'agent-layout'), '1.8', {
      'opt/node-exporter/node_exporter': '#!/bin/sh\necho exporter\n',
    });
    skopeoPush(agent, `${reg.host}/agents/node-exporter:1.8`);
    const mnt = path.join(work, 'readme-mnt');
    const done = run(block!, { '127.0.0.1:5000': reg.host, '/mnt': mnt });
    expect(done.find((d) => d.line.includes('cpm search'))!.out).toContain('system/cos-setup@');
    // over a base with a shell, cos-setup's finalizers ran and what they made is its own
    expect(existsSync(path.join(mnt, 'usr/local/cloud-config'))).toBe(true);
    expect(existsSync(path.join(mnt, 'opt/node-exporter/node_exporter'))).toBe(true);
    const v = runLines(`cpm verify --root ${mnt}`, { cwd: work, env });
    expect(v[0]!.err).toMatch(/0 problem\(s\)/);
  }, 300_000);
});

describe('docs/bases.md', () => {
  it('cpm rootfs init: from a registry and from an OCI layout; list and verify', () => {
    const [block] = shBlocks(BASES, '## `cpm rootfs init`');
    skopeoPush(baseLayout, `${reg.host}/base:bookworm`);
    const images = path.join(work, 'srv-images');
    umociImage(path.join(images, 'debian'), 'bookworm', [baseTar]);
    const done = run(block!, {
      '127.0.0.1:5000': reg.host,
      '/srv/root': path.join(work, 'bases-srv-root'),
      '/srv/images': images,
      '/mnt': path.join(work, 'bases-mnt'),
    });
    // the comment shows what `cpm list --installed` prints
    const list = done.find((d) => d.line.startsWith('cpm list'))!;
    expect(list.out).toMatch(/^images\/base@0\+bookworm\texplicit base\t/m);
  }, 120_000);

  it('image references as packages: an OCI layout and a registry image', async () => {
    const [block] = shBlocks(BASES, '## Image references as packages');
    const cwd = path.join(work, 'bases-refs');
    mkdirSync(cwd);
    await plainImage(path.join(cwd, 'out/layout'), 'v1', { 'opt/layout/README': 'v1\n' });
    const bb = await plainImage(path.join(work, 'bb-layout'), '1.36', {
      'opt/busybox/busybox': '#!/bin/sh\n',
    });
    skopeoPush(bb, `${reg.host}/tools/busybox:1.36`);
    const root = path.join(work, 'bases-refs-root');
    run(block!, { '127.0.0.1:5000': reg.host, '/srv/root': root }, cwd);
    const list = runLines(`cpm list --installed --root ${root}`, { cwd, env })[0]!.out;
    expect(list).toMatch(/^images\/layout@v1\t/m);
    expect(list).toMatch(/^images\/busybox@1\.36\t/m);
  }, 120_000);

  it(`Debian from packages: umoci, rootfs init, skopeo copy${MMDEBSTRAP ? ' (mmdebstrap)' : ''}`, () => {
    const [block] = shBlocks(BASES, '### Debian (from packages, no registry involved)');
    const cwd = path.join(work, 'bases-debian');
    mkdirSync(cwd);
    let text = block!;
    if (!MMDEBSTRAP) {
      const line = text.split('\n').find((l) => l.startsWith('mmdebstrap '));
      expect(line, 'the mmdebstrap line').toBeDefined();
      copyFileSync(baseTar, path.join(cwd, 'debian.tar'));
      text = text.replace(line!, '');
    }
    const root = path.join(work, 'bases-debian-root');
    run(text, { '127.0.0.1:5000': reg.host, '/srv/root': root }, cwd);
    expect(readFileSync(path.join(root, 'etc/os-release'), 'utf8')).toMatch(
      MMDEBSTRAP ? /Debian/ : /cpm shell base/,
    );
    const m = execFileSync(
      'skopeo',
      ['inspect', '--tls-verify=false', `docker://${reg.host}/base:bookworm`],
      { encoding: 'utf8' },
    );
    expect(m).toContain('"Layers"');
  }, 600_000);

  it('the Dockerfile that assembles a root: its RUN step, its COPY sources as the doc says', () => {
    const [dockerfile] = codeBlocks(BASES, '## In a Dockerfile', 'Dockerfile');
    const ctx = path.join(work, 'df-context');
    mkdirSync(ctx);
    // the build context: out/repo from repo create, bases/ an OCI layout with tag bookworm
    runLines('cpm repo create --tree packages-tree --output dir://df-context/out/repo', {
      cwd: work,
      env,
    });
    cpSync(path.join(work, 'base-layout'), path.join(ctx, 'bases'), { recursive: true });
    const image = path.join(work, 'df-image');
    const subs: Record<string, string> = { '/rootfs': path.join(image, 'rootfs') };
    for (const m of dockerfile!.matchAll(/^COPY (\S+) (\S+)$/gm)) {
      const [from, to] = [m[1]!, m[2]!];
      if (from.startsWith('out/cpm-')) continue; // the binary: this checkout's cpm on PATH
      expect(existsSync(path.join(ctx, from)), `COPY ${from}: not in the build context`).toBe(true);
      subs[to.replace(/\/$/, '')] = path.join(ctx, from.replace(/\/$/, ''));
    }
    const runStep = /^RUN ([\s\S]*?[^\\])\n(?!\s)/m.exec(dockerfile!)![1]!;
    run(runStep, subs, ctx);
    expect(existsSync(path.join(image, 'rootfs/usr/local/cloud-config'))).toBe(true);
  }, 300_000);
});

describe('docs/ci.md', () => {
  it('the GitHub Actions job: validate, log in, build the index and push it', () => {
    const [workflow] = codeBlocks(CI, '## Build and publish the index (GitHub Actions)', 'yaml');
    const wf = parseYaml(workflow!) as {
      jobs: {
        publish: { env: Record<string, string | number>; steps: Array<{ run?: string }> };
      };
    };
    const job = wf.jobs.publish;
    const expr = (s: string): string =>
      s
        .replaceAll('${{ secrets.GITHUB_TOKEN }}', PASSWORD)
        .replaceAll('${{ github.actor }}', 'ci-bot')
        .replaceAll('${{ github.repository_owner }}', 'owner');
    const jobEnv: Record<string, string> = {};
    for (const [k, v] of Object.entries(job.env)) jobEnv[k] = expr(String(v));
    expect(jobEnv.REGISTRY).toBe('ghcr.io');
    jobEnv.REGISTRY = ghcr.host; // the registry: a local one with htpasswd auth
    const checkout = path.join(work, 'ci-checkout');
    mkdirSync(checkout);
    for (const d of ['bin', 'packages-tree'])
      symlinkSync(path.join(PROJECT, d), path.join(checkout, d));
    const steps = job.steps.filter((s) => s.run !== undefined).map((s) => expr(s.run!));
    expect(steps[0]).toBe('npm ci && npm run build'); // this checkout is built already
    for (const step of steps.slice(1))
      runLines(step.replace(/\n/g, ' '), { cwd: checkout, env: { ...env, ...jobEnv } });
    const summary = JSON.parse(readFileSync(path.join(checkout, 'repo-create.json'), 'utf8')) as {
      url: string;
      pushed: boolean;
      packages: number;
    };
    expect(summary.url).toBe(`oci://${ghcr.host}/owner/cpm-packages`);
    expect(summary.pushed).toBe(true);
    expect(summary.packages).toBeGreaterThan(10);
  }, 300_000);

  it('build the OS image in CI: rootfs init, install, image oci --push, image squashfs', () => {
    const [block] = shBlocks(CI, '## Build the OS image in CI');
    skopeoPush(baseLayout, `${reg.host}/cos/base:1.0`);
    const cwd = path.join(work, 'ci-os');
    const done = run(
      block!,
      { 'registry.example.com': reg.host, 'ghcr.io/OWNER': `${ghcr.host}/owner` },
      cwd,
    );
    expect(done).toHaveLength(4);
    expect(existsSync(path.join(cwd, 'root/usr/local/cloud-config'))).toBe(true);
    expect(existsSync(path.join(cwd, 'rootfs.squashfs'))).toBe(true);
    const tags = execFileSync(
      'skopeo',
      [
        'list-tags',
        '--tls-verify=false',
        '--creds',
        `ci-bot:${PASSWORD}`,
        `docker://${ghcr.host}/owner/cos-system`,
      ],
      { encoding: 'utf8' },
    );
    expect(tags).toContain('"1.0"');
  }, 300_000);
});
