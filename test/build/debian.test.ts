/**
 * `cpm build` on a real Debian bookworm minbase (mmdebstrap, cached for the day; runs when
 * CPM_TEST_MMDEBSTRAP=1 as .ci/run sets): steps that create a system user and chown files to it
 * (the sandbox's full id map), dpkg tools inside the sandbox, a chained package that sees the
 * first one's user, both installed with `cpm install` on a root made by `cpm rootfs init` from the
 * same image (an OCI layout: pushing 170 MB to the test registry costs a minute and tests nothing
 * new); owners kept. No network inside the sandbox (tests reach only 127.0.0.1).
 */
import { existsSync, lstatSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/build/build.js';
import { minbaseTar, umociImage } from '../install/base-images.js';
import { tmpDir } from '../install/helpers.js';
import { writeFiles } from './fixtures.js';
import { runCpm, type CliResult } from '../support/cli.js';

describe.runIf(process.env.CPM_TEST_MMDEBSTRAP === '1')('cpm build on Debian minbase', () => {
  let work: string;
  let ref: string;
  let env: NodeJS.ProcessEnv;

  const cpm = (...args: string[]): Promise<CliResult> => runCpm(args, { env });

  beforeAll(async () => {
    work = tmpDir('cpm-build-deb-');
    env = { ...process.env, CPM_CONFIG: path.join(work, 'cpm.yaml') };
    writeFileSync(env.CPM_CONFIG!, `cache_dir: ${path.join(work, 'cache')}\n`);
    const tar = minbaseTar();
    const layout = path.join(work, 'debian');
    // An OCI layout reference (no registry push of 170 MB): the same puller reads both.
    umociImage(layout, 'bookworm', [tar]);
    ref = `oci:${layout}:bookworm`;
  }, 600_000);

  it('builds with a system user and chowned files, chains on it, installs on the same base', async () => {
    const tree = path.join(work, 'tree');
    writeFiles(tree, {
      'deb/svc/definition.yaml': 'category: deb\nname: svc\nversion: "1.0"\n',
      'deb/svc/build.yaml': [
        `image: ${ref}`,
        'excludes:',
        '- ^/etc',
        '- ^/var/log',
        '- ^/var/cache',
        'steps:',
        '- useradd --system --uid 990 --no-create-home svc',
        '- install -d -o svc -g svc -m 0750 /srv/svc',
        "- dpkg-query -W -f='${Version}' base-files > /srv/svc/base-files-version",
        '- chown svc:svc /srv/svc/base-files-version',
        '',
      ].join('\n'),
      'deb/user/definition.yaml': 'category: deb\nname: user\nversion: "1.0"\n',
      'deb/user/build.yaml': [
        'requires:',
        '- category: deb',
        '  name: svc',
        'steps:',
        '- mkdir -p /usr/share/deb-user',
        '- stat -c %U:%G /srv/svc > /usr/share/deb-user/owner',
        '',
      ].join('\n'),
    });
    const out = `dir://${path.join(work, 'repo')}`;
    const r = await build({
      tree,
      output: out,
      cacheDir: path.join(work, 'cache'),
      network: false,
      jobs: 2,
    });
    expect(r.failed, JSON.stringify(r.packages, null, 1)).toBe(0);
    expect(r.packages.map((p) => [p.id, p.outcome])).toEqual([
      ['deb/svc@1.0', 'built'],
      ['deb/user@1.0', 'built'],
    ]);

    const root = path.join(work, 'root');
    const init = await cpm('rootfs', 'init', '--from', ref, '--root', root);
    expect(init.code, init.err).toBe(0);
    const i = await cpm('install', 'deb/svc', 'deb/user', '--repo', out, '--root', root, '-y');
    expect(i.code, i.err).toBe(0);
    const st = lstatSync(path.join(root, 'srv/svc'));
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([990, 990, 0o750]);
    expect(lstatSync(path.join(root, 'srv/svc/base-files-version')).uid).toBe(990);
    expect(readFileSync(path.join(root, 'srv/svc/base-files-version'), 'utf8')).toMatch(/^12/);
    expect(readFileSync(path.join(root, 'usr/share/deb-user/owner'), 'utf8')).toBe('svc:svc\n');
    expect(existsSync(path.join(root, 'luetbuild'))).toBe(false);
    const v = await cpm('verify', '--root', root);
    expect(v.code, v.out + v.err).toBe(0);
  }, 300_000);
});
