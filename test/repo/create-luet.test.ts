/** repo create on luet trees: per-package problems leave that package out; includes/excludes filter payloads. */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createFromTree } from '../../src/repo/create.js';

function mkTree(files: Record<string, string>): string {
  const root = join(mkdtempSync(join(tmpdir(), 'cpm-luetrepo-')), 'packages');
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), text);
  }
  return root;
}

/** Paths in the (only) layer of a package, from the dir repository's blobs. */
function layerFiles(repoDir: string, digest: string): string[] {
  const hex = digest.slice('sha256:'.length);
  const find = (d: string): string | undefined => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        const hit = find(p);
        if (hit) return hit;
      } else if (e.name === hex) return p;
    }
    return undefined;
  };
  const blob = find(repoDir);
  if (!blob) throw new Error(`blob ${digest} not found`);
  return execFileSync('tar', ['-tzf', blob], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.replace(/^\.\//, '').replace(/\/$/, ''))
    .filter((l) => l !== '' && l !== '.')
    .sort();
}

describe('repo create on a tree with problems', () => {
  const files = {
    'good/definition.yaml': 'name: good\ncategory: s\nversion: "1"\n',
    'good/build.yaml': 'excludes:\n  - ^/etc\n',
    'good/root/usr/bin/tool': 'x\n',
    'good/root/etc/conf': 'y\n',
    'inc/definition.yaml': 'name: inc\ncategory: s\nversion: "1"\n',
    'inc/build.yaml': 'includes:\n  - /usr/bin/.*\n',
    'inc/root/usr/bin/tool': 'x\n',
    'inc/root/usr/share/doc': 'd\n',
    'bad/definition.yaml': 'name: bad\ncategory: s\nversion: "1"\n',
    'bad/build.yaml': 'steps:\n  - echo {{ .Values.nope }}\n',
    'worse/definition.yaml': 'name: worse\ncategory: s\n  version: [\n',
  };

  it('leaves out the packages with problems, names them, publishes the rest', async () => {
    const out = mkdtempSync(join(tmpdir(), 'cpm-luetrepo-out-'));
    const r = await createFromTree(mkTree(files), { output: `dir://${out}`, sourceDateEpoch: 0 });
    expect(r.index.packages.map((p) => p.name).sort()).toEqual(['good', 'inc']);
    expect(r.skipped.map((s) => s.what).sort()).toEqual([
      'packages/worse/definition.yaml:2',
      's/bad@1',
    ]);
    expect(r.warnings.some((w) => /^left out s\/bad@1: .*\.Values\.nope/.test(w))).toBe(true);
    const good = r.index.packages.find((p) => p.name === 'good')!;
    expect(layerFiles(out, good.image!.layers[0]!.digest)).toEqual([
      'usr',
      'usr/bin',
      'usr/bin/tool',
    ]);
    const inc = r.index.packages.find((p) => p.name === 'inc')!;
    expect(layerFiles(out, inc.image!.layers[0]!.digest)).toEqual([
      'usr',
      'usr/bin',
      'usr/bin/tool',
    ]);
  });

  it('--strict refuses the whole tree', async () => {
    const out = mkdtempSync(join(tmpdir(), 'cpm-luetrepo-out-'));
    await expect(
      createFromTree(mkTree(files), { output: `dir://${out}`, strict: true }),
    ).rejects.toThrow(/the tree has 2 problem\(s\)/);
  });
});
