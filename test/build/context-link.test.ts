/**
 * The build context is the package directory: one reached through a directory symlink that leads
 * out of the tree is not copied into a build (it would bring host files in); the package fails
 * before anything runs, naming its definition file and the link. A link inside the tree builds.
 */
import { mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { build } from '../../src/build/build.js';
import { tmpDir } from '../install/helpers.js';
import { writeFiles } from './fixtures.js';

describe('cpm build: the build context stays inside the tree', () => {
  it('a package directory linked from outside fails; one linked inside builds', async () => {
    const work = tmpDir('cpm-context-link-');
    const tree = path.join(work, 'packages');
    const host = path.join(work, 'host');
    writeFiles(host, {
      'definition.yaml': 'category: x\nname: outside\nversion: "1"\n',
      'build.yaml': 'steps: []\n',
      'secret.txt': 'host file\n',
    });
    writeFiles(tree, {
      'shared/in/definition.yaml': 'category: x\nname: inside\nversion: "1"\n',
      'shared/in/build.yaml': 'steps: []\n',
    });
    mkdirSync(path.join(tree, 'links'));
    symlinkSync(host, path.join(tree, 'links/out'));
    symlinkSync('../shared/in', path.join(tree, 'links/in'));
    const r = await build({
      tree,
      output: `dir://${path.join(work, 'out')}`,
      cacheDir: path.join(work, 'cache'),
      jobs: 1,
      network: false,
    });
    const by = Object.fromEntries(r.packages.map((o) => [o.id, o]));
    expect(by['x/outside@1']).toMatchObject({ outcome: 'failed' });
    expect(by['x/outside@1']!.error).toBe(
      `x/outside@1: packages/links/out/definition.yaml: build context ${path.join(tree, 'links/out')} is a symlink to ${host}, outside the tree`,
    );
    expect(by['x/inside@1']!.outcome).toBe('built');
  });
});
