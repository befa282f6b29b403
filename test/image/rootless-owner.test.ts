/**
 * A root assembled without root privileges belongs to the user on disk; its images must still
 * say 0:0, as a user namespace maps that user. The suite runs as root, so the CLI runs here as
 * `nobody` through setpriv: install, then image tar, squashfs and oci, listed with the system's
 * tar and unsquashfs. The walker's mapping is also tested directly with a chowned file.
 */
import { execFile, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RootWalker } from '../../src/image/rootfs-walk.js';
import { PROJECT } from '../install/base-images.js';
import { tmpDir } from '../install/helpers.js';

const run = promisify(execFile);
const BIN = path.join(PROJECT, 'bin/cpm.js');
const NOBODY = 65534;
const canDrop = process.getuid?.() === 0 && spawnSync('setpriv', ['--version']).status === 0;

let work: string;

function chownTree(dir: string, uid: number, gid: number): void {
  chownSync(dir, uid, gid);
  for (const d of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, d.name);
    if (d.isDirectory()) chownTree(p, uid, gid);
    else chownSync(p, uid, gid);
  }
}

/** The real CLI as user nobody. */
async function asNobody(args: string[]): Promise<{ out: string; err: string; code: number }> {
  const env = { ...process.env, CPM_CONFIG: path.join(work, 'cpm.yaml'), HOME: work };
  try {
    const r = await run(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'node', BIN, ...args],
      { env, cwd: work, maxBuffer: 64 << 20 },
    );
    return { out: r.stdout, err: r.stderr, code: 0 };
  } catch (e) {
    const x = e as { stdout: string; stderr: string; code: number };
    return { out: x.stdout, err: x.stderr, code: x.code };
  }
}

/** `uid/gid path` per entry, from a `tar tv --numeric-owner`-like listing. */
function owners(listing: string, col: number): Array<[string, string]> {
  return listing
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .map((f) => [f[f.length - 1]!, f[col]!] as [string, string]);
}

beforeAll(() => {
  if (!canDrop) return;
  if (!existsSync(path.join(PROJECT, 'dist/cpm.cjs')))
    throw new Error('dist/ is missing: run "npm run build" first (npm test does it)');
  work = tmpDir('cpm-rootless-');
  const pkg = path.join(work, 'tree', 'app', 'hello');
  mkdirSync(path.join(pkg, 'root', 'etc', 'hello.d'), { recursive: true });
  writeFileSync(path.join(pkg, 'definition.yaml'), 'name: hello\ncategory: app\nversion: 1.0\n');
  writeFileSync(path.join(pkg, 'root', 'etc', 'hello.d', 'x'), 'hi\n');
  writeFileSync(
    path.join(work, 'cpm.yaml'),
    `cache_dir: ${path.join(work, 'cache')}\nrepos_confdir: ${path.join(work, 'repos.conf.d')}\n`,
  );
  chownTree(work, NOBODY, NOBODY);
});
afterAll(() => undefined);

describe.skipIf(!canDrop)('images of a root assembled as a non-root user', () => {
  it('install as nobody; image tar, squashfs and oci write 0:0, the DB and unowned files too', async () => {
    for (const args of [
      ['repo', 'create', '--tree', 'tree', '--output', 'dir://repo'],
      ['install', 'app/hello', '--repo', 'dir://repo', '--root', 'root', '-y'],
    ]) {
      const r = await asNobody(args);
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(0);
    }
    // a file the user added by hand, owned by nobody like everything else on disk
    writeFileSync(path.join(work, 'root', 'etc', 'motd'), 'welcome\n');
    chownSync(path.join(work, 'root', 'etc', 'motd'), NOBODY, NOBODY);

    const tar = await asNobody(['image', 'tar', '--root', 'root', '-o', 'root.tar']);
    expect(tar.code, tar.err).toBe(0);
    const tv = spawnSync('tar', ['tvf', path.join(work, 'root.tar'), '--numeric-owner'], {
      encoding: 'utf8',
    });
    const t = owners(tv.stdout, 1);
    expect(t.map(([p]) => p)).toEqual(
      expect.arrayContaining(['etc/hello.d/x', 'etc/motd', 'var/lib/cpm/installed']),
    );
    for (const [p, o] of t) expect(`${p} ${o}`).toBe(`${p} 0/0`);

    const sq = await asNobody(['image', 'squashfs', '--root', 'root', '-o', 'root.sqfs']);
    expect(sq.code, sq.err).toBe(0);
    const ls = spawnSync('unsquashfs', ['-lln', path.join(work, 'root.sqfs')], {
      encoding: 'utf8',
    });
    expect(ls.status, ls.stderr).toBe(0);
    const s = owners(ls.stdout, 1);
    expect(s.length).toBeGreaterThanOrEqual(t.length);
    for (const [p, o] of s) expect(`${p} ${o}`).toBe(`${p} 0/0`);

    const oci = await asNobody(['image', 'oci', '--root', 'root', '--tag', 'oci:img:1', '--json']);
    expect(oci.code, oci.err).toBe(0);
    const blobs = path.join(work, 'img', 'blobs', 'sha256');
    let layers = 0;
    for (const b of readdirSync(blobs)) {
      const l = spawnSync('tar', ['tzvf', path.join(blobs, b), '--numeric-owner'], {
        encoding: 'utf8',
      });
      if (l.status !== 0) continue; // the config and manifest are JSON
      layers++;
      for (const [p, o] of owners(l.stdout, 1)) expect(`${b} ${p} ${o}`).toBe(`${b} ${p} 0/0`);
    }
    expect(layers).toBeGreaterThanOrEqual(2);
  });
});

describe.skipIf(process.getuid?.() !== 0)('RootWalker rootlessOwner', () => {
  it('maps the given disk owner to 0 and keeps others; false keeps every disk owner', async () => {
    const root = tmpDir('cpm-rootless-walk-');
    writeFileSync(path.join(root, 'mine'), 'a');
    writeFileSync(path.join(root, 'other'), 'b');
    chownSync(path.join(root, 'mine'), 1234, 1235);
    chownSync(path.join(root, 'other'), 4321, 1235);
    const list = async (o: { uid: number; gid: number } | false): Promise<string[]> => {
      const out: string[] = [];
      for await (const e of new RootWalker(root, { rootlessOwner: o }).entries())
        out.push(`${e.path} ${e.uid}/${e.gid}`);
      return out;
    };
    expect(await list({ uid: 1234, gid: 1235 })).toEqual(['mine 0/0', 'other 4321/0']);
    expect(await list(false)).toEqual(['mine 1234/1235', 'other 4321/1235']);
    const check = await new RootWalker(root, {
      rootlessOwner: { uid: 1234, gid: 1235 },
    }).diskCheck();
    expect(check.inexact).toMatch(/uid 1234/);
  });
});
