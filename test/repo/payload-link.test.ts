/**
 * A payload directory (build.yaml `payload:` or `root/`) that a symlink leads out of the tree is
 * never packed: the loader reports it, and repo create resolves it again when it reads it, so a
 * link swapped after loading does not pack host files either.
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { CpmError } from '../../src/errors.js';
import { createFromTree, createInputOf, createRepository } from '../../src/repo/create.js';
import { loadTree } from '../../src/tree/tree.js';

let tmp: string;
let tree: string;
let host: string;
const made: string[] = [];

async function write(file: string, text: string): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, text);
}

const def = (name: string): string => `category: system\nname: ${name}\nversion: "1"\n`;

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-payload-link-'));
  made.push(tmp);
  tree = path.join(tmp, 'packages');
  host = path.join(tmp, 'host');
  await write(path.join(host, 'secret'), 'host file\n');
  await write(path.join(tree, 'system/a/definition.yaml'), def('a'));
  await write(path.join(tree, 'system/b/definition.yaml'), def('b'));
  await write(path.join(tree, 'system/b/build.yaml'), 'includes: [^/etc]\n');
  await write(path.join(tree, 'shared/etc/a.conf'), 'inside\n');
  // Both payloads are links that stay inside the tree (allowed).
  await fsp.symlink('../../shared', path.join(tree, 'system/a/root'));
  await fsp.symlink('../../shared', path.join(tree, 'system/b/root'));
});

afterAll(async () => {
  await Promise.all(made.map((d) => fsp.rm(d, { recursive: true, force: true })));
});

async function inputs(): Promise<ReturnType<typeof createInputOf>[]> {
  const t = await loadTree(tree);
  expect(t.problems).toEqual([]);
  return t.packages.map((p) => createInputOf(p, tmp));
}

describe('payload symlinks', () => {
  it('a link inside the tree is packed', async () => {
    const r = await createRepository(await inputs(), {
      output: `dir://${tmp}/out`,
      sourceDateEpoch: 1,
    });
    expect(r.packed).toEqual(['system/a@1', 'system/b@1']);
  });

  it.each(['system/a', 'system/b'])(
    'a root/ link of %s swapped to the host after loading is refused at use, naming the file and the link',
    async (pkg) => {
      const list = await inputs();
      const link = path.join(tree, pkg, 'root');
      await fsp.rm(link);
      await fsp.symlink(host, link);
      const e = await createRepository(list, { output: `dir://${tmp}/out`, sourceDateEpoch: 1 })
        .then(() => undefined)
        .catch((x: unknown) => x);
      expect(e).toBeInstanceOf(CpmError);
      expect((e as CpmError).code).toBe('E_UNSAFE_ENTRY');
      expect((e as CpmError).message).toContain(`packages/${pkg}/definition.yaml`);
      expect((e as CpmError).message).toContain(`${link} is a symlink to ${host}`);
      expect((e as CpmError).context).toMatchObject({ package: `${pkg}@1`, path: link });
      // No repository index was written.
      const layout = JSON.parse(await fsp.readFile(path.join(tmp, 'out/index.json'), 'utf8')) as {
        manifests: unknown[];
      };
      expect(layout.manifests).toEqual([]);
    },
  );

  it('a link out of the tree at load time leaves the package out, naming the file and the link', async () => {
    const link = path.join(tree, 'system/a/root');
    await fsp.rm(link);
    await fsp.symlink(host, link);
    const r = await createFromTree(tree, { output: `dir://${tmp}/out`, sourceDateEpoch: 1 });
    expect(r.packed).toEqual(['system/b@1']);
    expect(r.warnings).toEqual([
      expect.stringMatching(
        /^left out system\/a@1: packages\/system\/a\/definition\.yaml(:\d+)?: root\/: payload directory packages\/system\/a\/root is a symlink to .*\/host, outside the tree$/,
      ),
    ]);
    await expect(
      createFromTree(tree, { output: `dir://${tmp}/out2`, sourceDateEpoch: 1, strict: true }),
    ).rejects.toThrow(/root\/: payload directory packages\/system\/a\/root is a symlink/);
  });
});
