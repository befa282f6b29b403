/**
 * The ustar/pax encoder (src/image/tar-encode.ts) against GNU tar: long names (prefix split and
 * pax path), non-ASCII names and link targets, long link targets, hardlinks, mode 0 and large ids
 * all come back as written when GNU tar lists and extracts the stream.
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeRootfsTar } from '../../src/image/rootfs-tar.js';
import { tempDir } from '../support/layers.js';

describe('tar encoder', () => {
  it('round-trips awkward entries through GNU tar', async () => {
    const dir = await tempDir();
    const root = path.join(dir, 'root');
    const deep = `${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(60)}`;
    const longName = 'n'.repeat(200);
    const target = `../${'t'.repeat(150)}`;
    await fsp.mkdir(path.join(root, deep), { recursive: true });
    await fsp.writeFile(path.join(root, deep, 'file'), 'deep');
    await fsp.writeFile(path.join(root, longName), 'long');
    await fsp.writeFile(path.join(root, 'zürich.txt'), 'ü');
    await fsp.symlink(target, path.join(root, 'longlink'));
    await fsp.symlink('café', path.join(root, 'utf8link'));
    await fsp.writeFile(path.join(root, 'secret'), 'x'.repeat(513));
    await fsp.chmod(path.join(root, 'secret'), 0);
    await fsp.link(path.join(root, 'secret'), path.join(root, 'secret2'));
    await fsp.writeFile(path.join(root, 'big-id'), '');
    await fsp.chown(path.join(root, 'big-id'), 3_000_000, 70_000);
    const tar = path.join(dir, 'out.tar');
    await writeRootfsTar(root, tar, { xattrs: false, sourceDateEpoch: 1_700_000_000 });

    const listing = execFileSync('tar', ['--numeric-owner', '-tvf', tar], { encoding: 'utf8' });
    expect(listing).toContain(`${deep}/file`);
    expect(listing).toContain(longName);
    expect(listing).toContain(`longlink -> ${target}`);
    expect(listing).toContain('utf8link -> café');
    expect(listing).toMatch(/^---------- 0\/0 +513 .* secret$/m);
    expect(listing).toMatch(/^h---------.* secret2 link to secret$/m);
    expect(listing).toMatch(/ 3000000\/70000 .* big-id$/m);

    const out = path.join(dir, 'x');
    await fsp.mkdir(out);
    execFileSync('tar', ['-xpf', tar, '--numeric-owner', '-C', out]);
    expect(await fsp.readFile(path.join(out, deep, 'file'), 'utf8')).toBe('deep');
    expect(await fsp.readFile(path.join(out, longName), 'utf8')).toBe('long');
    expect(await fsp.readFile(path.join(out, 'zürich.txt'), 'utf8')).toBe('ü');
    expect(await fsp.readlink(path.join(out, 'longlink'))).toBe(target);
    const st = await fsp.stat(path.join(out, 'secret'));
    expect(st.mode & 0o7777).toBe(0);
    expect(st.nlink).toBe(2);
    expect((await fsp.stat(path.join(out, 'secret'))).mtimeMs).toBe(1_700_000_000_000);
    const big = await fsp.lstat(path.join(out, 'big-id'));
    expect([big.uid, big.gid]).toEqual([3_000_000, 70_000]);
  });
});
