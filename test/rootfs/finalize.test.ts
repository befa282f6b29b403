/**
 * Finalizers under real bubblewrap, in a real minimal root: the host's dash and its C library
 * copied into a base package layer.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { InstalledDb, installPackages } from '../../src/rootfs/index.js';
import { silentReporter } from '../../src/util/progress.js';
import { layerFromFiles, step, tmpDir } from '../install/helpers.js';
import { fileLayer } from '../../src/rootfs/index.js';
import { createHash } from 'node:crypto';

/**
 * A layer holding /bin/sh (dash) plus the shared objects it needs, found with ldd; and the host's
 * `tools` (coreutils) as /bin/NAME.
 */
function minimalRootLayer(tools: string[] = []): ReturnType<typeof fileLayer> {
  const dir = tmpDir('cpm-minroot-');
  const src = path.join(dir, 'src');
  mkdirSync(path.join(src, 'bin'), { recursive: true });
  mkdirSync(path.join(src, 'dev'));
  mkdirSync(path.join(src, 'proc'));
  mkdirSync(path.join(src, 'tmp'));
  const host = (cmd: string): string =>
    execFileSync('sh', ['-c', `readlink -f "$(command -v ${cmd})"`], { encoding: 'utf8' }).trim();
  for (const [name, bin] of [['sh', host('sh')], ...tools.map((t) => [t, host(t)])] as const) {
    execFileSync('cp', [bin, path.join(src, 'bin', name)]);
    const libs = execFileSync('ldd', [bin], { encoding: 'utf8' })
      .split('\n')
      .map((l) => /(\/\S+)/.exec(l.includes('=>') ? l.split('=>')[1]! : l)?.[1])
      .filter((l): l is string => !!l);
    for (const lib of libs) {
      const dest = path.join(src, lib);
      mkdirSync(path.dirname(dest), { recursive: true });
      execFileSync('cp', ['-L', lib, dest]);
    }
  }
  const out = path.join(dir, 'root.tar.zst');
  execFileSync('sh', ['-c', `tar --numeric-owner -C ${src} -cf - . | zstd -q -c > ${out}`]);
  const digest = `sha256:${createHash('sha256').update(readFileSync(out)).digest('hex')}`;
  return fileLayer(out, 'application/vnd.oci.image.layer.v1.tar+zstd', digest);
}

describe('finalizers under bubblewrap', () => {
  it('run inside the root in install order, show output, report failures by package and go on', async () => {
    const root = tmpDir();
    await installPackages(root, [step('base/minroot@1', [minimalRootLayer()], { base: true })]);
    const rep = silentReporter();
    const res = await installPackages(
      root,
      [
        step('a/first@1', [layerFromFiles({ 'usr/share/a': 'a' })], {
          finalize: {
            install: ['read x < /usr/share/a; echo "first sees $x"', 'echo ran > /tmp/first'],
          },
        }),
        step('b/broken@1', [layerFromFiles({ 'usr/share/b': 'b' })], {
          finalize: { install: ['echo about to fail; exit 3', 'echo never > /tmp/never'] },
        }),
        step('c/last@1', [layerFromFiles({ 'usr/share/c': 'c' })], {
          finalize: { install: ['echo last > /tmp/last; test ! -e /tmp/never'] },
        }),
      ],
      { reporter: rep, finalizerEnv: { GREETING: 'x' } },
    );
    expect(res.installed).toEqual(['a/first@1', 'b/broken@1', 'c/last@1']);
    const out = rep.lines.filter((l) => l.includes('| '));
    expect(out).toEqual(['a/first@1| first sees a', 'b/broken@1| about to fail']);
    expect(res.finalizerErrors.map((e) => [e.code, e.context.package])).toEqual([
      ['E_FINALIZER', 'b/broken@1'],
    ]);
    expect(res.finalizerErrors[0]!.message).toContain('exit 3');
    expect(readFileSync(path.join(root, 'tmp/first'), 'utf8')).toBe('ran\n');
    expect(readFileSync(path.join(root, 'tmp/last'), 'utf8')).toBe('last\n');
    expect(existsSync(path.join(root, 'tmp/never'))).toBe(false);
    // the host was never the target
    expect(existsSync('/tmp/first')).toBe(false);
  });

  it('have no network unless asked, and are skipped with noFinalizers', async () => {
    const root = tmpDir();
    await installPackages(root, [step('base/minroot@1', [minimalRootLayer()])]);
    const res = await installPackages(root, [
      step('n/net@1', [layerFromFiles({ 'usr/share/n': 'n' })], {
        // only loopback exists in a fresh network namespace
        finalize: {
          install: [
            'while read l; do echo "$l"; done < /proc/net/dev > /tmp/ifs; echo "$CPM_FINALIZER" > /tmp/flag',
          ],
        },
      }),
      step('n/withnet@1', [layerFromFiles({ 'usr/share/w': 'w' })], {
        finalize: {
          install: ['while read l; do echo "$l"; done < /proc/net/dev > /tmp/ifs-net'],
          network: true,
        },
      }),
    ]);
    expect(res.finalizerErrors).toEqual([]);
    expect(readFileSync(path.join(root, 'tmp/flag'), 'utf8')).toBe('1\n');
    const ifaces = (f: string): string[] =>
      readFileSync(f, 'utf8')
        .split('\n')
        .slice(2)
        .map((l) => l.split(':')[0]!.trim())
        .filter(Boolean);
    expect(ifaces(path.join(root, 'tmp/ifs'))).toEqual(['lo']);
    expect(ifaces(path.join(root, 'tmp/ifs-net'))).toEqual(ifaces('/proc/net/dev'));
    await installPackages(
      root,
      [
        step('s/skip@1', [layerFromFiles({ 'usr/share/s': 's' })], {
          finalize: { install: ['echo x > /tmp/skipped'] },
        }),
      ],
      {
        noFinalizers: true,
      },
    );
    expect(existsSync(path.join(root, 'tmp/skipped'))).toBe(false);
  });

  it('what they create is recorded under their package; a DB a finalizer put in place is read, not overwritten', async () => {
    const root = tmpDir();
    await installPackages(root, [step('base/minroot@1', [minimalRootLayer()], { base: true })]);
    const dbDir = path.join(root, 'var/lib/cpm');
    const only = readFileSync(path.join(dbDir, 'installed'));
    await installPackages(root, [
      step('g/gen@1', [layerFromFiles({ 'usr/share/g': 'g' })], {
        finalize: { install: ['echo x > /usr/share/made-by-g; echo y > /made-by-g'] },
      }),
    ]);
    const gen = (id: string): string[] =>
      InstalledDb.load(dbDir)
        .get(id)!
        .files.filter((f) => f.generated)
        .map((f) => f.path);
    expect(gen('g/gen@1')).toEqual(['made-by-g', 'usr/share/made-by-g']);
    // a finalizer writes the DB of before g/gen (a cpm run inside the root would): the record of
    // what it made is added to the DB that is there, not to the one the transaction committed
    writeFileSync(path.join(root, 'old-db'), only);
    await installPackages(root, [
      step('h/swap@1', [layerFromFiles({ 'usr/share/h': 'h' })], {
        finalize: {
          install: [
            'while IFS= read -r l; do printf "%s\\n" "$l"; done < /old-db > /var/lib/cpm/installed; echo z > /made-by-h',
          ],
        },
      }),
    ]);
    expect(
      InstalledDb.load(dbDir)
        .list()
        .map((p) => p.id),
    ).toEqual(['base/minroot@1']);
  });

  it.each([
    [
      'a symlink for the DB directory',
      (out: string) => `mv /var/lib/cpm /var/lib/cpm.real; ln -s ${out} /var/lib/cpm`,
    ],
    [
      'a symlink as the DB temp file',
      (out: string) => `ln -s ${out}/victim /var/lib/cpm/installed.tmp`,
    ],
  ])('%s, put there by a finalizer, never has cpm write outside the root', async (_what, plant) => {
    const root = tmpDir();
    const outside = tmpDir('cpm-outside-');
    writeFileSync(path.join(outside, 'victim'), 'precious');
    await installPackages(root, [
      step('base/minroot@1', [minimalRootLayer(['ln', 'mv'])], { base: true }),
    ]);
    const run = installPackages(root, [
      step('g/gen@1', [layerFromFiles({ 'usr/share/g': 'g' })], {
        // made-by-g: something to record after the finalizers, in the DB
        finalize: { install: [`PATH=/bin; echo x > /made-by-g; ${plant(outside)}`] },
      }),
    ]);
    await run.then(
      () => undefined,
      (e: Error & { code?: string }) => expect(e.code, e.message).toBe('E_UNSAFE_ENTRY'),
    );
    expect(readdirSync(outside)).toEqual(['victim']);
    expect(readFileSync(path.join(outside, 'victim'), 'utf8')).toBe('precious');
  });
});
