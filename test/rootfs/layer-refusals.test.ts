/**
 * Layers that must be refused (OCI image spec, containerd and GNU tar behaviour), each built from
 * real GNU tar / zstd bytes and then damaged the way a broken or hostile producer would. A refusal
 * names the layer digest and the entry, and leaves the root exactly as it was.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { installPackages, fileLayer, type LayerSource } from '../../src/rootfs/index.js';
import { failure, rawLayer, step, tmpDir } from '../install/helpers.js';

let root: string;

beforeEach(async () => {
  root = path.join(tmpDir('cpm-refuse-'), 'root');
  await installPackages(root, [
    step('base/base@1', [await rawLayer([{ name: 'etc/os-release', content: 'ID=test\n' }])]),
  ]);
});

const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

/** The bytes of a GNU tar archive (default gnu format) of `files` (names may be raw bytes). */
function gnuTar(files: Array<[Buffer, string]>, format = 'gnu'): Buffer {
  const dir = tmpDir('cpm-gnutar-');
  const src = Buffer.from(path.join(dir, 'src'));
  mkdirSync(src);
  for (const [name, content] of files)
    writeFileSync(Buffer.concat([src, Buffer.from('/'), name]), content);
  return execFileSync('tar', [
    `--format=${format}`,
    '--sort=name',
    '--numeric-owner',
    '--owner=0',
    '--group=0',
    '-C',
    src.toString(),
    '-cf',
    '-',
    '.',
  ]);
}

/** Overwrites a field of the header at `at` and recomputes its checksum, as a producer would. */
function patchHeader(tar: Buffer, at: number, off: number, bytes: Buffer): Buffer {
  const out = Buffer.from(tar);
  out.fill(0, at + off, at + off + bytes.length);
  bytes.copy(out, at + off);
  out.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += out[at + i]!;
  out.write(sum.toString(8).padStart(6, '0') + '\0 ', at + 148, 'latin1');
  return out;
}

/** Offset of the header of the entry whose name ends with `suffix`. */
function headerOf(tar: Buffer, suffix: string): number {
  for (let at = 0; at + 512 <= tar.length; at += 512) {
    const name = tar
      .subarray(at, at + 100)
      .toString('latin1')
      .replace(/\0.*$/s, '');
    if (name.endsWith(suffix)) return at;
  }
  throw new Error(`no header for ${suffix}`);
}

function layerOf(bytes: Buffer, mediaType = 'application/vnd.oci.image.layer.v1.tar'): LayerSource {
  const f = path.join(tmpDir('cpm-layerblob-'), 'layer');
  writeFileSync(f, bytes);
  return fileLayer(f, mediaType, sha(bytes));
}

function dbBytes(): string {
  return execFileSync('sh', ['-c', `cd ${root} && find . -printf '%p %y %s\\n' | sort`], {
    encoding: 'utf8',
  });
}

async function refused(layer: LayerSource, match: RegExp): Promise<void> {
  const before = dbBytes();
  const err = await failure(installPackages(root, [step('evil/pkg@1', [layer])]));
  expect(err.code).toBe('E_UNSAFE_ENTRY');
  expect(err.message).toMatch(match);
  expect(err.message).toContain(layer.digest);
  expect(err.context.digest).toBe(layer.digest);
  expect(dbBytes()).toBe(before);
}

describe('tar headers GNU tar refuses', () => {
  const good = (): Buffer =>
    gnuTar([
      [Buffer.from('a.txt'), 'first'],
      [Buffer.from('b.txt'), 'second entry'],
    ]);

  it('the unpatched archive installs (the damage below is what is refused)', async () => {
    const res = await installPackages(root, [step('ok/pkg@1', [layerOf(good())])]);
    expect(res.installed).toEqual(['ok/pkg@1']);
  });

  it('refuses garbage after the digits of the size field (tar-stream reads "14zz" as 12)', async () => {
    const t = good();
    const bad = patchHeader(t, headerOf(t, 'b.txt'), 124, Buffer.from('00000000014zz'.slice(2)));
    // the damage is real: GNU tar itself refuses this archive
    expect(() => execFileSync('tar', ['-tf', '-'], { input: bad, stdio: 'pipe' })).toThrow();
    await refused(layerOf(bad), /entry "\.\/b\.txt".*size field is "0*14zz", not an octal number/);
  });

  it('refuses garbage in the mode field', async () => {
    const t = good();
    const bad = patchHeader(t, headerOf(t, 'a.txt'), 100, Buffer.from('06x4\0'));
    expect(() => execFileSync('tar', ['-tvf', '-'], { input: bad, stdio: 'pipe' })).toThrow();
    await refused(layerOf(bad), /entry "\.\/a\.txt".*mode field is "06x4", not an octal number/);
  });

  it('refuses a negative base-256 size', async () => {
    const t = good();
    const neg = Buffer.alloc(12, 0xff);
    neg[11] = 0xf0; // -16
    const bad = patchHeader(t, headerOf(t, 'b.txt'), 124, neg);
    expect(() => execFileSync('tar', ['-tf', '-'], { input: bad, stdio: 'pipe' })).toThrow();
    await refused(layerOf(bad), /entry "\.\/b\.txt".*size field is a negative base-256 number/);
  });

  it('accepts a positive base-256 size, as GNU tar writes for large files', async () => {
    const t = good();
    const at = headerOf(t, 'b.txt');
    const big = Buffer.alloc(12);
    big[0] = 0x80;
    big[11] = 12; // "second entry".length
    const ok = patchHeader(t, at, 124, big);
    const res = await installPackages(root, [step('ok/b256@1', [layerOf(ok)])]);
    expect(res.installed).toEqual(['ok/b256@1']);
    expect(readFileSync(path.join(root, 'b.txt'), 'utf8')).toBe('second entry');
  });
});

describe('file names that are not UTF-8', () => {
  const latin1 = Buffer.concat([
    Buffer.from('latin1-'),
    Buffer.from([0xe9, 0xe8]),
    Buffer.from('.txt'),
  ]);

  for (const format of ['gnu', 'ustar']) {
    it(`refuses latin1-\\xe9\\xe8.txt in a ${format} header, naming its bytes`, async () => {
      const t = gnuTar([[latin1, 'accent']], format);
      expect(t.includes(latin1)).toBe(true);
      await refused(layerOf(t), /entry "\.\/latin1-\\xe9\\xe8\.txt" .*name is not UTF-8/);
    });
  }

  it('refuses it as a PAX path record (GNU tar --format=posix)', async () => {
    const t = gnuTar([[latin1, 'accent']], 'posix');
    await refused(layerOf(t), /latin1-\\xe9\\xe8\.txt.*not UTF-8/);
  });

  it('refuses it as a GNU long name', async () => {
    const long = Buffer.concat([Buffer.from('d'.repeat(120)), latin1]);
    const t = gnuTar([[long, 'accent']], 'gnu');
    await refused(layerOf(t), /latin1-\\xe9\\xe8\.txt.*long name is not UTF-8/);
  });

  it('still installs UTF-8 names byte for byte', async () => {
    const t = gnuTar([[Buffer.from('caf\u00e9-\u00e8.txt'), 'ok']]);
    await installPackages(root, [step('ok/utf8@1', [layerOf(t)])]);
    expect(readFileSync(path.join(root, 'caf\u00e9-\u00e8.txt'), 'utf8')).toBe('ok');
  });
});

// zstd goes through node:zlib where the runtime has it and the zstd program otherwise (Node 20):
// these tests run whichever this runtime uses
describe('truncated compressed layers', () => {
  // incompressible content, so the cut lands inside compressed file data
  const tarBytes = (): Buffer =>
    gnuTar([
      [Buffer.from('a.bin'), createHash('sha512').update('a').digest('hex').repeat(400)],
      [Buffer.from('b.txt'), 'tail'],
    ]);
  const compress = (prog: string, t: Buffer): Buffer =>
    execFileSync(prog, ['-c', '-q'], { input: t, maxBuffer: 1 << 26 });

  for (const [prog, mediaType] of [
    ['zstd', 'application/vnd.oci.image.layer.v1.tar+zstd'],
    ['gzip', 'application/vnd.oci.image.layer.v1.tar+gzip'],
  ] as const) {
    it(`refuses a ${prog} layer cut in the middle (the whole one installs)`, async () => {
      const whole = compress(prog, tarBytes());
      await installPackages(root, [step(`ok/${prog}@1`, [layerOf(whole, mediaType)])]);
      const cut = whole.subarray(0, Math.floor(whole.length / 2));
      // the cut is real: the program itself refuses it
      expect(() => execFileSync(prog, ['-d', '-c', '-q'], { input: cut, stdio: 'pipe' })).toThrow();
      await refused(layerOf(cut, mediaType), new RegExp(`corrupt or truncated ${prog} data`));
    });
  }

  it('refuses a zstd layer cut after its last complete block (frame without its end)', async () => {
    const whole = compress('zstd', tarBytes());
    const cut = whole.subarray(0, whole.length - 4);
    expect(() => execFileSync('zstd', ['-d', '-c', '-q'], { input: cut, stdio: 'pipe' })).toThrow();
    await refused(layerOf(cut, 'application/vnd.oci.image.layer.v1.tar+zstd'), /truncated zstd/);
  });
});

describe('layer media types', () => {
  const t = (): Buffer =>
    execFileSync('gzip', ['-c', '-n'], { input: gnuTar([[Buffer.from('m.txt'), 'm']]) });

  for (const mediaType of [
    'application/vnd.oci.image.layer.v1.tar+gzip',
    'application/vnd.docker.image.rootfs.diff.tar.gzip',
  ])
    it(`accepts ${mediaType}`, async () => {
      await installPackages(root, [step('ok/m@1', [layerOf(t(), mediaType)])]);
      expect(readFileSync(path.join(root, 'm.txt'), 'utf8')).toBe('m');
    });

  for (const mediaType of [
    'application/vnd.oci.image.config.v1+json',
    'application/vnd.oci.image.layer.v1.tar+lz4',
    '',
  ])
    it(`refuses "${mediaType}" before reading the layer`, async () => {
      const layer = layerOf(t(), mediaType);
      const before = dbBytes();
      const err = await failure(installPackages(root, [step('evil/m@1', [layer])]));
      expect(err.code).toBe('E_IMAGE');
      expect(err.message).toContain(`media type "${mediaType}"`);
      expect(err.context.digest).toBe(layer.digest);
      expect(dbBytes()).toBe(before);
    });
});
