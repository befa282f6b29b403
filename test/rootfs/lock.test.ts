/**
 * One holder per root: many processes race for DBDIR/lock, some die holding it (stale locks taken
 * over by several waiters at once), and the log of who was inside must never show two at a time.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { acquireLock } from '../../src/rootfs/lock.js';
import { tmpDir } from '../install/helpers.js';
import { bundleChild } from '../support/child.js';

const here = path.dirname(fileURLToPath(import.meta.url));
let child: string;

beforeAll(async () => {
  child = await bundleChild(path.join(here, 'lock-child.ts'), 'cpm-lock-');
});

function run(args: string[]): Promise<number | string> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [child, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    p.on('close', (code, sig) => resolve(code ?? sig ?? -1));
  });
}

/** Checks the log: every enter follows the previous holder's leave or death. */
function checkExclusive(log: string): number {
  let holder: string | null = null;
  let entries = 0;
  for (const line of log.split('\n').filter(Boolean)) {
    const [what, pid] = line.split(' ') as [string, string];
    if (what === 'enter') {
      expect(holder, `pid ${pid} entered while ${holder} held the lock:\n${log}`).toBeNull();
      holder = pid;
      entries++;
    } else {
      expect(pid).toBe(holder);
      holder = null;
    }
  }
  expect(holder).toBeNull();
  return entries;
}

describe('the root lock', () => {
  it('has one holder at a time: 10 processes × 4 trials, with holders dying and stale takeover', async () => {
    for (let trial = 0; trial < 4; trial++) {
      const dir = tmpDir('cpm-lock-race-');
      const dbDir = path.join(dir, 'db');
      const log = path.join(dir, 'log');
      writeFileSync(log, '');
      // every trial starts from a stale lock: its pid is gone
      const { mkdirSync } = await import('node:fs');
      mkdirSync(dbDir);
      writeFileSync(path.join(dbDir, 'lock'), '999999999 1\n');
      const codes = await Promise.all(
        Array.from({ length: 10 }, (_, i) => run([dbDir, log, '6', i % 3 === 0 ? '1' : '0'])),
      );
      // 4 of 10 die holding the lock; each of the others got through all rounds
      expect(codes.filter((c) => c === 'SIGKILL')).toHaveLength(4);
      expect(codes.filter((c) => c === 0)).toHaveLength(6);
      expect(checkExclusive(readFileSync(log, 'utf8'))).toBe(60);
    }
  }, 120_000);

  it('never reads a lock as empty or stale while its holder lives', async () => {
    const dbDir = path.join(tmpDir('cpm-lock-'), 'db');
    const a = await acquireLock(dbDir);
    const text = readFileSync(path.join(dbDir, 'lock'), 'utf8');
    expect(text).toMatch(new RegExp(`^${process.pid} \\d+\\n$`));
    // a pid that was recycled (same pid, another start time) does not hold it
    const { processStart } = await import('../../src/rootfs/lock.js');
    expect(processStart(process.pid)).toBe(text.split(' ')[1]!.trim());
    const err = await acquireLock(dbDir, { noWait: true }).catch((e: Error) => e);
    expect((err as Error).message).toContain(`locked by pid ${process.pid}`);
    a.release();
    writeFileSync(path.join(dbDir, 'lock'), `${process.pid} 1\n`); // our pid, another start
    const stale: number[] = [];
    const b = await acquireLock(dbDir, { noWait: true, onStale: (p) => stale.push(p) });
    expect(stale).toEqual([process.pid]);
    b.release();
  });
});
