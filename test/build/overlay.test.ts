/**
 * Overlay build roots (src/build/overlay.ts) on real kernel overlays, as root: the mounts exist
 * only in cpm's private mount namespace, the lower layer is never written, and the delta of an
 * upper layer counts what changed — not an unchanged file that was copied up, not a deletion.
 * Skipped (saying why) when not root or when the kernel refuses overlays here.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MountNamespace, upperDelta } from '../../src/build/overlay.js';
import { tmpDir } from '../install/helpers.js';

let mns: MountNamespace | undefined;
let why = '';
let work: string;

beforeAll(async () => {
  work = tmpDir('cpm-overlay-');
  mns = await MountNamespace.open(work, (r) => (why = r));
});
afterAll(() => mns?.close());

describe('overlay build roots', () => {
  it('mounts privately, keeps the lower intact, and finds what the steps changed', async (t) => {
    if (!mns) {
      t.skip(`no overlay here: ${why}`);
      return;
    }
    const d = (n: string): string => path.join(work, n);
    for (const n of ['lower/usr/share/a', 'lower/etc', 'u1', 'w1', 'u2', 'w2', 'root', 'before'])
      mkdirSync(d(n), { recursive: true });
    writeFileSync(d('lower/usr/share/a/same.txt'), 'same\n');
    writeFileSync(d('lower/usr/share/a/edit.txt'), 'old\n');
    writeFileSync(d('lower/usr/share/a/mode.txt'), 'mode\n');
    writeFileSync(d('lower/etc/gone'), 'x\n');
    chmodSync(d('lower/usr/share/a/mode.txt'), 0o644);

    await mns.mount([d('lower')], d('u1'), d('w1'), d('root'));
    // Not on the host: the mount point there is still the empty directory.
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(d('root'));
    writeFileSync(mns.view(d('root/etc/prelude')), 'p\n');
    await mns.unmount(d('root'));
    await mns.mount([d('u1'), d('lower')], d('u2'), d('w2'), d('root'));
    await mns.mount([d('u1'), d('lower')], undefined, undefined, d('before'));

    const sh = (script: string): void => {
      execFileSync('nsenter', [`--mount=${mns!.nsFile}`, '--', 'sh', '-c', script]);
    };
    const r = d('root');
    // Copy-ups without a change (same mode, a no-op append), a real edit, a mode change, a new
    // file, a deletion.
    sh(`chmod 644 ${r}/usr/share/a/same.txt && : >> ${r}/usr/share/a/same.txt`);
    sh(`echo new > ${r}/usr/share/a/edit.txt && chmod 600 ${r}/usr/share/a/mode.txt`);
    sh(`mkdir ${r}/opt && echo n > ${r}/opt/new && rm ${r}/etc/gone`);

    const entries = await upperDelta(d('u2'), mns.view(d('before')), new Set());
    expect(entries.map((e) => e.rel)).toEqual([
      'opt',
      'opt/new',
      'usr/share/a/edit.txt',
      'usr/share/a/mode.txt',
    ]);
    // The lower layer is untouched; the prelude's file is below the steps' layer.
    expect(readFileSync(d('lower/usr/share/a/edit.txt'), 'utf8')).toBe('old\n');
    expect(readFileSync(d('lower/etc/gone'), 'utf8')).toBe('x\n');
    expect(readFileSync(d('u1/etc/prelude'), 'utf8')).toBe('p\n');
    await mns.unmount(d('before'));
    await mns.unmount(d('root'));
  });
});
