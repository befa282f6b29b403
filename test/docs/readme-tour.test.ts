/**
 * The README's five-minute tour, run as written: every ```sh block of the section that works on
 * the machine alone (tree, repository + install, images) is extracted from README.md and run
 * line by line with `sh -e`, `cpm` being this checkout's bin/cpm.js. A doc that drifts from the
 * code fails here. Substitutions (the only ones):
 *   /srv/cpm-repo → a temporary directory (the repository)
 *   /tmp/root     → a temporary directory (the root)
 *   rootfs.squashfs, out/, root.tar → written in a temporary working directory
 * The registry block (127.0.0.1:5000) runs in test/docs/recipes.test.ts, with a registry and a
 * base image; the `cpm build` example needs a tree with build steps (test/build covers it).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROJECT } from '../install/base-images.js';
import { tmpDir } from '../install/helpers.js';
import { shBlocks } from '../support/docs.js';

let work: string;
let bin: string;

beforeAll(() => {
  work = tmpDir('cpm-readme-');
  bin = path.join(work, 'bin');
  mkdirSync(bin);
  writeFileSync(
    path.join(bin, 'cpm'),
    `#!/bin/sh\nexec "${process.execPath}" "${path.join(PROJECT, 'bin/cpm.js')}" "$@"\n`,
  );
  chmodSync(path.join(bin, 'cpm'), 0o755);
  writeFileSync(path.join(work, 'cpm.yaml'), `cache_dir: ${path.join(work, 'cache')}\n`);
  execFileSync('ln', ['-s', path.join(PROJECT, 'packages-tree'), path.join(work, 'packages-tree')]);
});

function runBlock(block: string): void {
  const script = block
    .replaceAll('/srv/cpm-repo', path.join(work, 'srv-cpm-repo'))
    .replaceAll('/tmp/root', path.join(work, 'root'));
  for (const line of script.split('\n').filter((l) => l.trim() !== '')) {
    const r = spawnSync('sh', ['-ec', line], {
      cwd: work,
      encoding: 'utf8',
      env: {
        ...process.env,
        PATH: `${bin}:${process.env.PATH}`,
        CPM_CONFIG: path.join(work, 'cpm.yaml'),
      },
    });
    expect(r.status, `README line failed: ${line}\n${r.stdout}${r.stderr}`).toBe(0);
  }
}

describe('README: A five-minute tour', () => {
  const blocks = shBlocks(path.join(PROJECT, 'README.md'), '## A five-minute tour');

  it('has the blocks this test runs', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(4);
    expect(blocks[0]).toContain('cpm tree validate');
    expect(blocks[1]).toContain('cpm repo create');
    expect(blocks.find((b) => b.includes('cpm image squashfs'))).toBeDefined();
  });

  it('runs the tree, repository/install and image blocks as written', () => {
    runBlock(blocks[0]!);
    runBlock(blocks[1]!);
    runBlock(blocks.find((b) => b.includes('cpm image squashfs'))!);
  }, 300_000);
});
