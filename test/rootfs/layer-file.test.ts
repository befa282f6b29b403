/**
 * Layers read from a local blob file (blob store, OCI layout): on a Node without built-in zstd the
 * zstd program reads the file descriptor itself and cpm reads its output synchronously from a
 * FIFO, while the blob's digest is computed from the same open file (on a worker thread for a
 * large blob). Failures of that path — zstd dying mid-stream, a blob that does not hash to its
 * digest, a signal while the loop reads — end in the same clean errors as the stream path and
 * leave the root as it was.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CpmError } from '../../src/errors.js';
import { installPackages, fileLayer, type LayerSource } from '../../src/rootfs/index.js';
import { layerDigests } from '../../src/rootfs/file-digest.js';
import { readLayer } from '../../src/rootfs/layer-reader.js';
import { hasBuiltinZstd, zstdFileReader } from '../../src/util/compress.js';
import { listInstalled } from '../../src/upkeep/query.js';
import { bundleChild } from '../support/child.js';
import { pseudoRandom } from '../support/layers.js';
import { failure, rawLayer, step, tmpDir } from '../install/helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

/** A zstd tar of `n` files of `size` pseudo-random bytes each (incompressible). */
function zstdLayerFile(n: number, size: number): { file: string; bytes: Buffer; tar: Buffer } {
  const dir = tmpDir('cpm-layerfile-');
  const src = path.join(dir, 'src');
  mkdirSync(path.join(src, 'data'), { recursive: true });
  for (let i = 0; i < n; i++)
    writeFileSync(
      path.join(src, 'data', `f${String(i).padStart(5, '0')}`),
      pseudoRandom(size, i + 1),
    );
  const tar = execFileSync(
    'tar',
    ['--sort=name', '--numeric-owner', '--owner=0', '--group=0', '-C', src, '-cf', '-', '.'],
    { maxBuffer: 1 << 30 },
  );
  const bytes = execFileSync('zstd', ['-q', '-c', '-1'], { input: tar, maxBuffer: 1 << 30 });
  const file = path.join(dir, 'layer.tar.zst');
  writeFileSync(file, bytes);
  return { file, bytes, tar };
}

const ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
let root: string;

beforeEach(async () => {
  root = path.join(tmpDir('cpm-layerfile-root-'), 'root');
  await installPackages(root, [
    step('base/base@1', [await rawLayer([{ name: 'etc/os-release', content: 'ID=test\n' }])]),
  ]);
});

/** Installs the zstd layer `file` with PATH set to `pathEnv` (restored after): its error, if any. */
async function installWithPath(pathEnv: string, file: string, bytes: Buffer): Promise<unknown> {
  const PATH = process.env.PATH;
  process.env.PATH = pathEnv;
  try {
    return await installPackages(root, [
      step('big/pkg@1', [fileLayer(file, ZSTD, sha(bytes))]),
    ]).then(
      () => undefined,
      (e: unknown) => e,
    );
  } finally {
    process.env.PATH = PATH;
  }
}

/** Everything under the root, so "left as it was" is checked byte for byte. */
function tree(): string {
  return execFileSync('sh', ['-c', `cd ${root} && find . -printf '%p %y %s\\n' | sort`], {
    encoding: 'utf8',
  });
}

const hasZstdProgram = ((): boolean => {
  try {
    execFileSync('sh', ['-c', 'command -v zstd'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

// the zstd program reads a blob file wherever it is installed (node:zlib's stream otherwise)
describe.skipIf(!hasZstdProgram)('zstd reading the blob file', () => {
  it('hands over exactly what zstd -dc writes, and tells how far zstd read', async () => {
    const { file, bytes, tar } = zstdLayerFile(20, 100_000);
    const fd = openSync(file, 'r');
    try {
      const dec = zstdFileReader(fd)!;
      expect(dec).not.toBeNull();
      const buf = Buffer.alloc(1 << 20);
      const parts: Buffer[] = [];
      for (let n = dec.read(buf); n > 0; n = dec.read(buf))
        parts.push(Buffer.from(buf.subarray(0, n)));
      await dec.done();
      expect(dec.consumed()).toBe(bytes.length);
      dec.close();
      dec.close(); // idempotent
      expect(sha(Buffer.concat(parts))).toBe(sha(tar));
      expect(fstatSync(fd).size).toBe(bytes.length); // the caller's descriptor stays open
    } finally {
      closeSync(fd);
    }
  });

  it('refuses the layer cleanly when zstd is killed mid-stream', async () => {
    const { file, bytes } = zstdLayerFile(40, 100_000);
    // a zstd that writes part of its output and is then killed
    const bin = tmpDir('cpm-fakezstd-');
    const real = execFileSync('sh', ['-c', 'command -v zstd'], { encoding: 'utf8' }).trim();
    writeFileSync(
      path.join(bin, 'zstd'),
      `#!/bin/sh\n${real} "$@" | head -c 300000\nkill -KILL $$\n`,
    );
    chmodSync(path.join(bin, 'zstd'), 0o755);
    const before = tree();
    const err = await installWithPath(`${bin}:${process.env.PATH}`, file, bytes);
    expect(err).toBeInstanceOf(CpmError);
    expect((err as CpmError).code).toBe('E_UNSAFE_ENTRY');
    expect((err as CpmError).message).toMatch(
      /corrupt or truncated zstd data \(zstd -dcq failed \(SIGKILL\)/,
    );
    expect((err as CpmError).context.digest).toBe(sha(bytes));
    expect(tree()).toBe(before);
  });

  // an empty PATH (no mkfifo either: the stream path) and one with mkfifo alone (the FIFO path)
  for (const withMkfifo of [false, true])
    it(`without a zstd program${withMkfifo ? ' (mkfifo there)' : ''}: node:zlib where this Node has zstd, else E_TOOL_MISSING`, async () => {
      const { file, bytes } = zstdLayerFile(1, 1000);
      const bin = tmpDir('cpm-nozstd-');
      if (withMkfifo)
        symlinkSync(
          execFileSync('sh', ['-c', 'command -v mkfifo'], { encoding: 'utf8' }).trim(),
          path.join(bin, 'mkfifo'),
        );
      const before = tree();
      const outcome = await installWithPath(bin, file, bytes);
      if (hasBuiltinZstd()) {
        expect(outcome).toBeUndefined();
        expect(readFileSync(path.join(root, 'data/f00000'))).toEqual(pseudoRandom(1000, 1));
      } else {
        expect((outcome as CpmError).code).toBe('E_TOOL_MISSING');
        expect(tree()).toBe(before);
      }
    });
});

describe('the digest of a blob file', () => {
  // 9 MB of incompressible data: hashed on a worker thread (from 8 MiB); 200 kB: on this thread
  for (const [what, n, size] of [
    ['large', 90, 100_000],
    ['small', 2, 100_000],
  ] as const)
    it(`refuses a ${what} blob that does not hash to its digest, naming both`, async () => {
      const { file, bytes } = zstdLayerFile(n, size);
      const wrong = 'sha256:' + '0'.repeat(64);
      const before = tree();
      const err = await failure(
        installPackages(root, [step('bad/pkg@1', [fileLayer(file, ZSTD, wrong)])]),
      );
      expect(err.code).toBe('E_DIGEST');
      expect(err.message).toContain(`has digest ${sha(bytes)}, expected ${wrong}`);
      expect(err.context.digest).toBe(wrong);
      expect(tree()).toBe(before);
      expect(listInstalled({ root }).map((p) => p.id)).toEqual(['base/base@1']);
    });

  it('installs the same blob under its right digest', async () => {
    const { file, bytes } = zstdLayerFile(90, 100_000);
    await installPackages(root, [step('ok/pkg@1', [fileLayer(file, ZSTD, sha(bytes))])]);
    expect(sha(readFileSync(path.join(root, 'data/f00089')))).toBe(sha(pseudoRandom(100_000, 90)));
  });

  it('streams a gzip blob from the descriptor and leaves it open for the caller', async () => {
    const tar = execFileSync('tar', ['-C', here, '-cf', '-', 'layer-file.test.ts']);
    const gz = execFileSync('gzip', ['-c', '-n'], { input: tar });
    const file = path.join(tmpDir('cpm-layerfile-gz-'), 'l.tgz');
    writeFileSync(file, gz);
    const fd = openSync(file, 'r');
    try {
      const names: string[] = [];
      let got = 0;
      await readLayer(
        fd,
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
          onBlobBytes: (n) => (got += n),
        },
        { entry: (h) => void names.push(h.name), data: () => undefined, end: () => undefined },
      );
      expect(names).toEqual(['layer-file.test.ts']);
      expect(got).toBe(gz.length);
      expect(fstatSync(fd).size).toBe(gz.length);
    } finally {
      closeSync(fd);
    }
  });
});

describe('the digest of the tar (diff_id) of a blob file', () => {
  // 9 MB blob: both digests on the worker thread, the tar's through the shared ring
  it('installs a large layer whose diff_id matches and refuses one whose does not', async () => {
    const { file, bytes, tar } = zstdLayerFile(90, 100_000);
    const good = { ...fileLayer(file, ZSTD, sha(bytes)), diffId: sha(tar) };
    const before = tree();
    const wrong = 'sha256:' + '1'.repeat(64);
    const err = await failure(
      installPackages(root, [step('bad/pkg@1', [{ ...good, diffId: wrong }])]),
    );
    expect(err.code).toBe('E_DIGEST');
    expect(err.message).toContain(`decompresses to ${sha(tar)}, but`);
    expect(err.message).toContain(`diff_ids says ${wrong}`);
    expect(tree()).toBe(before);
    await installPackages(root, [step('ok/pkg@1', [good])]);
    expect(sha(readFileSync(path.join(root, 'data/f00000')))).toBe(sha(pseudoRandom(100_000, 1)));
  });

  it('writes every file from the ring the hash worker reads too: small ones across its wraps, large ones in pieces', async () => {
    // GNU tar of odd-sized files (some over SMALL_FILE, one over the ring) and a >8 MB blob: the
    // stage worker writes and hashes every body in place while the hash worker digests the tar
    const dir = tmpDir('cpm-layerfile-ring-');
    const src = path.join(dir, 'src');
    mkdirSync(path.join(src, 'data'), { recursive: true });
    const want = new Map<string, Buffer>();
    for (let i = 0; i < 600; i++) {
      const size =
        i % 200 === 3 ? (9 << 20) + i : i % 50 === 5 ? (1 << 20) + i : (i * 7919) % 60_000;
      const b = pseudoRandom(size, i + 1);
      const rel = `data/f${String(i).padStart(3, '0')}`;
      writeFileSync(path.join(src, rel), b);
      want.set(rel, b);
    }
    const tar = execFileSync(
      'tar',
      ['--sort=name', '--numeric-owner', '--owner=0', '--group=0', '-C', src, '-cf', '-', '.'],
      { maxBuffer: 1 << 30 },
    );
    const bytes = execFileSync('zstd', ['-q', '-c', '-1'], { input: tar, maxBuffer: 1 << 30 });
    expect(bytes.length).toBeGreaterThan(8 << 20); // the hash worker's ring, not the inline hash
    const file = path.join(dir, 'layer.tar.zst');
    writeFileSync(file, bytes);
    const after = process.env.CPM_STAGE_WORKER_AFTER;
    process.env.CPM_STAGE_WORKER_AFTER = '0';
    try {
      await installPackages(root, [
        step('ring/pkg@1', [{ ...fileLayer(file, ZSTD, sha(bytes)), diffId: sha(tar) }]),
      ]);
    } finally {
      if (after === undefined) delete process.env.CPM_STAGE_WORKER_AFTER;
      else process.env.CPM_STAGE_WORKER_AFTER = after;
    }
    const recs = listInstalled({ root }).find((p) => p.id === 'ring/pkg@1')!.files;
    for (const [rel, b] of want) {
      expect(sha(readFileSync(path.join(root, rel))), rel).toBe(sha(b));
      expect(`sha256:${recs.find((f) => f.path === rel)!.sha256}`, rel).toBe(sha(b));
    }
  });

  it('hashes every byte written through the ring, across many wraps, in any piece sizes', async () => {
    const { file, bytes } = zstdLayerFile(90, 100_000); // large enough for the worker
    const fd = openSync(file, 'r');
    try {
      const d = layerDigests(fd, true, true);
      const all = pseudoRandom(30 << 20, 7);
      const whole = createHash('sha256');
      let at = 0;
      let k = 1;
      while (at < all.length) {
        const space = d.space();
        expect(space.length).toBeGreaterThan(0);
        expect(space.length).toBeLessThanOrEqual(1 << 20);
        k = (k * 1103515245 + 12345) & 0x7fffffff;
        const n = Math.min(space.length, all.length - at, 1 + (k % 300_000));
        all.copy(space, 0, at, at + n);
        d.wrote(n);
        whole.update(space.subarray(0, n));
        at += n;
      }
      const r = await d.result();
      expect(r.tar).toBe(`sha256:${createHash('sha256').update(all).digest('hex')}`);
      expect(r.tar).toBe(`sha256:${whole.digest('hex')}`);
      expect(r.blob).toBe(sha(bytes));
    } finally {
      closeSync(fd);
    }
  });

  it('goes on reading when the worker cannot read the blob, and reports that at the end', async () => {
    const { file } = zstdLayerFile(90, 100_000);
    const fd = openSync(file, 'a'); // write-only: every positional read fails (EBADF)
    try {
      const d = layerDigests(fd, true, true);
      const piece = pseudoRandom(1 << 20, 3);
      // three rings' worth: without the worker's "gone" this would wait for it forever
      for (let i = 0; i < 24; i++) {
        const space = d.space();
        const n = Math.min(space.length, piece.length);
        piece.copy(space, 0, 0, n);
        d.wrote(n);
      }
      await expect(d.result()).rejects.toMatchObject({ code: 'EBADF' });
    } finally {
      closeSync(fd);
    }
  });

  it('stops a running hash when cancelled', async () => {
    const { file } = zstdLayerFile(90, 100_000);
    const fd = openSync(file, 'r');
    try {
      const d = layerDigests(fd, true, true);
      d.wrote(0);
      const space = d.space();
      space.fill(1, 0, 1000);
      d.wrote(1000);
      await d.cancel(); // waiting for more tar bytes: terminated anyway
    } finally {
      closeSync(fd);
    }
  });
});

describe('a signal while a blob file is read', () => {
  let child: string;
  beforeAll(async () => {
    child = await bundleChild(path.join(here, 'fault-child.ts'), 'cpm-layerfile-sig-');
  });

  const run = (
    job: unknown,
    env: Record<string, string>,
  ): Promise<{ code: number | null; stderr: string }> =>
    new Promise((resolve) => {
      const p = spawn(process.execPath, [child, JSON.stringify(job)], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('close', (code) => resolve({ code, stderr }));
    });

  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)
    it(`${sig} in the middle of the layer ends in "interrupted" and an unchanged root`, async () => {
      // 600 files of 16 kB (≈ 10 MB of tar): the signal comes at the 40th file, the read loop
      // takes it at its next turn of the event loop, long before the end
      const { file, bytes } = zstdLayerFile(600, 16_000);
      const layer: LayerSource = fileLayer(file, ZSTD, sha(bytes));
      const job = {
        root,
        install: [
          {
            ...step('big/pkg@1', [layer]),
            layers: [{ file, mediaType: ZSTD, digest: layer.digest }],
          },
        ],
        remove: [],
      };
      const before = tree();
      const count = path.join(tmpDir('cpm-layerfile-count-'), 'count');
      const r = await run(job, {
        CPM_FAULT_AT: '40',
        CPM_FAULT_SIGNAL: sig,
        CPM_FAULT_COUNT: count,
      });
      expect(r.code, r.stderr).toBe(code);
      expect(r.stderr).toMatch(
        new RegExp(`^cpm: interrupted by ${sig}; the root is unchanged`, 'm'),
      );
      expect(tree()).toBe(before);
      // it stopped reading: far fewer staged files than the layer has
      expect(Number(readFileSync(count, 'utf8'))).toBeLessThan(400);
    });
});
