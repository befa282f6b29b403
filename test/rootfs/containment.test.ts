/**
 * Containment of the root against swaps made after install: an owned directory (usr, etc, var),
 * the DB dir or the stage replaced by a symlink to a sentinel tree outside the root. Reinstall,
 * upgrade, uninstall and recover must refuse or work inside the root — the sentinel is compared
 * byte for byte (names, types, modes, contents, link targets) before and after every operation.
 * Also: the journal (self-checking, root-relative, refused when it names anything outside).
 */
import { execFileSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CpmError } from '../../src/errors.js';
import { encodeJournal, type Journal } from '../../src/rootfs/journal.js';
import {
  installPackages,
  recover,
  reinstallPackages,
  uninstallPackages,
  upgradePackages,
  type InstallStep,
} from '../../src/rootfs/index.js';
import { layerFromFiles, step, tmpDir } from '../install/helpers.js';
import { makeSentinel, sentinelSnapshot } from '../support/sentinel.js';

let base: string;
let template: string;
const v1 = (): InstallStep =>
  step('app/hello@1', [
    layerFromFiles(
      {
        'usr/bin/hello': 'hello 1\n',
        'usr/lib/hello/data': 'd1',
        'etc/hello.conf': 'port=1\n',
        'var/lib/hello/state': 's1',
      },
      'none',
    ),
  ]);
const v2 = (): InstallStep =>
  step('app/hello@2', [
    layerFromFiles(
      {
        'usr/bin/hello': 'hello 2\n',
        'usr/lib/hello/data2': 'd2',
        'etc/hello.conf': 'port=2\n',
        'var/lib/hello/state': 's2',
      },
      'none',
    ),
  ]);

beforeAll(async () => {
  base = tmpDir('cpm-contain-');
  template = path.join(base, 'template');
  await installPackages(template, [v1()]);
});

interface Case {
  root: string;
  out: string;
  before: string;
}

/** A copy of the installed root with `swap` replaced by a symlink to a fresh sentinel tree. */
function swapped(name: string, swap: string): Case {
  const dir = path.join(base, name);
  const root = path.join(dir, 'root');
  const out = path.join(dir, 'outside');
  mkdirSync(dir);
  cpSync(template, root, { recursive: true, verbatimSymlinks: true });
  makeSentinel(out, readFileSync(path.join(template, 'var/lib/cpm/installed'), 'utf8'));
  const p = path.join(root, swap);
  // the original moves aside inside the root (what an attacker or a careless admin leaves)
  if (existsSync(p)) renameSync(p, `${p}.orig`);
  mkdirSync(path.dirname(p), { recursive: true });
  symlinkSync(out, p);
  return { root, out, before: sentinelSnapshot(out) };
}

const SWAPS = ['usr', 'etc', 'var', 'var/lib/cpm', '.cpm-tx', 'usr/lib/hello'];
const OPS: Record<string, (root: string) => Promise<unknown>> = {
  reinstall: (root) => reinstallPackages(root, [v1()]),
  upgrade: (root) => upgradePackages(root, [v2()]),
  uninstall: (root) => uninstallPackages(root, ['app/hello']),
  recover: (root) => recover(root),
};

describe('symlink swaps never lead an operation outside the root', () => {
  for (const swap of SWAPS)
    for (const [op, run] of Object.entries(OPS))
      it(`${swap} → outside, then ${op}`, async () => {
        const c = swapped(`${swap.replace(/\//g, '_')}-${op}`, swap);
        const err = await run(c.root).then(
          () => null,
          (e: unknown) => e,
        );
        // refusing is fine, crashing is not: any error is a CpmError
        if (err !== null) expect(err, String((err as Error).stack)).toBeInstanceOf(CpmError);
        expect(sentinelSnapshot(c.out)).toBe(c.before);
        if (swap === 'var' || swap === 'var/lib/cpm') {
          // the DB is never looked for through the symlink
          expect((err as CpmError | null)?.code).toBe('E_UNSAFE_ENTRY');
          expect((err as CpmError).message).toMatch(/database directory .* is a symlink/);
        }
      });
});

describe('the journal', () => {
  const crashed = (name: string, journalText: string | Buffer): string => {
    const root = path.join(base, name);
    cpSync(template, root, { recursive: true });
    writeFileSync(path.join(root, 'var/lib/cpm/journal'), journalText);
    return root;
  };
  const journalErr = async (root: string): Promise<CpmError> => {
    const e = await recover(root).then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(CpmError);
    const ce = e as CpmError;
    expect(ce.code).toBe('E_DB');
    expect(ce.message).toContain(`${root}/var/lib/cpm/journal: unusable transaction journal`);
    expect(ce.hint).toMatch(/cpm recover --root .*cpm reclaim --root/);
    expect(ce.hint).toContain(`remove ${root}/var/lib/cpm/journal`);
    return ce;
  };
  const good: Journal = {
    v: 2,
    ops: [{ k: 'stash', p: 'usr/bin/hello', b: '.cpm-tx/bk-0' }],
    rmdirs: [],
  };

  it('detects garbage, {}, an empty file, truncation and a flipped byte, and names them', async () => {
    expect((await journalErr(crashed('j-garbage', '\x00\x01garbage'))).message).toMatch(
      /no cpm-journal header/,
    );
    expect((await journalErr(crashed('j-empty-obj', '{}'))).message).toMatch(
      /no cpm-journal header/,
    );
    expect((await journalErr(crashed('j-empty', ''))).message).toMatch(/empty/);
    const text = encodeJournal(good);
    expect((await journalErr(crashed('j-trunc', text.slice(0, -5)))).message).toMatch(
      /truncated: \d+ of \d+ bytes/,
    );
    const flipped = text.replace('hello', 'hellp');
    expect((await journalErr(crashed('j-flip', flipped))).message).toMatch(/checksum mismatch/);
    // a valid checksum over a body that is not a journal
    const body = '{}';
    const sum = execFileSync('sha256sum', { input: body, encoding: 'utf8' }).slice(0, 64);
    expect((await journalErr(crashed('j-obj', `cpm-journal 2 2 ${sum}\n${body}`))).message).toMatch(
      /unknown journal version/,
    );
  });

  it('refuses a journal that names anything outside the root, and touches nothing', async () => {
    const victim = path.join(base, 'victim');
    mkdirSync(victim);
    writeFileSync(path.join(victim, 'f'), 'precious');
    const before = sentinelSnapshot(victim);
    const bad: Array<[string, Journal['ops'][number]]> = [
      ['absolute', { k: 'stash', p: `${victim}/f`, b: '.cpm-tx/bk-0' }],
      ['dotdot', { k: 'place', s: '.cpm-tx/stage/f0', p: '../victim/f' }],
      ['inner dotdot', { k: 'mkdir', p: 'usr/../../victim/x' }],
      ['NUL', { k: 'mkdir', p: 'usr/x\0y' }],
      ['backup outside the stage', { k: 'keep', p: 'usr/bin/hello', b: 'usr/bin/other' }],
    ];
    for (const [name, op] of bad) {
      const root = crashed(
        `j-out-${name.replace(/ /g, '-')}`,
        encodeJournal({ ...good, ops: [op] }),
      );
      writeFileSync(path.join(root, 'var/lib/cpm/installed.new'), 'x');
      const e = await journalErr(root);
      expect(e.message, name).toMatch(/outside the root|not in \.cpm-tx|canonical/);
      // also through a transaction, which recovers first
      await expect(reinstallPackages(root, [v1()])).rejects.toThrow(/unusable transaction journal/);
      expect(sentinelSnapshot(victim), name).toBe(before);
    }
    const rmdirs = crashed('j-out-rmdirs', encodeJournal({ ...good, ops: [], rmdirs: [victim] }));
    await journalErr(rmdirs);
    expect(sentinelSnapshot(victim)).toBe(before);
  });

  it('recover names every leftover it clears; a second run has nothing to do', async () => {
    const root = path.join(base, 'leftovers');
    cpSync(template, root, { recursive: true });
    mkdirSync(path.join(root, '.cpm-tx/stage'), { recursive: true });
    writeFileSync(path.join(root, '.cpm-tx/stage/f0'), 'x');
    for (const f of ['installed.new', 'journal.tmp', 'installed.tmp'])
      writeFileSync(path.join(root, 'var/lib/cpm', f), 'x');
    // a lock left by a process that is gone
    writeFileSync(path.join(root, 'var/lib/cpm/lock'), '999999999 1\n');
    const r = await recover(root);
    expect(r.result).toBe('clean');
    expect(r.did).toEqual([
      'took over the lock of pid 999999999, which is gone',
      `removed the stage directory ${root}/.cpm-tx`,
      `removed ${root}/var/lib/cpm/installed.new (never committed)`,
      `removed ${root}/var/lib/cpm/installed.tmp (never committed)`,
      `removed ${root}/var/lib/cpm/journal.tmp (never committed)`,
    ]);
    expect((await recover(root)).did).toEqual([]);
    rmSync(root, { recursive: true });
  });
});
