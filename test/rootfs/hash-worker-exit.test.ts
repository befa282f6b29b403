/**
 * A hash worker that exits without a word (it never started: no thread could be made, its module
 * did not load) must not leave the layer's reader waiting for ring space forever: the read goes
 * on and the layer fails with the worker's exit.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it, vi } from 'vitest';
import { readLayer } from '../../src/rootfs/layer-reader.js';
import { tmpDir } from '../install/helpers.js';
import { pseudoRandom } from '../support/layers.js';

const dying = vi.hoisted(() => ({ on: false }));
vi.mock('../../src/util/worker.js', async (actual) => {
  const m = await actual<typeof import('../../src/util/worker.js')>();
  return {
    ...m,
    startWorker: (name: Parameters<typeof m.startWorker>[0], data: unknown) =>
      dying.on ? new Worker('process.exit(3)', { eval: true }) : m.startWorker(name, data),
  };
});

describe('a hash worker that exits before it hashed anything', () => {
  it('ends the read of a large zstd blob file in the worker’s exit, not a hang', async () => {
    const dir = tmpDir('cpm-hashexit-');
    mkdirSync(path.join(dir, 'src'));
    writeFileSync(path.join(dir, 'src', 'big'), pseudoRandom(20 << 20, 5));
    const tar = execFileSync('tar', ['-C', path.join(dir, 'src'), '-cf', '-', 'big'], {
      maxBuffer: 1 << 30,
    });
    const file = path.join(dir, 'layer.tar.zst');
    writeFileSync(
      file,
      execFileSync('zstd', ['-q', '-c', '-1'], { input: tar, maxBuffer: 1 << 30 }),
    );
    const fd = openSync(file, 'r');
    dying.on = true;
    try {
      let bytes = 0;
      const err = await readLayer(
        fd,
        { mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', hashBlob: true, hashTar: true },
        { entry: () => undefined, data: (b) => void (bytes += b.length), end: () => undefined },
      ).catch((e: unknown) => e);
      expect(err).toMatchObject({ name: 'LayerReadError', stage: 'read' });
      expect((err as Error).message).toBe('the hashing thread exited (3)');
      // the whole tar was read, unhashed
      expect(bytes).toBe(20 << 20);
    } finally {
      dying.on = false;
      closeSync(fd);
    }
  }, 60_000);
});
