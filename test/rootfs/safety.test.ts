/**
 * Containment: each hostile shape from containerd's TestBreakouts, the umoci/moby and
 * node-tar/tar-fs CVEs, and GNU tar CVE-2025-45582 (symlink in one archive, write through it in
 * the next). Every refusal must leave root and DB exactly as they were.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { CpmError } from '../../src/errors.js';
import { installPackages, type LayerSource } from '../../src/rootfs/index.js';
import { failure, rawLayer, step, tmpDir, type RawEntry } from '../install/helpers.js';

let root: string;
let outside: string;

/** Everything under the root and the outside dir with type, mode and content hash. */
function snapshot(): string {
  return execFileSync(
    'sh',
    [
      '-c',
      `cd / && find ${root} ${outside} -printf '%p %y %m %s %l\\n' | sort; find ${root} ${outside} -type f -exec sha256sum {} + | sort`,
    ],
    { encoding: 'utf8' },
  );
}

beforeEach(async () => {
  const base = tmpDir('cpm-safety-');
  root = path.join(base, 'root');
  outside = path.join(base, 'outside');
  mkdirSync(outside);
  // a root with an installed package, so "unchanged" covers the DB too
  await installPackages(root, [
    step('base/base@1', [await rawLayer([{ name: 'etc/os-release', content: 'ID=test\n' }])]),
  ]);
});

async function expectRefused(
  layers: LayerSource[],
  match: RegExp,
  extraSteps = 0,
): Promise<CpmError> {
  const before = snapshot();
  const steps = [step('evil/pkg@1', layers)];
  for (let i = 0; i < extraSteps; i++)
    steps.unshift(step(`ok/p${i}@1`, [await rawLayer([{ name: `ok${i}`, content: 'x' }])]));
  const err = await installPackages(root, steps, {
    limits: { maxEntries: 1000, maxBytes: 1 << 20 },
  }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CpmError);
  const ce = err as CpmError;
  expect(ce.code).toBe('E_UNSAFE_ENTRY');
  expect(ce.message).toMatch(match);
  expect(ce.context.digest).toMatch(/^sha256:/);
  expect(snapshot()).toBe(before);
  expect(readdirNames(outside)).toEqual([]);
  return ce;
}

function readdirNames(d: string): string[] {
  return execFileSync('ls', ['-A', d], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

const L = (entries: RawEntry[]): Promise<LayerSource> => rawLayer(entries);

describe('entries that name a path outside the root', () => {
  it('refuses absolute names', async () => {
    await expectRefused([await L([{ name: `${outside}/x`, content: 'x' }])], /absolute path/);
  });
  it('refuses ".." names', async () => {
    await expectRefused([await L([{ name: '../../x', content: 'x' }])], /"\.\." component/);
  });
  it('refuses ".." in the middle of a name', async () => {
    await expectRefused([await L([{ name: 'a/../../x', content: 'x' }])], /"\.\." component/);
  });
  it('refuses a non-directory root entry ("." as a symlink, umoci CVE-2021-29136 shape)', async () => {
    await expectRefused([await L([{ name: './', type: 'symlink', linkname: outside }])], /root/);
  });
});

describe('writing through symlinks', () => {
  it('refuses a write through a relative symlink that climbs out (same layer)', async () => {
    const e = await expectRefused(
      [
        await L([
          { name: 'esc', type: 'symlink', linkname: '../../../../../../../..' + outside },
          { name: 'esc/pwned', content: 'x' },
        ]),
      ],
      /above the root/,
    );
    expect(e.context.path).toBe('esc/pwned');
  });
  it('refuses a write through a symlink to ".." (containerd "parent symlink")', async () => {
    await expectRefused(
      [
        await L([
          { name: 'up', type: 'symlink', linkname: '..' },
          { name: 'up/x', content: 'x' },
        ]),
      ],
      /above the root/,
    );
  });
  it('refuses a write through a symlink from an earlier layer of the same package', async () => {
    await expectRefused(
      [
        await L([{ name: 'lnk', type: 'symlink', linkname: '../../../../../../../../' + outside }]),
        await L([{ name: 'lnk/pwned', content: 'x' }]),
      ],
      /above the root/,
    );
  });
  it('refuses a write through a symlink that replaced a directory (node-tar CVE-2021-32803 shape)', async () => {
    await expectRefused(
      [
        await L([
          { name: 'd/', type: 'directory' },
          { name: 'd', type: 'symlink', linkname: '../../../../../../..' + outside },
          { name: 'd/x', content: 'x' },
        ]),
      ],
      /above the root/,
    );
  });
  it('refuses symlink loops', async () => {
    await expectRefused(
      [
        await L([
          { name: 'a', type: 'symlink', linkname: 'b' },
          { name: 'b', type: 'symlink', linkname: 'a' },
          { name: 'a/x', content: 'x' },
        ]),
      ],
      /too many levels/,
    );
  });
  it('refuses an entry below a regular file', async () => {
    await expectRefused(
      [
        await L([
          { name: 'f', content: 'x' },
          { name: 'f/x', content: 'y' },
        ]),
      ],
      /not a directory/,
    );
  });
  it('follows absolute symlinks inside the root only (chroot semantics)', async () => {
    await installPackages(root, [
      step('ok/abs@1', [
        await L([
          { name: 'abs', type: 'symlink', linkname: outside },
          { name: 'abs/inside', content: 'in' },
          { name: 'up', type: 'symlink', linkname: '/../../..' + outside },
          { name: 'up/two', content: '2' },
        ]),
      ]),
    ]);
    expect(readdirNames(outside)).toEqual([]);
    expect(readFileSync(path.join(root, outside, 'inside'), 'utf8')).toBe('in');
    expect(readFileSync(path.join(root, outside, 'two'), 'utf8')).toBe('2');
    expect(readlinkSync(path.join(root, 'abs'))).toBe(outside); // the link itself stays as shipped
  });
});

describe('GNU tar CVE-2025-45582: symlink in one archive, write through it in the next', () => {
  it('refuses the second package in a later transaction', async () => {
    // a symlink pointing outside is harmless as long as nothing writes through it
    await installPackages(root, [
      step('a/link@1', [
        await L([{ name: 'conf', type: 'symlink', linkname: '../../../../../../../..' + outside }]),
      ]),
    ]);
    expect(lstatSync(path.join(root, 'conf')).isSymbolicLink()).toBe(true);
    await expectRefused([await L([{ name: 'conf/pwned', content: 'x' }])], /above the root/);
  });
  it('refuses a later package in the same transaction', async () => {
    const link = step('a/link@1', [
      await L([{ name: 'conf', type: 'symlink', linkname: '../../../../../../../..' + outside }]),
    ]);
    const before = snapshot();
    const write = step('b/write@1', [await L([{ name: 'conf/pwned', content: 'x' }])]);
    const err = await failure(installPackages(root, [link, write]));
    expect(err.code).toBe('E_UNSAFE_ENTRY');
    expect(err.message).toContain('b/write@1');
    expect(snapshot()).toBe(before);
  });
});

describe('hardlinks', () => {
  it('refuses an absolute hardlink target', async () => {
    await expectRefused(
      [await L([{ name: 'h', type: 'link', linkname: '/etc/os-release' }])],
      /hardlink target: absolute/,
    );
  });
  it('refuses a ".." hardlink target', async () => {
    await expectRefused(
      [await L([{ name: 'h', type: 'link', linkname: '../../etc/passwd' }])],
      /hardlink target/,
    );
  });
  it('refuses a hardlink to a file of another package', async () => {
    await expectRefused(
      [await L([{ name: 'h', type: 'link', linkname: 'etc/os-release' }])],
      /not a regular file of this package/,
    );
  });
  it('refuses a hardlink to a symlink pointing outside (tar-fs shape)', async () => {
    await expectRefused(
      [
        await L([
          { name: 's', type: 'symlink', linkname: outside + '/secret' },
          { name: 'h', type: 'link', linkname: 's' },
        ]),
      ],
      /not a regular file of this package/,
    );
  });
  it('refuses a hardlink whose target path climbs through a symlink', async () => {
    await expectRefused(
      [
        await L([
          { name: 's', type: 'symlink', linkname: '../../../../../..' },
          { name: 'h', type: 'link', linkname: 's/etc/passwd' },
        ]),
      ],
      /above the root/,
    );
  });
});

describe('whiteouts', () => {
  it('refuses a whiteout of ".."', async () => {
    await expectRefused([await L([{ name: 'a/.wh...', content: '' }])], /whiteout/);
  });
  it('refuses a whiteout under a symlink that climbs out', async () => {
    await expectRefused(
      [
        await L([
          { name: 'l', type: 'symlink', linkname: '../../../../../..' },
          { name: 'l/.wh.x', content: '' },
        ]),
      ],
      /above the root/,
    );
  });
  it('never removes files outside the package', async () => {
    await installPackages(root, [
      step('ok/wh@1', [
        await L([
          { name: 'etc/.wh.os-release', content: '' },
          { name: 'etc/.wh..wh..opq', content: '' },
        ]),
      ]),
    ]);
    expect(existsSync(path.join(root, 'etc/os-release'))).toBe(true);
  });
});

describe('bounds', () => {
  it('refuses more entries than the limit', async () => {
    const entries = Array.from({ length: 1001 }, (_, i) => ({ name: `f${i}`, content: '' }));
    await expectRefused([await L(entries)], /more than 1000 entries/);
  });
  it('refuses a decompression bomb (more bytes than the limit)', async () => {
    const dir = tmpDir();
    const big = path.join(dir, 'bomb.tar.zst');
    execFileSync('sh', [
      '-c',
      `mkdir ${dir}/s && head -c 4194304 /dev/zero > ${dir}/s/zero && tar -C ${dir}/s -cf - zero | zstd -19 -q -c > ${big}`,
    ]);
    const { fileLayer } = await import('../../src/rootfs/index.js');
    const digest = 'sha256:' + execFileSync('sha256sum', [big], { encoding: 'utf8' }).split(' ')[0];
    expect(readFileSync(big).length).toBeLessThan(4096);
    await expectRefused(
      [fileLayer(big, 'application/vnd.oci.image.layer.v1.tar+zstd', digest)],
      /exceeds the (remaining byte )?limit/,
    );
  });
  it('refuses a header whose size runs past the end of the stream', async () => {
    const layer = await rawLayer(
      [
        { name: 'ok', content: 'fine' },
        { name: 'liar', content: 'x'.repeat(5000) },
      ],
      { truncate: 512 * 5 },
    );
    await expectRefused([layer], /truncated tar stream: it ends inside this entry's data/);
  });
  it('refuses a layer whose bytes do not match its digest', async () => {
    const good = await L([{ name: 'x', content: 'x' }]);
    const before = snapshot();
    const err = await failure(
      installPackages(root, [
        step('evil/digest@1', [{ ...good, digest: 'sha256:' + '0'.repeat(64) }]),
      ]),
    );
    expect(err.code).toBe('E_DIGEST');
    expect(snapshot()).toBe(before);
  });
});
