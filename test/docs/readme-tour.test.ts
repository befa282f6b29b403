/**
 * The README's five-minute tour, run as written: every ```sh block of the section that works on
 * the machine alone (tree, repository + install, images) is extracted from README.md and run
 * line by line with `sh -e`, `cpm` being this checkout's bin/cpm.js. A doc that drifts from the
 * code fails here. Substitutions (the only ones):
 *   /srv/cpm-repo → a temporary directory (the repository)
 *   /tmp/root     → a temporary directory (the root)
 *   rootfs.squashfs, out/, root.tar → written in a temporary working directory
 * The registry blocks (127.0.0.1:5000 and the `cpm build` example) are not run here: they need a
 * registry with a base image and a tree with build steps (see test/cli/everyday.test.ts and
 * test/cli/flagship.test.ts for those flows).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROJECT } from '../install/base-images.js';
import { tmpDir } from '../install/helpers.js';

/** The ```sh blocks of a markdown section (from its heading to the next heading of its level). */
export function shBlocks(file: string, heading: string): string[] {
  const text = readFileSync(file, 'utf8');
  const start = text.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`${file}: no section "${heading}"`);
  const level = heading.split(' ')[0]!;
  const rest = text.slice(start + heading.length + 2);
  const end = rest.search(new RegExp(`\\n${level} `));
  const section = end < 0 ? rest : rest.slice(0, end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

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
