import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync, lstatSync, type Stats } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpmError } from '../../src/errors.js';
import {
  applyTransaction,
  installPackages,
  isInstalled,
  reinstallPackages,
  uninstallPackages,
  upgradePackages,
} from '../../src/rootfs/index.js';
import { filesOf, listInstalled, loadDb, ownersOf, verify } from '../../src/upkeep/query.js';
import { silentReporter } from '../../src/util/progress.js';
import { dep, failure, layerFromFiles, rawLayer, spec, step, tmpDir } from '../install/helpers.js';

const dbText = (root: string): string =>
  readFileSync(path.join(root, 'var/lib/cpm/installed'), 'utf8');

describe('conflicts', () => {
  it('lists every conflict (in the transaction, with installed packages, with unowned files)', async () => {
    const root = tmpDir();
    await installPackages(root, [
      step('a/one@1', [layerFromFiles({ 'usr/bin/one': '1', 'usr/bin/shared': 'a' })]),
    ]);
    mkdirSync(path.join(root, 'opt'), { recursive: true });
    writeFileSync(path.join(root, 'opt/local-file'), 'mine');
    const before = dbText(root);
    const err = await failure(
      installPackages(root, [
        step('b/two@1', [layerFromFiles({ 'usr/bin/shared': 'b', 'x/both': '1' })]),
        step('c/three@1', [layerFromFiles({ 'x/both': '2', 'opt/local-file': 'theirs' })]),
      ]),
    );
    expect(err).toBeInstanceOf(CpmError);
    expect(err!.code).toBe('E_FILE_CONFLICT');
    const list = (err!.context.conflicts as Array<{ path: string; claimants: string[] }>).map(
      (c) => `${c.path}=${c.claimants.join('+')}`,
    );
    expect(list).toEqual([
      'opt/local-file=(unowned)+c/three@1',
      'usr/bin/shared=a/one@1+b/two@1',
      'x/both=b/two@1+c/three@1',
    ]);
    expect(dbText(root)).toBe(before);
    expect(readFileSync(path.join(root, 'opt/local-file'), 'utf8')).toBe('mine');
    expect(existsSync(path.join(root, 'x'))).toBe(false);
  });

  it('with force, the new package takes the files over', async () => {
    const root = tmpDir();
    await installPackages(root, [step('a/one@1', [layerFromFiles({ 'usr/bin/shared': 'a' })])]);
    const res = await installPackages(
      root,
      [step('b/two@1', [layerFromFiles({ 'usr/bin/shared': 'b' })])],
      { force: true },
    );
    expect(res.forcedConflicts.map((c) => c.path)).toEqual(['usr/bin/shared']);
    expect(ownersOf({ root }, '/usr/bin/shared').owners).toEqual(['b/two@1']);
    expect(filesOf({ root }, 'a/one').some((f) => f.path === 'usr/bin/shared')).toBe(false);
    expect((await verify({ root })).problems).toEqual([]);
  });

  it('refuses a directory where a file is, even with force', async () => {
    const root = tmpDir();
    await installPackages(root, [step('a/one@1', [layerFromFiles({ 'srv/thing': 'file' })])]);
    const err = await failure(
      installPackages(root, [step('b/two@1', [layerFromFiles({ 'srv/thing/x': 'y' })])], {
        force: true,
      }),
    );
    expect(err.code).toBe('E_FILE_CONFLICT');
  });

  it('a file staged where the stage tree has a directory is still a conflict, not an I/O error', async () => {
    const root = tmpDir();
    await installPackages(root, [step('a/one@1', [layerFromFiles({ 'srv/thing/x': 'file' })])]);
    const err = await failure(
      installPackages(
        root,
        [
          step('b/two@1', [
            await rawLayer([
              { name: 'srv/thing/y', content: 'y' },
              { name: 'srv/thing', type: 'symlink', linkname: '/tmp' },
            ]),
          ]),
        ],
        { force: true },
      ),
    );
    expect(err.code).toBe('E_FILE_CONFLICT');
    expect(err.message).toContain('/srv/thing');
  });

  it('moves new directories whole, with modes, mtimes, whiteouts and replaced entries applied', async () => {
    const root = tmpDir();
    await installPackages(root, [step('a/base@1', [layerFromFiles({ 'etc/os': 'x' })])]);
    const s = step('b/srv@1', [
      await rawLayer([
        { name: 'srv/', type: 'directory', mode: 0o750 },
        { name: 'srv/app/', type: 'directory', mode: 0o711 },
        { name: 'srv/app/old', content: 'old' },
        { name: 'srv/app/d/', type: 'directory' },
        { name: 'srv/app/d/x', content: 'x' },
        { name: 'srv/keep', content: 'keep' },
        { name: 'srv/link', type: 'link', linkname: 'srv/keep' },
        { name: 'etc/new.d/a', content: 'a' },
      ]),
      await rawLayer([
        { name: 'srv/app/.wh.old', content: '' },
        { name: 'srv/app/d', content: 'now a file' },
      ]),
    ]);
    await installPackages(root, [s]);
    const st = (p: string): Stats => lstatSync(path.join(root, p));
    expect(st('srv').mode & 0o7777).toBe(0o750);
    expect(st('srv/app').mode & 0o7777).toBe(0o711);
    expect(st('srv').mtimeMs).toBe(1_700_000_000_000);
    expect(st('srv/app').mtimeMs).toBe(1_700_000_000_000);
    expect(existsSync(path.join(root, 'srv/app/old'))).toBe(false);
    expect(readFileSync(path.join(root, 'srv/app/d'), 'utf8')).toBe('now a file');
    expect(st('srv/link').ino).toBe(st('srv/keep').ino);
    expect(readFileSync(path.join(root, 'etc/new.d/a'), 'utf8')).toBe('a');
    expect(filesOf({ root }, 'b/srv').map((f) => f.path)).toEqual([
      'etc/new.d',
      'etc/new.d/a',
      'srv',
      'srv/app',
      'srv/app/d',
      'srv/keep',
      'srv/link',
    ]);
    expect(existsSync(path.join(root, '.cpm-tx'))).toBe(false);
    expect((await verify({ root })).problems).toEqual([]);
    await uninstallPackages(root, ['b/srv']);
    expect(existsSync(path.join(root, 'srv'))).toBe(false);
    expect(existsSync(path.join(root, 'etc/os'))).toBe(true);
  });

  it('shares directories and follows merged-/usr symlinks', async () => {
    const root = tmpDir();
    await installPackages(root, [
      step('base/usrmerge@1', [
        await rawLayer([
          { name: 'usr/bin/', type: 'directory' },
          { name: 'bin', type: 'symlink', linkname: 'usr/bin' },
        ]),
      ]),
    ]);
    await installPackages(root, [step('a/tool@1', [layerFromFiles({ 'bin/tool': 't' })])]);
    expect(lstatSync(path.join(root, 'bin')).isSymbolicLink()).toBe(true);
    expect(readFileSync(path.join(root, 'usr/bin/tool'), 'utf8')).toBe('t');
    expect(ownersOf({ root }, '/bin/tool')).toEqual({
      path: '/usr/bin/tool',
      owners: ['a/tool@1'],
    });
    // the tool layer's "bin/" entry lands on the link, which stays the base's
    expect(ownersOf({ root }, '/usr/bin').owners).toEqual(['base/usrmerge@1']);
    expect(ownersOf({ root }, '/bin').owners).toEqual(['base/usrmerge@1']);
  });
});

describe('upgrade, uninstall, config files', () => {
  it('upgrades in one transaction: replaces shared files, removes dropped ones, keeps user config', async () => {
    const root = tmpDir();
    await installPackages(root, [
      step('app/svc@1.0', [
        layerFromFiles({
          'usr/bin/svc': 'v1',
          'usr/lib/svc/old.so': 'old',
          'etc/svc.conf': 'port=1\n',
          'etc/svc/clean.conf': 'x\n',
        }),
      ]),
    ]);
    const inoBefore = lstatSync(path.join(root, 'usr/bin/svc')).ino;
    writeFileSync(path.join(root, 'etc/svc.conf'), 'port=2 # mine\n');
    const res = await upgradePackages(root, [
      step('app/svc@2.0', [
        layerFromFiles({
          'usr/bin/svc': 'v2',
          'etc/svc.conf': 'port=1\nnew=1\n',
          'etc/svc/clean.conf': 'y\n',
        }),
      ]),
    ]);
    expect(res.installed).toEqual(['app/svc@2.0']);
    expect(res.removed).toEqual(['app/svc@1.0']);
    expect(res.cpmnew).toEqual(['etc/svc.conf']);
    expect(readFileSync(path.join(root, 'usr/bin/svc'), 'utf8')).toBe('v2');
    expect(lstatSync(path.join(root, 'usr/bin/svc')).ino).not.toBe(inoBefore);
    expect(existsSync(path.join(root, 'usr/lib/svc'))).toBe(false); // emptied, unowned dir removed
    expect(readFileSync(path.join(root, 'etc/svc.conf'), 'utf8')).toBe('port=2 # mine\n');
    expect(readFileSync(path.join(root, 'etc/svc.conf.cpmnew'), 'utf8')).toBe('port=1\nnew=1\n');
    expect(readFileSync(path.join(root, 'etc/svc/clean.conf'), 'utf8')).toBe('y\n'); // unmodified: replaced
    expect(listInstalled({ root }).map((p) => p.id)).toEqual(['app/svc@2.0']);
    const rep = await verify({ root });
    expect(rep.problems).toEqual([]);
    expect(rep.changedConfig).toEqual([{ package: 'app/svc@2.0', path: '/etc/svc.conf' }]);
  });

  it('uninstalls exactly the owned files, keeps modified config as .cpmsave and shared dirs', async () => {
    const root = tmpDir();
    await installPackages(root, [
      step('a/keep@1', [layerFromFiles({ 'usr/share/keep': 'k' })]),
      step('b/gone@1', [
        layerFromFiles({
          'usr/share/gone/data': 'g',
          'usr/share/x': 'x',
          'etc/gone.conf': 'c\n',
          'etc/plain.conf': 'p\n',
        }),
      ]),
    ]);
    writeFileSync(path.join(root, 'usr/share/gone/user-file'), 'not owned');
    writeFileSync(path.join(root, 'etc/gone.conf'), 'changed\n');
    const res = await uninstallPackages(root, ['b/gone']);
    expect(res.removed).toEqual(['b/gone@1']);
    expect(res.cpmsave).toEqual(['etc/gone.conf']);
    expect(readFileSync(path.join(root, 'etc/gone.conf.cpmsave'), 'utf8')).toBe('changed\n');
    expect(existsSync(path.join(root, 'etc/gone.conf'))).toBe(false);
    expect(existsSync(path.join(root, 'etc/plain.conf'))).toBe(false);
    expect(existsSync(path.join(root, 'usr/share/x'))).toBe(false);
    expect(existsSync(path.join(root, 'usr/share/gone/data'))).toBe(false);
    expect(readFileSync(path.join(root, 'usr/share/gone/user-file'), 'utf8')).toBe('not owned'); // dir kept: not empty
    expect(readFileSync(path.join(root, 'usr/share/keep'), 'utf8')).toBe('k');
    expect((await verify({ root })).problems).toEqual([]);
  });

  it('refuses to uninstall a package others require, unless forced', async () => {
    const root = tmpDir();
    await installPackages(root, [
      step('lib/base@1.2', [layerFromFiles({ 'lib/base': 'b' })]),
      step('app/user@1', [layerFromFiles({ 'bin/user': 'u' })], {
        spec: spec('app/user@1', { requires: [dep('lib/base', '>=1.0')] }),
      }),
    ]);
    expect(loadDb({ root }).reverseDeps('lib/base@1.2')).toEqual(['app/user@1']);
    const err = await failure(uninstallPackages(root, ['lib/base']));
    expect(err.code).toBe('E_REQUIRED_BY');
    await uninstallPackages(root, ['lib/base'], { force: true });
    expect(listInstalled({ root }).map((p) => p.id)).toEqual(['app/user@1']);
  });

  it('config_protect annotation marks other directories as config', async () => {
    const root = tmpDir();
    await installPackages(root, [
      step('a/cp@1', [layerFromFiles({ 'oem/cfg.yaml': 'a: 1\n', 'usr/bin/x': 'x' })], {
        spec: spec('a/cp@1', { annotations: { config_protect: '/oem' } }),
      }),
    ]);
    const files = filesOf({ root }, 'a/cp');
    expect(files.find((f) => f.path === 'oem/cfg.yaml')!.config).toBe(true);
    expect(files.find((f) => f.path === 'usr/bin/x')!.config).toBeUndefined();
  });
});

describe('database and no-ops', () => {
  it('gives the same DB bytes for the same install and is a no-op when already installed', async () => {
    // same layers (GNU tar stamps mtimes, so build them once) into two fresh roots
    const l1 = layerFromFiles({ 'usr/bin/a': 'a', 'etc/a.conf': 'x' });
    const l2 = layerFromFiles({ 'usr/bin/b': 'b' });
    const mk = async (): Promise<string> => {
      const root = tmpDir();
      const steps = [step('z/last@1', [l2]), step('a/first@1', [l1])];
      await installPackages(root, steps);
      const text = dbText(root);
      const res = await installPackages(root, steps);
      expect(res.unchanged).toEqual(['z/last@1', 'a/first@1']);
      expect(dbText(root)).toBe(text);
      expect(isInstalled(root, spec('a/first@1'), steps[1]!.imageDigest)).toBe(true);
      expect(isInstalled(root, spec('a/first@2'))).toBe(false);
      return text;
    };
    const a = await mk();
    const b = await mk();
    expect(a).toBe(b);
    expect(a.split('\n')[0]).toBe('{"cpm-db":3}');
  });

  it('reinstall repairs modified and missing files', async () => {
    const root = tmpDir();
    const s = step('a/fix@1', [layerFromFiles({ 'usr/bin/a': 'good', 'usr/bin/b': 'b' })]);
    await installPackages(root, [s]);
    writeFileSync(path.join(root, 'usr/bin/a'), 'evil');
    const { rmSync, chmodSync } = await import('node:fs');
    rmSync(path.join(root, 'usr/bin/b'));
    chmodSync(path.join(root, 'usr/bin'), 0o700);
    const bad = await verify({ root });
    expect(bad.problems.map((p) => `${p.kind} ${p.path}`).sort()).toEqual([
      'missing /usr/bin/b',
      'mode /usr/bin',
      'modified /usr/bin/a',
    ]);
    await reinstallPackages(root, [s]);
    expect((await verify({ root })).problems).toEqual([]);
  });

  it("skips layer entries in cpm's own DB dir and stage (an image of a cpm-built root carries a DB)", async () => {
    const root = tmpDir();
    const warnings: string[] = [];
    const reporter = { ...silentReporter(), warn: (m: string) => void warnings.push(m) };
    const foreignDb = '{"cpm-db":1}\n{"id":"evil/pkg@1"}\n';
    await installPackages(
      root,
      [
        step('bases/built@1', [
          layerFromFiles({
            'etc/os-release': 'ID=built\n',
            'var/lib/cpm/installed': foreignDb,
            'var/lib/cpm/extra': 'x',
            '.cpm-tx/journal': 'y',
          }),
        ]),
      ],
      { reporter },
    );
    expect(listInstalled({ root }).map((p) => p.id)).toEqual(['bases/built@1']);
    expect(filesOf({ root }, 'bases/built').map((f) => f.path)).not.toContain(
      'var/lib/cpm/installed',
    );
    expect(existsSync(path.join(root, 'var/lib/cpm/extra'))).toBe(false);
    expect(warnings.some((w) => w.includes("skipped /var/lib/cpm/installed (cpm's own"))).toBe(
      true,
    );
    expect(warnings.some((w) => w.includes('skipped /.cpm-tx/journal'))).toBe(true);
    expect((await verify({ root })).problems).toEqual([]);
    // uninstalling the package leaves the DB alone
    await uninstallPackages(root, ['bases/built']);
    expect(dbText(root).split('\n')[0]).toBe('{"cpm-db":3}');
  });

  it('uses a configurable DB directory', async () => {
    const root = tmpDir();
    const dbDir = path.join(tmpDir(), 'db');
    await installPackages(root, [step('a/x@1', [layerFromFiles({ x: '1' })])], { dbDir });
    expect(existsSync(path.join(dbDir, 'installed'))).toBe(true);
    expect(existsSync(path.join(root, 'var/lib/cpm'))).toBe(false);
    expect(listInstalled({ root, dbDir }).map((p) => p.id)).toEqual(['a/x@1']);
  });
});

describe('lock and signals', () => {
  it('waits for the lock holder, or fails with E_LOCKED when told not to wait', async () => {
    const root = tmpDir();
    const dbDir = path.join(root, 'var/lib/cpm');
    mkdirSync(dbDir, { recursive: true });
    const holder = spawn('sleep', ['30']);
    writeFileSync(path.join(dbDir, 'lock'), `${holder.pid}\n`);
    try {
      const s = step('a/x@1', [layerFromFiles({ x: '1' })]);
      const err = await failure(installPackages(root, [s], { noWait: true }));
      expect(err.code).toBe('E_LOCKED');
      expect(err.message).toContain(`pid ${holder.pid}`);
      const rep = silentReporter();
      const p = installPackages(root, [s], { reporter: rep });
      await new Promise((r) => setTimeout(r, 250));
      expect(rep.lines).toContain(`waiting for lock held by pid ${holder.pid}`);
      holder.kill('SIGKILL'); // a dead holder's lock is stale and taken over
      await p;
      expect(listInstalled({ root }).map((x) => x.id)).toEqual(['a/x@1']);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('rolls back on SIGTERM during the transaction', async () => {
    const root = tmpDir();
    await installPackages(root, [step('a/old@1', [layerFromFiles({ 'usr/old': 'o' })])]);
    const before = dbText(root);
    const files: Record<string, string> = {};
    for (let i = 0; i < 300; i++) files[`usr/many/f${i}`] = String(i);
    const layer = layerFromFiles(files);
    const p = applyTransaction(root, { install: [step('b/new@1', [layer])], remove: ['a/old'] });
    setImmediate(() => process.emit('SIGTERM', 'SIGTERM'));
    const err = await failure(p);
    expect(err.code).toBe('E_INTERRUPTED');
    expect(dbText(root)).toBe(before);
    expect(existsSync(path.join(root, 'usr/many'))).toBe(false);
    expect(readFileSync(path.join(root, 'usr/old'), 'utf8')).toBe('o');
    expect(existsSync(path.join(root, '.cpm-tx'))).toBe(false);
    expect((await verify({ root })).problems).toEqual([]);
  });
});
