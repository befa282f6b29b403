/**
 * `cpm image oci` (src/image/oci.ts) on a root assembled by the real installer: one layer per
 * package on top of the base, reproducible digests, an upgrade changes one package layer, the
 * DB overlay of a rootless install, and skopeo reading the result from a layout and from the
 * real registry.
 */
import { execFile } from 'node:child_process';
import { promises as fsp, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOciImage, writeOciImage, type WriteOciImageResult } from '../../src/image/oci.js';
import { InstalledDb } from '../../src/rootfs/db.js';
import { rootfsInit } from '../../src/install/image-ref.js';
import { installPackages } from '../../src/rootfs/index.js';
import { BlobStore } from '../../src/oci/blobstore.js';
import { OciLayout } from '../../src/oci/layout.js';
import { layerFromFiles, spec, step, tmpDir } from '../install/helpers.js';
import { readLayer, type LayerEntry } from '../support/layers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';

const run = promisify(execFile);
const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/cpm.js');
const EPOCH = 1_700_000_000;

let reg: RegistryInstance;
beforeAll(async () => {
  reg = await startRegistry();
});
afterAll(async () => {
  await reg?.stop();
});

const baseLayer = () =>
  layerFromFiles({
    'etc/os-release': 'ID=test\n',
    'usr/bin/sh': '#!sh\n',
    'usr/lib/libc.so': 'libc',
  });
const appA = () => layerFromFiles({ 'usr/bin/a': 'a1', 'usr/share/a/doc': 'doc a' });
const appB = (v: string) => layerFromFiles({ 'usr/bin/b': `b${v}`, 'etc/b.conf': `v=${v}\n` });

/** base/os (base: true) + app/a + app/b@v, plus one file no package owns. */
async function assemble(bVersion = '1'): Promise<string> {
  const root = path.join(tmpDir('cpm-oci-'), 'root');
  await fsp.mkdir(root);
  await installPackages(root, [step('base/os@1', [baseLayer()], { base: true })], {
    noFinalizers: true,
  });
  await installPackages(
    root,
    [step('app/a@1', [appA()]), step(`app/b@${bVersion}`, [appB(bVersion)])],
    {
      noFinalizers: true,
    },
  );
  writeFileSync(path.join(root, 'etc/hostname'), 'box\n');
  return root;
}

async function layerEntries(store: BlobStore, digest: string): Promise<LayerEntry[]> {
  return readLayer(await store.read(digest));
}

/** path → "type mode uid:gid content" for every entry under `dir`. */
async function snapshot(dir: string, rel = ''): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of await fsp.readdir(path.join(dir, rel))) {
    const p = rel ? `${rel}/${name}` : name;
    const st = await fsp.lstat(path.join(dir, p));
    const what = st.isDirectory()
      ? 'dir'
      : st.isSymbolicLink()
        ? `-> ${await fsp.readlink(path.join(dir, p))}`
        : (await fsp.readFile(path.join(dir, p))).toString('hex');
    out.set(p, `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${what}`);
    if (st.isDirectory()) for (const [k, v] of await snapshot(dir, p)) out.set(k, v);
  }
  return out;
}

const names = (es: LayerEntry[]): string[] => es.map((e) => e.name);

describe('cpm image oci', () => {
  let root: string;
  let out: string;
  let first: WriteOciImageResult;
  let srcSnap: Map<string, string>;

  beforeAll(async () => {
    root = await assemble();
    out = tmpDir('cpm-oci-out-');
    first = await writeOciImage(root, {
      tag: `oci:${out}/a:1`,
      sourceDateEpoch: EPOCH,
      onWarning: () => undefined,
    });
    srcSnap = await snapshot(root);
  }, 60_000);

  it('has one layer per package on top of the base, unowned files and the DB last', async () => {
    expect(first.layers.map((l) => `${l.kind} ${l.package ?? ''}`.trim())).toEqual([
      'base base/os@1',
      'unowned',
      'package app/a@1',
      'package app/b@1',
      'db',
    ]);
    const store = (await OciLayout.open(`${out}/a`)).blobs;
    const [base, unowned, a, b, db] = await Promise.all(
      first.layers.map((l) => layerEntries(store, l.digest)),
    );
    expect(names(base!)).toEqual([
      './',
      'etc/',
      'etc/os-release',
      'usr/',
      'usr/bin/',
      'usr/bin/sh',
      'usr/lib/',
      'usr/lib/libc.so',
    ]);
    expect(names(unowned!)).toEqual(['etc/', 'etc/hostname', 'var/', 'var/lib/']);
    expect(names(a!)).toEqual([
      'usr/',
      'usr/bin/',
      'usr/bin/a',
      'usr/share/',
      'usr/share/a/',
      'usr/share/a/doc',
    ]);
    expect(names(b!)).toEqual(['etc/', 'etc/b.conf', 'usr/', 'usr/bin/', 'usr/bin/b']);
    expect(names(db!)).toEqual(['var/', 'var/lib/', 'var/lib/cpm/', 'var/lib/cpm/installed']);
    const dbText = db!.find((e) => e.name === 'var/lib/cpm/installed')!.content!.toString();
    expect(
      InstalledDb.parse(dbText)
        .list()
        .map((p) => p.id),
    ).toEqual(['app/a@1', 'app/b@1', 'base/os@1']);
    for (const l of [base!, unowned!, a!, b!, db!]) {
      for (const e of l) expect(e.mtime).toBe(EPOCH);
    }
    expect(a!.find((e) => e.name === 'usr/bin/a')!.content!.toString()).toBe('a1');
  });

  it('is reproducible: the same root gives the same digests', async () => {
    const again = await buildOciImage(root, new BlobStore(tmpDir('cpm-oci-store-')), {
      sourceDateEpoch: EPOCH,
    });
    expect(again.descriptor.digest).toBe(first.digest);
    const other = await assemble();
    const fresh = await buildOciImage(other, new BlobStore(tmpDir('cpm-oci-store-')), {
      sourceDateEpoch: EPOCH,
    });
    // Same files, so the same layers; the DB differs only in the (GNU tar, mtime-bearing)
    // digests of the test's package layers it records.
    const noDb = (ls: typeof fresh.layers) =>
      ls.filter((l) => l.kind !== 'db').map((l) => l.digest);
    expect(noDb(fresh.layers)).toEqual(noDb(first.layers));
  });

  it('an upgrade of one package changes only that layer (and the DB)', async () => {
    await installPackages(root, [step('app/b@2', [appB('2')])], { noFinalizers: true });
    const up = await buildOciImage(root, new BlobStore(tmpDir('cpm-oci-store-')), {
      sourceDateEpoch: EPOCH,
    });
    const before = new Map(
      first.layers.map((l) => [l.kind + (l.package?.split('@')[0] ?? ''), l.digest]),
    );
    const changed = up.layers
      .filter((l) => before.get(l.kind + (l.package?.split('@')[0] ?? '')) !== l.digest)
      .map((l) => `${l.kind} ${l.package ?? ''}`.trim());
    expect(changed).toEqual(['package app/b@2', 'db']);
    expect(up.layers).toHaveLength(first.layers.length);
  });

  it('skopeo reads the layout, and the pushed image from the registry', async () => {
    const inspect = JSON.parse(
      (await run('skopeo', ['inspect', '--raw', `oci:${out}/a:1`])).stdout,
    ) as { layers: unknown[] };
    expect(inspect.layers).toHaveLength(5);
    const img = await writeOciImage(root, {
      tag: `${reg.host}/os/system:1`,
      push: true,
      sourceDateEpoch: EPOCH,
      cacheDir: tmpDir('cpm-oci-cache-'),
    });
    expect(img.written).toEqual([`${reg.host}/os/system:1`]);
    const remote = JSON.parse(
      (await run('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/os/system:1`]))
        .stdout,
    ) as { Digest: string; Layers: string[] };
    expect(remote.Digest).toBe(img.digest);
    expect(remote.Layers).toEqual(img.layers.map((l) => l.digest));
    const copy = tmpDir('cpm-oci-copy-');
    await run('skopeo', [
      'copy',
      '--src-tls-verify=false',
      `docker://${reg.host}/os/system:1`,
      `oci:${copy}/img:x`,
    ]);
    const idx = JSON.parse(await fsp.readFile(`${copy}/img/index.json`, 'utf8')) as {
      manifests: Array<{ digest: string }>;
    };
    expect(idx.manifests[0]!.digest).toBe(img.digest);
  }, 60_000);

  it('the CLI writes the same image and prints it as JSON', async () => {
    const dir = tmpDir('cpm-oci-cli-');
    const { stdout } = await run(
      'node',
      [BIN, 'image', 'oci', '--root', root, '--tag', `oci:${dir}/img:v1`, '--json'],
      { env: { ...process.env, SOURCE_DATE_EPOCH: String(EPOCH), CPM_CONFIG: '/dev/null' } },
    );
    const r = JSON.parse(stdout) as { digest: string; written: string[] };
    const lib = await buildOciImage(root, new BlobStore(tmpDir('cpm-oci-store-')), {
      sourceDateEpoch: EPOCH,
    });
    expect(r.digest).toBe(lib.descriptor.digest);
    expect(r.written).toEqual([`oci:${dir}/img:v1`]);
    const usage = await run('node', [BIN, 'image', 'oci', '--root', root, '--tag', 'localhost/x'], {
      env: { ...process.env, CPM_CONFIG: '/dev/null' },
    }).catch((e: { code: number; stderr: string }) => e);
    expect(usage).toMatchObject({ code: 2 });
  });

  it('cpm rootfs init --from reads it back as the same tree', async () => {
    const back = path.join(tmpDir('cpm-oci-back-'), 'root');
    const r = await rootfsInit(back, `oci:${out}/a:1`, { cacheDir: tmpDir('cpm-oci-cache-') });
    expect(r.base).toBe('images/a@1');
    const got = await snapshot(back);
    // The DB is the receiving root's own; every other path, type, mode and content is the image's.
    const noDb = (m: Map<string, string>) =>
      [...m].filter(([p]) => !p.startsWith('var/lib/cpm/')).sort();
    expect(noDb(got)).toEqual(noDb(srcSnap));
  }, 60_000);

  it('refuses a registry reference without --push or --output', async () => {
    await expect(writeOciImage(root, { tag: `${reg.host}/os/system:1` })).rejects.toMatchObject({
      code: 'E_USAGE',
    });
  });
});

describe('rootless installs', () => {
  it('take owners, modes and device nodes from the DB', async () => {
    const root = path.join(tmpDir('cpm-oci-rl-'), 'root');
    await fsp.mkdir(path.join(root, 'usr/bin'), { recursive: true });
    await fsp.mkdir(path.join(root, 'var/lib/cpm'), { recursive: true });
    writeFileSync(path.join(root, 'usr/bin/ping'), 'ping');
    const db = new InstalledDb([
      {
        id: 'net/ping@1',
        spec: spec('net/ping@1'),
        origin: 'test',
        imageDigest: '',
        reason: 'explicit',
        layers: [],
        rootless: true,
        files: [
          { path: 'dev', type: 'd', mode: 0o755, uid: 0, gid: 0 },
          {
            path: 'dev/null',
            type: 'c',
            mode: 0o666,
            uid: 0,
            gid: 0,
            rdev: [1, 3],
            skipped: 'mknod',
          },
          { path: 'usr', type: 'd', mode: 0o755, uid: 0, gid: 0 },
          { path: 'usr/bin', type: 'd', mode: 0o755, uid: 0, gid: 0 },
          {
            path: 'usr/bin/ping',
            type: 'f',
            mode: 0o4755,
            uid: 0,
            gid: 7,
            xattrs: { 'user.note': 'x' },
          },
        ],
      },
    ]);
    writeFileSync(path.join(root, 'var/lib/cpm/installed'), db.serialize());
    await fsp.chown(path.join(root, 'usr/bin/ping'), 1000, 1000);
    const store = new BlobStore(tmpDir('cpm-oci-store-'));
    const img = await buildOciImage(root, store, { sourceDateEpoch: EPOCH, xattrs: false });
    const pkg = img.layers.find((l) => l.package === 'net/ping@1')!;
    const es = await layerEntries(store, pkg.digest);
    const ping = es.find((e) => e.name === 'usr/bin/ping')!;
    expect([ping.uid, ping.gid, ping.mode]).toEqual([0, 7, 0o4755]);
    expect(ping.pax?.['SCHILY.xattr.user.note']).toBe('x');
    const dev = es.find((e) => e.name === 'dev/null')!;
    expect(dev.type).toBe('character-device');
  });
});
