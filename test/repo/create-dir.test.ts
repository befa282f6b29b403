import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRepository, type CreateInput } from '../../src/repo/create.js';
import { LayoutReader } from '../../src/repo/reader.js';
import { createSpec } from '../../src/package/package.js';
import { parseSelector } from '../../src/package/version.js';

const run = promisify(execFile);

function input(
  category: string,
  name: string,
  version: string,
  payloadDir?: string,
  extra: Partial<CreateInput> = {},
): CreateInput {
  return { ...createSpec({ category, name, version }), payloadDir, ...extra };
}

let tmp: string;
let inputs: CreateInput[];

async function write(file: string, text: string, mode = 0o644): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, text, { mode });
}

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-repo-create-'));
  await write(path.join(tmp, 'tree/a/root/usr/bin/a'), '#!/bin/sh\necho a\n', 0o755);
  await write(path.join(tmp, 'tree/a/root/etc/a.conf'), 'x=1\n');
  await write(path.join(tmp, 'tree/b/root/etc/b.conf'), 'b\n');
  inputs = [
    input('system', 'a', '1.0+1', path.join(tmp, 'tree/a/root'), {
      requires: [{ category: 'system', name: 'b', version: '>=1', selector: parseSelector('>=1') }],
      finalize: { install: ['echo hi'], shell: ['sh', '-c'] },
      description: 'package a',
    }),
    input('system', 'b', '1.0-1', path.join(tmp, 'tree/b/root')),
    input('meta', 'all', '1', undefined, {
      requires: [{ category: 'system', name: 'a', version: '', selector: parseSelector('') }],
    }),
  ];
});

afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('repo create → dir://', () => {
  it('is deterministic: two fresh outputs are byte-identical', async () => {
    const env = { sourceDateEpoch: 1700000000, name: 'test' };
    const r1 = await createRepository(inputs, { ...env, output: `dir://${tmp}/out1` });
    const r2 = await createRepository([...inputs].reverse(), {
      ...env,
      output: `dir://${tmp}/out2`,
    });
    expect(r2.indexDigest).toBe(r1.indexDigest);
    expect(r2.indexManifestDigest).toBe(r1.indexManifestDigest);
    expect(r1.packed).toEqual(['system/a@1.0+1', 'system/b@1.0-1']);
    expect(r1.metaOnly).toEqual(['meta/all@1']);
    const i1 = await fsp.readFile(path.join(tmp, 'out1/index.json'));
    const i2 = await fsp.readFile(path.join(tmp, 'out2/index.json'));
    expect(i2.equals(i1)).toBe(true);
    const blobs1 = (await fsp.readdir(path.join(tmp, 'out1/blobs/sha256'))).sort();
    const blobs2 = (await fsp.readdir(path.join(tmp, 'out2/blobs/sha256'))).sort();
    expect(blobs2).toEqual(blobs1);
  });

  it('reads back through the dir reader with images, finalize and metadata-only packages', async () => {
    const reader = new LayoutReader('dir', `dir://${tmp}/out1`);
    const { index } = await reader.fetchIndex();
    expect(index.repository).toMatchObject({ name: 'test', revision: 1, timestamp: 1700000000 });
    const a = index.packages.find((p) => p.name === 'a')!;
    expect(a.image!.tag).toBe('1.0_p1');
    expect(a.image!.repository).toBe('system/a');
    expect(a.finalize).toEqual({ install: ['echo hi'], shell: ['sh', '-c'] });
    // Schema 2 stores dependencies as compact text.
    expect(a.requires).toBe('system/b >=1');
    expect(index.packages.find((p) => p.name === 'all')!.image).toBeUndefined();
    const layer = a.image!.layers[0]!;
    const chunks: Buffer[] = [];
    for await (const c of await reader.openLayer(a, layer)) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).length).toBe(layer.size);
    expect(reader.imageRef(a)).toBe(`oci:${tmp}/out1:system_sa_c1.0_p1`);
  });

  it('skopeo reads the package images from the layout', async () => {
    const { stdout } = await run('skopeo', ['inspect', `oci:${tmp}/out1:system_sa_c1.0_p1`]);
    const info = JSON.parse(stdout) as { Labels: Record<string, string>; Layers: string[] };
    expect(info.Labels['io.cpm.package.name']).toBe('a');
    expect(info.Labels['io.cpm.package.version']).toBe('1.0+1');
    expect(info.Layers).toHaveLength(1);
  });

  it('is incremental: an unchanged run packs nothing and keeps the index bytes', async () => {
    const out = `dir://${tmp}/out1`;
    const before = await fsp.readFile(path.join(tmp, 'out1/index.json'));
    const again = await createRepository(inputs, {
      output: out,
      sourceDateEpoch: 1700000000,
      name: 'test',
    });
    expect(again.packed).toEqual([]);
    expect(again.reused).toEqual(['system/a@1.0+1', 'system/b@1.0-1']);
    expect(again.changed).toBe(false);
    expect((await fsp.readFile(path.join(tmp, 'out1/index.json'))).equals(before)).toBe(true);

    await write(path.join(tmp, 'tree/b/root/etc/b.conf'), 'b changed\n');
    const changed = await createRepository(inputs, {
      output: out,
      sourceDateEpoch: 1700000000,
      name: 'test',
    });
    expect(changed.packed).toEqual(['system/b@1.0-1']);
    expect(changed.reused).toEqual(['system/a@1.0+1']);
    expect(changed.index.repository.revision).toBe(2);

    // A mode change alone is a change too.
    await fsp.chmod(path.join(tmp, 'tree/b/root/etc/b.conf'), 0o600);
    const mode = await createRepository(inputs, {
      output: out,
      sourceDateEpoch: 1700000000,
      name: 'test',
    });
    expect(mode.packed).toEqual(['system/b@1.0-1']);

    // An image deleted from the output is re-packed even with an equal key.
    const reader = new LayoutReader('dir', out);
    const a = (await reader.fetchIndex()).index.packages.find((p) => p.name === 'a')!;
    await fsp.rm(path.join(tmp, 'out1/blobs/sha256', a.image!.layers[0]!.digest.slice(7)));
    const repaired = await createRepository(inputs, {
      output: out,
      sourceDateEpoch: 1700000000,
      name: 'test',
    });
    expect(repaired.packed).toEqual(['system/a@1.0+1']);
  });

  it('rejects duplicate packages and bad outputs', async () => {
    await expect(
      createRepository([inputs[0]!, inputs[0]!], { output: `${tmp}/dup` }),
    ).rejects.toThrow(/defined twice/);
    await expect(createRepository(inputs, { output: 'ftp://x/y' })).rejects.toThrow(
      /expected dir:\/\/PATH or oci:\/\//,
    );
    await expect(createRepository(inputs, { output: `${tmp}/p`, push: true })).rejects.toThrow(
      /--push applies to oci/,
    );
  });
});
