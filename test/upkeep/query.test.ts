/** Read-only views of a root (src/upkeep/query.ts): list, files, owns, verify. */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpmError } from '../../src/errors.js';
import { installPackages } from '../../src/rootfs/index.js';
import { checkRoot, filesOf, listInstalled, ownersOf, verify } from '../../src/upkeep/query.js';
import { layerFromFiles, step, tmpDir } from '../install/helpers.js';

async function installed(): Promise<string> {
  const root = tmpDir();
  await installPackages(root, [
    step('app/one@1.0', [layerFromFiles({ 'usr/bin/one': 'one', 'usr/share/one/doc': 'd' })]),
    step('app/two@2.0', [layerFromFiles({ 'usr/bin/two': 'two' })]),
  ]);
  return root;
}

describe('upkeep queries', () => {
  it('lists packages, their files and the owner of a path', async () => {
    const root = await installed();
    expect(listInstalled({ root }).map((p) => `${p.spec.category}/${p.spec.name}`)).toEqual([
      'app/one',
      'app/two',
    ]);
    expect(filesOf({ root }, 'app/one').map((f) => f.path)).toContain('usr/bin/one');
    expect(ownersOf({ root }, '/usr/bin/two').owners).toEqual(['app/two@2.0']);
    expect(ownersOf({ root }, '/usr/bin/none').owners).toEqual([]);
  });

  it('verify names missing, modified and foreign files, and is clean otherwise', async () => {
    const root = await installed();
    expect((await verify({ root })).problems).toEqual([]);
    rmSync(path.join(root, 'usr/bin/one'));
    writeFileSync(path.join(root, 'usr/bin/two'), 'changed');
    writeFileSync(path.join(root, 'usr/share/one/stray'), 'x');
    const report = await verify({ root }, undefined, { foreign: true });
    expect(report.problems.map((p) => `${p.kind} ${p.path}`).sort()).toEqual([
      'foreign /usr/share/one/stray',
      'missing /usr/bin/one',
      'modified /usr/bin/two',
    ]);
    const quiet = await verify({ root }, undefined, { foreign: false });
    expect(quiet.problems.some((p) => p.kind === 'foreign')).toBe(false);
  });

  it('a root that does not exist, or is a file, is an error rather than an empty answer', () => {
    const base = tmpDir();
    expect(() => checkRoot(path.join(base, 'nope'), true)).toThrow(CpmError);
    mkdirSync(path.join(base, 'd'));
    writeFileSync(path.join(base, 'f'), '');
    expect(() => checkRoot(path.join(base, 'f'), true)).toThrow(CpmError);
    expect(() => checkRoot(path.join(base, 'd'), true)).not.toThrow();
  });
});
