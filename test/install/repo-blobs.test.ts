/**
 * Layers from dir:// and http:// repositories are hashed once: a dir:// blob is opened by the
 * repository reader (a regular file inside the repository, checked on the open descriptor) and
 * read by the extractor, whose digest and size checks are then the only ones; an http:// blob is
 * checked by the reader's stream alone. Either way a blob that is not what the index names is
 * refused with E_DIGEST naming the repository, the file and the digest, and the root and its DB
 * stay as they were; a blob that is a symlink out of a dir:// repository is never read.
 * Real repositories (`repo create --output dir://`), a real static file server, real zstd layers,
 * one small (hashed on the main thread) and one over 8 MiB (hashed on the worker).
 */
import {
  cpSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig, type CpmConfig } from '../../src/config.js';
import { runOperation, type OperationContext } from '../../src/install/operations.js';
import { createFromTree } from '../../src/repo/create.js';
import { listInstalled } from '../../src/upkeep/query.js';
import { pseudoRandom } from '../support/layers.js';
import { rootSnapshot } from '../support/root-snapshot.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { serveFiles } from '../support/static-files.js';
import { failure, tmpDir } from './helpers.js';

const PKGS = ['test/small@1.0', 'test/big@1.0'];
const BIG = pseudoRandom(9 << 20, 7); // incompressible: its blob is over 8 MiB too
let cfg: CpmConfig;
let repo: string;
/** Blob path (relative to the repository) of each package's one layer. */
let blobOf: Map<string, string>;
/** The same packages with other contents of the same sizes: valid layers, other digests. */
let other: string;
let otherBlobOf: Map<string, string>;
const servers: Server[] = [];

afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

/** A luet tree of test/small and test/big under `dir`, packed into `dir/repo`. */
async function makeRepo(
  dir: string,
  small: string,
  big: Buffer,
): Promise<{ out: string; blobs: Map<string, string> }> {
  const tree = path.join(dir, 'tree');
  for (const [name, blob] of Object.entries({ small: Buffer.from(small), big })) {
    const d = path.join(tree, `test/${name}/1.0`);
    mkdirSync(path.join(d, `root/usr/share/${name}`), { recursive: true });
    writeFileSync(
      path.join(d, 'definition.yaml'),
      `name: ${name}\ncategory: test\nversion: "1.0"\n`,
    );
    writeFileSync(path.join(d, `root/usr/share/${name}/blob`), blob);
  }
  const out = path.join(dir, 'repo');
  const r = await createFromTree(tree, { output: `dir://${out}`, cacheDir: cfg.cache_dir });
  const blobs = new Map<string, string>();
  for (const p of r.index.packages) {
    const layers = p.image?.layers ?? [];
    expect(layers).toHaveLength(1);
    blobs.set(`${p.category}/${p.name}@${p.version}`, `blobs/sha256/${layers[0]!.digest.slice(7)}`);
  }
  return { out, blobs };
}

beforeAll(async () => {
  const dir = tmpDir('cpm-repoblobs-');
  cfg = {
    ...defaultConfig(),
    cache_dir: path.join(dir, 'cache'),
    repos_confdir: [path.join(dir, 'repos.conf.d')],
  };
  ({ out: repo, blobs: blobOf } = await makeRepo(
    dir,
    `small ${pseudoRandom(64, 3).toString('hex')}\n`,
    BIG,
  ));
  ({ out: other, blobs: otherBlobOf } = await makeRepo(
    path.join(dir, 'other'),
    'S\n',
    pseudoRandom((9 << 20) - 4096, 8),
  ));
  expect(statSync(path.join(repo, blobOf.get('test/big@1.0')!)).size).toBeGreaterThan(8 << 20);
});

function ctx(root: string, url: string): OperationContext {
  return {
    root,
    dbDir: path.join(root, 'var/lib/cpm'),
    config: cfg,
    source: { kind: 'repo', urls: [url] },
  };
}

const install = (root: string, url: string, ids: string[]) =>
  runOperation(ctx(root, url), 'install', ids, { noFinalizers: true });

/** A copy of the repository to damage. */
function repoCopy(): string {
  const d = path.join(tmpDir('cpm-repoblobs-copy-'), 'repo');
  cpSync(repo, d, { recursive: true });
  return d;
}

async function serve(dir: string): Promise<string> {
  const server = createServer(serveFiles(dir));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

/** Flips one byte in the middle of `id`'s blob (same size, another digest); returns its path. */
function flipByte(dir: string, id: string): string {
  const file = path.join(dir, blobOf.get(id)!);
  const b = readFileSync(file);
  const i = b.length >> 1;
  b[i] = b[i]! ^ 0x40;
  writeFileSync(file, b);
  return file;
}

/**
 * Puts the other repository's layer of `id` in place of its blob: a valid layer of the same size
 * (the other one is smaller; a zstd skippable frame, which decoders pass over, makes up the rest).
 */
function substitute(dir: string, id: string): string {
  const file = path.join(dir, blobOf.get(id)!);
  const subst = readFileSync(path.join(other, otherBlobOf.get(id)!));
  const pad = statSync(file).size - subst.length - 8;
  expect(pad).toBeGreaterThanOrEqual(0);
  const frame = Buffer.alloc(8 + pad);
  frame.writeUInt32LE(0x184d2a50, 0);
  frame.writeUInt32LE(pad, 4);
  writeFileSync(file, Buffer.concat([subst, frame]));
  return file;
}

/** A root holding `id` already (the next install takes the staged path), and its snapshot. */
async function rootWith(id: string): Promise<{ root: string; before: string }> {
  const root = tmpDir();
  await install(root, `dir://${repo}`, [id]);
  return { root, before: rootSnapshot(root) };
}

const otherThan = (id: string): string => PKGS.find((p) => p !== id)!;

/** An empty root after a failed install: at most the DB directory, no package. */
function untouched(root: string): void {
  expect(rootSnapshot(root).replace(/ d \d+/g, '')).toMatch(/^(var\nvar\/lib\nvar\/lib\/cpm)?$/);
  expect(listInstalled({ root })).toEqual([]);
}

/** The install of `id` from `url` into a root with the other package and into an empty one fails with E_DIGEST naming `where` and the digest, changing nothing. */
async function refusedEverywhere(
  url: string,
  id: string,
  where: string,
  digest: string,
): Promise<void> {
  const { root, before } = await rootWith(otherThan(id));
  const e = await failure(install(root, url, [id]));
  expect(e.code).toBe('E_DIGEST');
  expect(e.message).toContain(where);
  expect(e.message).toContain(digest);
  expect(e.context.digest).toBe(digest);
  expect(rootSnapshot(root)).toBe(before);
  const empty = tmpDir();
  const f = await failure(install(empty, url, [id]));
  expect(f.code).toBe('E_DIGEST');
  expect(f.message).toContain(where);
  untouched(empty);
}

const digestOfBlob = (id: string): string => `sha256:${path.basename(blobOf.get(id)!)}`;

describe('repository layers read once', () => {
  it('installs the same root from dir:// and from http://', async () => {
    const a = tmpDir();
    const b = tmpDir();
    await install(a, `dir://${repo}`, PKGS);
    await install(b, await serve(repo), PKGS);
    expect(readFileSync(path.join(a, 'usr/share/big/blob')).equals(BIG)).toBe(true);
    const files = (root: string) =>
      rootSnapshot(root).replace(/^var\/lib\/cpm\/installed .*$/m, '');
    expect(files(b)).toBe(files(a));
    const recs = (root: string) => listInstalled({ root }).map((p) => [p.id, p.files]);
    expect(recs(b)).toEqual(recs(a));
    expect(recs(a).map((r) => r[0])).toEqual(['test/big@1.0', 'test/small@1.0']);
  });

  for (const id of PKGS) {
    it(`refuses another valid layer in place of ${id}'s blob, dir:// and http:// (E_DIGEST)`, async () => {
      const bad = repoCopy();
      const blob = substitute(bad, id);
      await refusedEverywhere(`dir://${bad}`, id, `repository repo, ${blob}`, digestOfBlob(id));
      const url = await serve(bad);
      await refusedEverywhere(url, id, `${url}${blobOf.get(id)}`, digestOfBlob(id));
    });

    it(`refuses a damaged blob of ${id} in a dir:// repository (E_DIGEST, not a corrupt layer)`, async () => {
      const bad = repoCopy();
      const blob = flipByte(bad, id);
      await refusedEverywhere(`dir://${bad}`, id, `repository repo, ${blob}`, digestOfBlob(id));
    });
  }

  it('refuses a damaged http:// blob that stops decompressing long before its end (E_DIGEST)', async () => {
    // a compressible layer of several MiB, damaged near its start: zstd fails while most of the
    // blob is still to come, before the stream's own check has read to the end. The blob is read
    // again to its end to tell a damaged blob (E_DIGEST) from a corrupt layer (E_UNSAFE_ENTRY).
    const text = Buffer.from(pseudoRandom(5 << 20, 11).toString('hex'));
    const { out, blobs } = await makeRepo(tmpDir('cpm-repoblobs-text-'), 'S\n', text);
    const blob = path.join(out, blobs.get('test/big@1.0')!);
    expect(statSync(blob).size).toBeGreaterThan(4 << 20);
    const b = readFileSync(blob);
    for (let i = 0; i < 64; i++) b[4096 + i * 7] = b[4096 + i * 7]! ^ 0x5a;
    writeFileSync(blob, b);
    const url = await serve(out);
    const root = tmpDir();
    const e = await failure(install(root, url, ['test/big@1.0']));
    expect(e.code).toBe('E_DIGEST');
    expect(e.message).toContain(`${url}${blobs.get('test/big@1.0')}`);
    expect(e.context.digest).toBe(`sha256:${path.basename(blob)}`);
    untouched(root);
  });

  it('ends in E_NETWORK naming the URL when the connection drops in the middle of a layer', async () => {
    const url = await serve(repo);
    const proxy = await startFaultProxy(url);
    try {
      const big = blobOf.get('test/big@1.0')!;
      proxy.add({
        method: 'GET',
        path: new RegExp(path.basename(big)),
        fault: { kind: 'reset', afterBytes: 1 << 20 },
      });
      const root = tmpDir();
      const e = await failure(install(root, `${proxy.url}/`, ['test/big@1.0']));
      expect(e.code).toBe('E_NETWORK');
      expect(e.message).toContain(`${proxy.url}/${big}`);
      untouched(root);
    } finally {
      await proxy.stop();
    }
  });

  it('stops reading a damaged http:// blob again at once on an interrupt (E_INTERRUPTED)', async () => {
    // the same damaged layer; the server stalls the second GET of the blob (the read for the
    // check's verdict) after its first bytes: an interrupt ends that read, not an idle timeout
    const text = Buffer.from(pseudoRandom(5 << 20, 12).toString('hex'));
    const { out, blobs } = await makeRepo(tmpDir('cpm-repoblobs-stall-'), 'S\n', text);
    const rel = blobs.get('test/big@1.0')!;
    const blob = path.join(out, rel);
    const b = readFileSync(blob);
    for (let i = 0; i < 64; i++) b[4096 + i * 7] = b[4096 + i * 7]! ^ 0x5a;
    writeFileSync(blob, b);
    const files = serveFiles(out);
    let gets = 0;
    const stalled: ServerResponse[] = [];
    const server = createServer((req, res) => {
      if (req.method === 'GET' && req.url === `/${rel}` && ++gets === 2) {
        res.writeHead(200, { 'content-length': b.length });
        res.write(b.subarray(0, 64 * 1024));
        stalled.push(res);
        setTimeout(() => process.emit('SIGINT'), 200);
        return;
      }
      files(req, res);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const root = tmpDir();
    const started = Date.now();
    const e = await failure(install(root, url, ['test/big@1.0']));
    for (const r of stalled) r.destroy();
    expect(gets).toBe(2);
    expect(e.code).toBe('E_INTERRUPTED');
    expect(Date.now() - started).toBeLessThan(20_000);
    untouched(root);
  }, 30_000);

  it('refuses a blob of another size: dir:// before reading it, http:// (E_DIGEST)', async () => {
    const bad = repoCopy();
    const blob = path.join(bad, blobOf.get('test/big@1.0')!);
    writeFileSync(blob, Buffer.concat([readFileSync(blob), Buffer.from([0])]));
    const { root, before } = await rootWith('test/small@1.0');
    const e = await failure(install(root, `dir://${bad}`, ['test/big@1.0']));
    expect(e.code).toBe('E_DIGEST');
    expect(e.message).toMatch(/is \d+ bytes, expected \d+/);
    expect(e.message).toContain(blob);
    expect(rootSnapshot(root)).toBe(before);
    // over http the stream's own check refuses it (the byte past the size)
    const url = await serve(bad);
    const f = await failure(install(root, url, ['test/big@1.0']));
    expect(f.code).toBe('E_DIGEST');
    expect(f.message).toContain(`${url}${blobOf.get('test/big@1.0')}`);
    expect(rootSnapshot(root)).toBe(before);
  });

  it('never reads a dir:// blob that is a symlink out of the repository, even a correct one', async () => {
    for (const id of PKGS) {
      const bad = repoCopy();
      const blob = path.join(bad, blobOf.get(id)!);
      const outside = path.join(path.dirname(bad), 'elsewhere');
      mkdirSync(outside);
      // the same bytes: only where they are makes them refused
      renameSync(blob, path.join(outside, 'blob'));
      symlinkSync(path.join(outside, 'blob'), blob);
      const { root, before } = await rootWith(otherThan(id));
      const e = await failure(install(root, `dir://${bad}`, [id]));
      expect(e.code).toBe('E_REPO');
      expect(e.message).toContain(`${blob} leads out of the repository`);
      expect(rootSnapshot(root)).toBe(before);
      const empty = tmpDir();
      const f = await failure(install(empty, `dir://${bad}`, [id]));
      expect(f.code).toBe('E_REPO');
      untouched(empty);
    }
  });

  it('follows a blob symlink that stays inside the repository', async () => {
    const linked = repoCopy();
    const blob = path.join(linked, blobOf.get('test/big@1.0')!);
    mkdirSync(path.join(linked, 'pool'));
    renameSync(blob, path.join(linked, 'pool/big'));
    symlinkSync('../../pool/big', blob);
    // the repository itself reached through a symlink is inside too
    const alias = path.join(path.dirname(linked), 'alias');
    symlinkSync(linked, alias);
    const root = tmpDir();
    await install(root, `dir://${alias}`, PKGS);
    expect(readFileSync(path.join(root, 'usr/share/big/blob')).equals(BIG)).toBe(true);
  });

  it('refuses a blobs directory that is a symlink out of the repository', async () => {
    const bad = repoCopy();
    const outside = path.join(path.dirname(bad), 'blobs-elsewhere');
    renameSync(path.join(bad, 'blobs'), outside);
    symlinkSync(outside, path.join(bad, 'blobs'));
    const root = tmpDir();
    const e = await failure(install(root, `dir://${bad}`, ['test/small@1.0']));
    expect(e.code).toBe('E_REPO');
    expect(e.message).toContain('leads out of the repository');
    untouched(root);
  });
});
