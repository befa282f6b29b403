/**
 * One writer per root: DBDIR/lock, created with O_EXCL and holding the owner's pid. A lock whose
 * pid is gone (a crashed or SIGKILLed cpm) is stale and taken over; recovery then runs from the
 * journal. Waiting prints "waiting for lock held by pid N" once; noWait fails with E_LOCKED.
 */
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CpmError } from '../errors.js';

export interface Lock {
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function acquireLock(
  dbDir: string,
  opts: { noWait?: boolean; onWait?: (pid: number) => void; timeoutMs?: number } = {},
): Promise<Lock> {
  mkdirSync(dbDir, { recursive: true });
  const file = `${dbDir}/lock`;
  const started = Date.now();
  let told = false;
  for (;;) {
    try {
      const fd = openSync(file, 'wx', 0o644);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      let released = false;
      return {
        release() {
          if (released) return;
          released = true;
          try {
            unlinkSync(file);
          } catch {
            // already gone: nothing to release
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let pid = 0;
    try {
      pid = Number.parseInt(readFileSync(file, 'utf8'), 10);
    } catch {
      continue; // released between our open and read
    }
    if (!Number.isFinite(pid) || pid <= 0 || pid === process.pid || !alive(pid)) {
      // stale: its owner died; remove and retry (a racing taker loses at O_EXCL)
      try {
        unlinkSync(file);
      } catch {
        // someone else removed it
      }
      continue;
    }
    if (opts.noWait)
      throw new CpmError('E_LOCKED', `${dbDir} is locked by pid ${pid}`, {
        context: { path: file, pid },
        hint: 'another cpm is working on this root; retry later or drop --no-wait',
      });
    if (!told) {
      told = true;
      opts.onWait?.(pid);
    }
    if (opts.timeoutMs !== undefined && Date.now() - started > opts.timeoutMs)
      throw new CpmError('E_LOCKED', `timed out waiting for lock held by pid ${pid}`, {
        context: { path: file, pid },
      });
    await sleep(100);
  }
}
