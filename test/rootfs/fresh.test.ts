/**
 * Fresh-root mode (one package into a root holding only cpm's DB directory: entries created at
 * their final paths, a write-ahead journal): when it is chosen, that it installs exactly what the
 * staged path installs (layers, whiteouts, links, modes, DB), that hostile layers are refused
 * with the root left empty and nothing outside touched, and how its journal is recovered.
 */
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CpmError } from '../../src/errors.js';
import {
  installPackages,
  recover,
  uninstallPackages,
  type LayerSource,
} from '../../src/rootfs/index.js';
import { verify } from '../../src/upkeep/query.js';
import { failure, rawLayer, step, tmpDir, type RawEntry } from '../install/helpers.js';
import { rootSnapshot } from '../support/root-snapshot.js';

/** A root as cpm leaves a new one after taking its lock: only the DB directory. */
async function emptyRoot(): Promise<string> {
  const root = path.join(tmpDir('cpm-fresh-'), 'root');
  await recover(root);
  return root;
}

const L = (entries: RawEntry[]): Promise<LayerSource> => rawLayer(entries);

// the roots are on /tmp: fresh-root mode is chosen by itself on tmpfs only
beforeEach(() => {
  process.env.CPM_FRESH_ROOT = '1';
});
afterEach(() => {
  delete process.env.CPM_FRESH_ROOT;
  delete process.env.CPM_STAGE_WORKER_AFTER;
});

/** Layers exercising every kind of entry and every way a later one replaces an earlier one. */
async function trickyLayers(): Promise<LayerSource[]> {
  return [
    await L([
      { name: './etc/', type: 'directory', mode: 0o755 },
      { name: 'etc/a.conf', content: 'a\n' },
      { name: 'etc/gone', content: 'hidden by the next layer' },
      { name: 'usr/lib/x/lib.so', content: 'implicit parents', mode: 0o755 },
      { name: 'usr/bin/tool', content: 'setuid', mode: 0o4755 },
      { name: 'usr/bin/tool-link', type: 'link', linkname: 'usr/bin/tool' },
      { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
      { name: 'lib/through-rel', content: 'written through a relative symlink' },
      { name: 'abs', type: 'symlink', linkname: '/usr/lib/x' },
      { name: 'abs/through-abs', content: 'written through an absolute symlink' },
      { name: 'ro/', type: 'directory', mode: 0o555 },
      { name: 'ro/inside', content: 'in a read-only directory' },
      { name: 'opt/old/', type: 'directory' },
      { name: 'opt/old/f', content: 'opaque-hidden' },
      { name: 'opt/keep', content: 'opaque-hidden too' },
      { name: 'swap', content: 'a file, then a directory' },
      { name: 'dir2file/sub/f', content: 'a directory, then a file' },
      { name: 'fifo', type: 'fifo' },
    ]),
    await L([
      { name: 'etc/.wh.gone', content: '' },
      { name: 'opt/.wh..wh..opq', content: '' },
      { name: 'opt/new', content: 'after the opaque whiteout' },
      { name: 'swap/', type: 'directory', mode: 0o700 },
      { name: 'swap/in', content: 'x' },
      { name: 'dir2file', content: 'now a file' },
      { name: 'usr/lib/', type: 'directory', mode: 0o750 },
      { name: 'lib/', type: 'directory' }, // over a symlink to a directory: the link stays
      { name: 'etc/a.conf', content: 'a, second layer\n', mode: 0o600 },
    ]),
  ];
}

describe('fresh-root mode', () => {
  it('is chosen for one package into an empty root and installs what the staged path installs', async () => {
    const layers = await trickyLayers();
    const fresh = await emptyRoot();
    const r = await installPackages(fresh, [step('test/tricky@1', layers)]);
    expect(r.freshRoot).toBe(true);
    process.env.CPM_FRESH_ROOT = '0';
    const staged = await emptyRoot();
    const s = await installPackages(staged, [step('test/tricky@1', layers)]);
    expect(s.freshRoot).toBeUndefined();
    expect(rootSnapshot(fresh, { owners: true })).toBe(rootSnapshot(staged, { owners: true }));
    expect(readFileSync(path.join(fresh, 'var/lib/cpm/installed'), 'utf8')).toBe(
      readFileSync(path.join(staged, 'var/lib/cpm/installed'), 'utf8'),
    );
    expect(readFileSync(path.join(fresh, 'usr/lib/through-rel'), 'utf8')).toMatch(/relative/);
    expect(readFileSync(path.join(fresh, 'usr/lib/x/through-abs'), 'utf8')).toMatch(/absolute/);
    expect(existsSync(path.join(fresh, 'etc/gone'))).toBe(false);
    expect(readdirSync(path.join(fresh, 'opt'))).toEqual(['new']);
    expect(lstatSync(path.join(fresh, 'lib')).isSymbolicLink()).toBe(true);
    expect(lstatSync(path.join(fresh, 'usr/bin/tool')).mode & 0o7777).toBe(0o4755);
    expect(lstatSync(path.join(fresh, 'usr/bin/tool-link')).ino).toBe(
      lstatSync(path.join(fresh, 'usr/bin/tool')).ino,
    );
    expect((await verify({ root: fresh })).problems).toEqual([]);
    for (const d of [fresh, staged]) {
      expect(existsSync(path.join(d, '.cpm-tx'))).toBe(false);
      expect(existsSync(path.join(d, 'var/lib/cpm/journal'))).toBe(false);
    }
  });

  it('writes through the worker thread the same way (journal appended per batch)', async () => {
    const layers = await trickyLayers();
    process.env.CPM_STAGE_WORKER_AFTER = '0';
    const fresh = await emptyRoot();
    expect((await installPackages(fresh, [step('test/tricky@1', layers)])).freshRoot).toBe(true);
    process.env.CPM_FRESH_ROOT = '0';
    const staged = await emptyRoot();
    await installPackages(staged, [step('test/tricky@1', layers)]);
    expect(rootSnapshot(fresh, { owners: true })).toBe(rootSnapshot(staged, { owners: true }));
  });

  it('is not chosen when the root holds anything else, the DB lists a package, or for two packages', async () => {
    const layer = await L([{ name: 'usr/share/p', content: 'p' }]);
    const busy = await emptyRoot();
    writeFileSync(path.join(busy, 'README'), 'mine');
    expect((await installPackages(busy, [step('test/p@1', [layer])])).freshRoot).toBeUndefined();
    expect(readFileSync(path.join(busy, 'README'), 'utf8')).toBe('mine');
    const other = await emptyRoot();
    mkdirSync(path.join(other, 'var/lib/other'));
    expect((await installPackages(other, [step('test/p@1', [layer])])).freshRoot).toBeUndefined();
    // after an uninstall the root is empty again, but the DB is not new: staged is fine either way
    const again = await emptyRoot();
    expect((await installPackages(again, [step('test/p@1', [layer])])).freshRoot).toBe(true);
    const q = await installPackages(again, [
      step('test/q@1', [await L([{ name: 'q', content: 'q' }])]),
    ]);
    expect(q.freshRoot).toBeUndefined();
    await uninstallPackages(again, ['test/p', 'test/q']);
    const two = await emptyRoot();
    const t = await installPackages(two, [
      step('test/p@1', [layer]),
      step('test/q@1', [await L([{ name: 'q', content: 'q' }])]),
    ]);
    expect(t.freshRoot).toBeUndefined();
  });

  it('refuses a non-directory over a directory on the way to the DB, root left empty', async () => {
    const root = await emptyRoot();
    const before = rootSnapshot(root, { owners: true });
    const e = await failure(
      installPackages(root, [
        step('evil/var@1', [
          await L([
            { name: 'etc/ok', content: 'x' },
            { name: 'var', type: 'symlink', linkname: '/tmp' },
          ]),
        ]),
      ]),
    );
    expect(e.code).toBe('E_FILE_CONFLICT');
    expect(e.message).toContain('/var');
    expect(rootSnapshot(root, { owners: true })).toBe(before);
  });
});

describe('fresh-root mode: hostile layers are refused, the root left empty, nothing outside touched', () => {
  const cases: Array<[string, (outside: string) => Promise<LayerSource[]>, RegExp]> = [
    [
      'a relative symlink that climbs out, written through',
      async (o) => [
        await L([
          { name: 'etc/first', content: 'made before the refusal' },
          { name: 'esc', type: 'symlink', linkname: '../../../../../../../..' + o },
          { name: 'esc/pwned', content: 'x' },
        ]),
      ],
      /above the root/,
    ],
    [
      'a symlink of an earlier layer, written through in the next',
      async (o) => [
        await L([
          { name: 'usr/bin/ok', content: 'x' },
          { name: 'lnk', type: 'symlink', linkname: '../../../../../../../../' + o },
        ]),
        await L([{ name: 'lnk/pwned', content: 'x' }]),
      ],
      /above the root/,
    ],
    [
      'a symlink that replaced a directory',
      async (o) => [
        await L([
          { name: 'd/', type: 'directory' },
          { name: 'd/kept', content: 'x' },
          { name: 'd', type: 'symlink', linkname: '../../../../../../..' + o },
          { name: 'd/x', content: 'x' },
        ]),
      ],
      /above the root/,
    ],
    [
      '".." in a name',
      async () => [
        await L([
          { name: 'a/b', content: 'x' },
          { name: 'a/../../x', content: 'x' },
        ]),
      ],
      /"\.\." component/,
    ],
    [
      'a hardlink whose target climbs through a symlink',
      async (o) => [
        await L([
          { name: 'f', content: 'x' },
          { name: 'up', type: 'symlink', linkname: '../../../../../..' + o },
          { name: 'h', type: 'link', linkname: 'up/secret' },
        ]),
      ],
      /above the root/,
    ],
    [
      'a whiteout under a symlink that climbs out',
      async (o) => [
        await L([
          { name: 'f', content: 'x' },
          { name: 'up', type: 'symlink', linkname: '../../../../../..' + o },
        ]),
        await L([{ name: 'up/.wh.victim', content: '' }]),
      ],
      /above the root/,
    ],
  ];
  for (const [name, layers, why] of cases)
    it(name, async () => {
      const outside = path.join(tmpDir('cpm-fresh-out-'), 'outside');
      mkdirSync(outside);
      writeFileSync(path.join(outside, 'victim'), 'v');
      writeFileSync(path.join(outside, 'secret'), 's');
      const root = await emptyRoot();
      const before = rootSnapshot(root, { owners: true });
      const outBefore = rootSnapshot(outside, { owners: true });
      const e = await failure(installPackages(root, [step('evil/pkg@1', await layers(outside))]));
      expect(e).toBeInstanceOf(CpmError);
      expect(e.code).toBe('E_UNSAFE_ENTRY');
      expect(e.message).toMatch(why);
      expect(rootSnapshot(root, { owners: true })).toBe(before);
      expect(rootSnapshot(outside, { owners: true })).toBe(outBefore);
    });
});

describe('fresh-root journal', () => {
  /** A root whose fresh install was cut short: `made` exist, the journal lists `listed`. */
  function crashed(made: Array<[string, 'd' | 'f']>, journal: string): string {
    const root = path.join(tmpDir('cpm-fresh-j-'), 'root');
    mkdirSync(path.join(root, 'var/lib/cpm'), { recursive: true });
    for (const [p, t] of made)
      if (t === 'd') mkdirSync(path.join(root, p));
      else writeFileSync(path.join(root, p), p);
    writeFileSync(path.join(root, 'var/lib/cpm/journal'), journal);
    return root;
  }
  const head = `cpm-journal 3\n${JSON.stringify({ kind: 'fresh', package: 'test/p@1', dirs: [{ p: 'var', mode: 0o755, uid: 0, gid: 0 }] })}\n`;

  it('recovery removes what it lists (deepest first) and leaves a directory with foreign files, saying so', async () => {
    const root = crashed(
      [
        ['etc', 'd'],
        ['etc/a', 'f'],
        ['usr', 'd'],
        ['usr/foreign', 'f'],
        ['usr/b', 'f'],
      ],
      // the last line was cut short by a failed append: it names nothing created
      `${head}"etc"\n"usr"\n"etc/a"\n"usr/b"\n"usr/never-made"\n"usr/c`,
    );
    const r = await recover(root);
    expect(r.result).toBe('rolled-back');
    expect(r.did.join('\n')).toMatch(/left \/usr: not empty/);
    expect(readdirSync(root).sort()).toEqual(['usr', 'var']);
    expect(readdirSync(path.join(root, 'usr'))).toEqual(['foreign']);
    expect(existsSync(path.join(root, 'var/lib/cpm/journal'))).toBe(false);
  });

  it('never reaches through a symlink swapped in for a journalled directory', async () => {
    const outside = path.join(tmpDir('cpm-fresh-out-'), 'outside');
    mkdirSync(outside);
    writeFileSync(path.join(outside, 'a'), 'keep me');
    const root = crashed([], `${head}"etc"\n"etc/a"\n`);
    execFileSync('ln', ['-s', outside, path.join(root, 'etc')]);
    await recover(root);
    expect(readFileSync(path.join(outside, 'a'), 'utf8')).toBe('keep me');
    // the link itself was journalled as "etc" and is removed, not followed
    expect(existsSync(path.join(root, 'etc'))).toBe(false);
  });

  it('a journal that lists the DB directory, its files or the way to it leaves them', async () => {
    const root = crashed(
      [['etc', 'd']],
      `${head}"etc"\n"var"\n"var/lib"\n"var/lib/cpm"\n"var/lib/cpm/cache"\n`,
    );
    writeFileSync(path.join(root, 'var/lib/cpm/cache'), 'kept');
    const r = await recover(root);
    expect(r.result).toBe('rolled-back');
    expect(r.did.join('\n')).not.toMatch(/left \/var/);
    expect(existsSync(path.join(root, 'etc'))).toBe(false);
    expect(readFileSync(path.join(root, 'var/lib/cpm/cache'), 'utf8')).toBe('kept');
  });

  it('a journal that names a path outside the root or is damaged is refused, touching nothing', async () => {
    for (const [body, why] of [
      [`${head}"../x"\n`, /outside the root/],
      [`${head}"/etc"\n`, /outside the root/],
      [`${head}not json\n"etc"\n`, /not a JSON string/],
      [`cpm-journal 3\n{"kind":"other"}\n`, /unknown kind/],
    ] as const) {
      const root = crashed([['etc', 'd']], body);
      const e = await failure(recover(root));
      expect(e.code).toBe('E_DB');
      expect(e.message).toMatch(why);
      expect(existsSync(path.join(root, 'etc'))).toBe(true);
      expect(existsSync(path.join(root, 'var/lib/cpm/journal'))).toBe(true);
    }
  });
});
