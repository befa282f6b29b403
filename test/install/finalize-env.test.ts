/**
 * finalize.yaml `env` end to end: a tree with a finalize.yaml setting FOO, built into a real dir://
 * repository, installed with the finalizers run under bubblewrap inside the new root. The command
 * sees FOO, and the DB's finalize record keeps the env it ran with.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config.js';
import { runOperation, type OperationContext } from '../../src/install/operations.js';
import { createFromTree } from '../../src/repo/create.js';
import { InstalledDb } from '../../src/rootfs/db.js';
import { tmpDir } from './helpers.js';

/** /bin/sh (the host's, resolved) and the shared objects it needs, copied under `dir`. */
function copyShell(dir: string): void {
  for (const d of ['bin', 'dev', 'proc', 'tmp']) mkdirSync(path.join(dir, d), { recursive: true });
  const sh = execFileSync('readlink', ['-f', '/bin/sh'], { encoding: 'utf8' }).trim();
  execFileSync('cp', [sh, path.join(dir, 'bin/sh')]);
  const libs = execFileSync('ldd', [sh], { encoding: 'utf8' })
    .split('\n')
    .map((l) => /(\/\S+)/.exec(l.includes('=>') ? l.split('=>')[1]! : l)?.[1])
    .filter((l): l is string => !!l);
  for (const lib of libs) {
    mkdirSync(path.dirname(path.join(dir, lib)), { recursive: true });
    execFileSync('cp', ['-L', lib, path.join(dir, lib)]);
  }
}

function write(file: string, text: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
}

describe('finalize.yaml env', () => {
  it('reaches the finalizer through tree → repository → install, and is recorded in the DB', async () => {
    const dir = tmpDir('cpm-finenv-');
    const tree = path.join(dir, 'tree');
    write(
      path.join(tree, 'base/minroot/definition.yaml'),
      'name: minroot\ncategory: base\nversion: 1.0.0\n',
    );
    copyShell(path.join(tree, 'base/minroot/root'));
    write(
      path.join(tree, 'app/greet/definition.yaml'),
      'name: greet\ncategory: app\nversion: 1.0.0\nrequires:\n  - category: base\n    name: minroot\n',
    );
    write(path.join(tree, 'app/greet/root/usr/share/greet/README'), 'greet\n');
    write(
      path.join(tree, 'app/greet/finalize.yaml'),
      'install:\n  - echo "FOO=$FOO BAR=$BAR" > /tmp/env\nenv:\n  - FOO=bar\n  - BAR=from-package\n',
    );
    const cfg = { ...defaultConfig(), cache_dir: path.join(dir, 'cache') };
    const repo = `dir://${path.join(dir, 'repo')}`;
    await createFromTree(tree, { output: repo, cacheDir: cfg.cache_dir });

    const root = path.join(dir, 'root');
    const ctx: OperationContext = {
      root,
      dbDir: path.join(root, 'var/lib/cpm'),
      config: cfg,
      source: { kind: 'repo', urls: [repo] },
      // the machine's finalizer_envs win over the package's defaults
      finalizerEnv: { BAR: 'from-config' },
    };
    const r = await runOperation(ctx, 'install', ['app/greet']);
    expect(r.transaction?.finalizerErrors).toEqual([]);
    expect(readFileSync(path.join(root, 'tmp/env'), 'utf8')).toBe('FOO=bar BAR=from-config\n');
    expect(InstalledDb.load(ctx.dbDir).get('app/greet@1.0.0')?.finalize).toEqual({
      install: ['echo "FOO=$FOO BAR=$BAR" > /tmp/env'],
      shell: ['sh', '-c'],
      env: { FOO: 'bar', BAR: 'from-package' },
    });
  });
});
