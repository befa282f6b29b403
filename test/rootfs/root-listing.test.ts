/**
 * What finalizers create is found by listing the root before and after each package's commands
 * (src/rootfs/finalize.ts, RootListing). Later listings read again only the directories whose
 * ctime changed or was recent: here every kind of change, checked against listing everything.
 */
import {
  lstatSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RootListing } from '../../src/rootfs/finalize.js';
import { tmpDir } from '../install/helpers.js';

/** Every path under `root`, not through symlinks nor into `skip`: what a full listing gives. */
function everything(root: string, skip: Set<string>): Set<string> {
  const out = new Set<string>();
  const walk = (rel: string): void => {
    for (const e of readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (skip.has(r)) continue;
      out.add(r);
      if (e.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 30));

function tree(): string {
  const root = tmpDir('cpm-listing-');
  for (const d of ['etc/old', 'usr/share/doc/a', 'usr/lib', 'var/lib/cpm', 'opt/gone/deep', 'srv'])
    mkdirSync(path.join(root, d), { recursive: true });
  for (const f of [
    'etc/old/x',
    'usr/share/doc/a/README',
    'usr/lib/libz.so',
    'opt/gone/deep/f',
    'srv/file',
  ])
    writeFileSync(path.join(root, f), f);
  return root;
}

/** The changes a sequence of edits makes, each edit a package's finalizers. */
const edits: Array<(root: string) => void> = [
  (root) => {
    writeFileSync(path.join(root, 'usr/share/doc/a/NEWS'), 'n'); // in an existing directory
    mkdirSync(path.join(root, 'usr/local/cloud-config/x'), { recursive: true }); // a new tree
    writeFileSync(path.join(root, 'usr/local/cloud-config/x/y'), 'y');
    writeFileSync(path.join(root, 'var/lib/cpm/skipped'), 's'); // under a skipped path
  },
  (root) => {
    rmSync(path.join(root, 'opt/gone'), { recursive: true }); // gone, then again with new files
    mkdirSync(path.join(root, 'opt/gone/deep'), { recursive: true });
    writeFileSync(path.join(root, 'opt/gone/deep/f'), 'again');
    writeFileSync(path.join(root, 'opt/gone/deep/g'), 'new');
    rmSync(path.join(root, 'srv/file')); // a file replaced by a directory
    mkdirSync(path.join(root, 'srv/file'));
    writeFileSync(path.join(root, 'srv/file/inside'), 'i');
  },
  (root) => {
    symlinkSync('/usr', path.join(root, 'etc/old/host-usr')); // a symlink: listed, not followed
    renameSync(path.join(root, 'usr/lib/libz.so'), path.join(root, 'usr/lib/libz.so.1'));
    writeFileSync(path.join(root, 'etc/old/x'), 'changed content: not a new entry');
  },
  (root) => {
    rmSync(path.join(root, 'usr/share/doc/a'), { recursive: true }); // a directory made a symlink
    symlinkSync('/usr/share/doc/b', path.join(root, 'usr/share/doc/a'));
  },
  (root) => {
    rmSync(path.join(root, 'usr/share/doc/a')); // and a directory again, with its old files
    mkdirSync(path.join(root, 'usr/share/doc/a'));
    writeFileSync(path.join(root, 'usr/share/doc/a/README'), 'r');
  },
  () => {}, // nothing
];

describe('RootListing', () => {
  it.each([
    ['only changed directories read again', 0n],
    ['every directory recent, so read again', undefined],
  ])('%s: finds what a full listing finds', async (_what, recentNs) => {
    const root = tree();
    const skip = new Set(['var/lib/cpm', 'proc']);
    await tick();
    const listing = new RootListing(root, skip, recentNs);
    let before = everything(root, skip);
    const got: string[][] = [];
    const want: string[][] = [];
    for (const edit of edits) {
      await tick(); // past the filesystem clock's tick since the last listing
      edit(root);
      got.push(listing.changes());
      const after = everything(root, skip);
      want.push([...after].filter((p) => !before.has(p)).sort());
      before = after;
    }
    expect(got).toEqual(want);
    expect(want[0]).toEqual([
      'usr/local',
      'usr/local/cloud-config',
      'usr/local/cloud-config/x',
      'usr/local/cloud-config/x/y',
      'usr/share/doc/a/NEWS',
    ]);
    expect(want[1]).toEqual(['opt/gone/deep/g', 'srv/file/inside']);
    expect(want[2]).toEqual(['etc/old/host-usr', 'usr/lib/libz.so.1']);
    expect(want[3]).toEqual([]);
    expect(want[4]).toEqual(['usr/share/doc/a/README']);
    expect(want[5]).toEqual([]);
  });

  it('a directory moved onto a path is read again, though its ctime is the one recorded there', async () => {
    const root = tmpDir('cpm-listing-');
    const ctime = (rel: string): bigint =>
      lstatSync(path.join(root, rel), { bigint: true }).ctimeNs;
    // two directories made in the same tick (an extraction makes hundreds a tick): equal ctimes
    for (let i = 0; i < 100 && (i === 0 || ctime('x/sub') !== ctime('y/sub')); i++) {
      rmSync(path.join(root, 'x'), { recursive: true, force: true });
      rmSync(path.join(root, 'y'), { recursive: true, force: true });
      mkdirSync(path.join(root, 'x/sub'), { recursive: true });
      mkdirSync(path.join(root, 'y/sub'), { recursive: true });
      writeFileSync(path.join(root, 'y/sub/new'), 'n');
    }
    await tick();
    const listing = new RootListing(root, new Set(), 0n);
    await tick();
    rmSync(path.join(root, 'x'), { recursive: true });
    renameSync(path.join(root, 'y'), path.join(root, 'x'));
    expect(listing.changes()).toEqual(['x/sub/new']);
  });
});
