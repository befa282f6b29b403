/**
 * One writer per root: DBDIR/lock names its holder ("PID STARTTIME\n"). docs/database.md ("The
 * lock") says why this is correct:
 *  - taking it is link(2) of a fully written private temp file onto DBDIR/lock: atomic and
 *    exclusive (EEXIST when held), and the file is never seen empty or half written;
 *  - a lock whose holder is gone (no such pid, or the pid now belongs to a process that started
 *    later) is stale. Removing it is serialized by a kernel-held mutex, an abstract unix socket
 *    named after the DB directory's device and inode: the kernel releases it when its holder dies,
 *    so it can never go stale itself. Holding it, a taker checks that DBDIR/lock is still the very
 *    file (inode) it judged stale and only then unlinks it, then competes with link(2) like
 *    everyone else. Two takers can therefore never remove each other's fresh lock.
 * Waiting prints "waiting for lock held by pid N" once; noWait fails with E_LOCKED.
 */
import {
  closeSync,
  fstatSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import type { Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { CpmError } from '../errors.js';
import { net } from '../util/lazy-builtins.js';

export interface Lock {
  release(): void;
}

export const LOCK_FILE = 'lock';

/** Start time of a process in clock ticks since boot (/proc/PID/stat field 22), or null. */
export function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // the command name (field 2) may hold spaces and parentheses: count from the last ")"
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

function alive(pid: number, start: string | undefined): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // a recycled pid: the process running now started after the lock was written
  if (start !== undefined) {
    const now = processStart(pid);
    if (now !== null && now !== start) return false;
  }
  return true;
}

interface Holder {
  pid: number;
  start?: string;
  ino: number;
}

/** The current holder, or null when the lock file is gone. */
function readHolder(file: string): Holder | null {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    const [pidText, start] = readFileSync(fd, 'latin1').trim().split(/\s+/);
    return { pid: Number.parseInt(pidText ?? '', 10), start, ino: fstatSync(fd).ino };
  } finally {
    closeSync(fd);
  }
}

/** Who holds the lock of `dbDir` (and whether that process still lives), or null when free. */
export function lockHolder(dbDir: string): { pid: number; alive: boolean } | null {
  let h: Holder | null;
  try {
    h = readHolder(`${dbDir}/${LOCK_FILE}`);
  } catch {
    return null;
  }
  if (!h) return null;
  const ok = Number.isFinite(h.pid) && h.pid > 0;
  return { pid: ok ? h.pid : 0, alive: ok && alive(h.pid, h.start) };
}

/** The kernel-held mutex for stale takeover: an abstract socket, released when its holder dies. */
function takeoverMutex(dbDir: string): Promise<Server | null> {
  const st = statSync(dbDir);
  const name = `\0cpm-lock-takeover:${st.dev}:${st.ino}`;
  return new Promise((resolve, reject) => {
    const srv = net().createServer();
    srv.once('error', (e: NodeJS.ErrnoException) =>
      e.code === 'EADDRINUSE' ? resolve(null) : reject(e),
    );
    srv.listen({ path: name }, () => {
      srv.unref();
      resolve(srv);
    });
  });
}

export async function acquireLock(
  dbDir: string,
  opts: {
    noWait?: boolean;
    onWait?: (pid: number) => void;
    /** Called when a stale lock (its holder is gone) was removed. */
    onStale?: (pid: number) => void;
    timeoutMs?: number;
  } = {},
): Promise<Lock> {
  mkdirSync(dbDir, { recursive: true });
  const file = `${dbDir}/${LOCK_FILE}`;
  const mine = `${process.pid} ${processStart(process.pid) ?? '0'}\n`;
  const started = Date.now();
  let told = false;
  for (;;) {
    // a private temp file, fully written before link(2) makes it the lock
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    const fd = openSync(tmp, 'wx', 0o644);
    try {
      writeSync(fd, mine);
    } finally {
      closeSync(fd);
    }
    let got = false;
    try {
      linkSync(tmp, file);
      got = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      unlinkSync(tmp);
    }
    if (got) return held(file);

    const h = readHolder(file);
    if (h === null) continue; // released between our link and read
    if (!Number.isFinite(h.pid) || h.pid <= 0 || !alive(h.pid, h.start)) {
      if (await removeStale(dbDir, file, h)) opts.onStale?.(h.pid);
      continue;
    }
    if (opts.noWait)
      throw new CpmError('E_LOCKED', `${dbDir} is locked by pid ${h.pid}`, {
        context: { path: file, pid: h.pid },
        hint: 'another cpm is working on this root; retry later or drop --no-wait',
      });
    if (!told) {
      told = true;
      opts.onWait?.(h.pid);
    }
    if (opts.timeoutMs !== undefined && Date.now() - started > opts.timeoutMs)
      throw new CpmError('E_LOCKED', `timed out waiting for lock held by pid ${h.pid}`, {
        context: { path: file, pid: h.pid },
      });
    await sleep(50 + Math.random() * 50);
  }
}

/** Removes the stale lock `h` if it is still the lock file; true when this call removed it. */
async function removeStale(dbDir: string, file: string, h: Holder): Promise<boolean> {
  const mutex = await takeoverMutex(dbDir);
  if (!mutex) {
    await sleep(5); // another taker is at it
    return false;
  }
  try {
    const now = readHolder(file);
    // replaced meanwhile (released and taken again): not ours to remove
    if (!now || now.ino !== h.ino || now.pid !== h.pid || now.start !== h.start) return false;
    unlinkSync(file);
    return true;
  } finally {
    await new Promise<void>((r) => mutex.close(() => r()));
  }
}

function held(file: string): Lock {
  const ino = lstatSync(file).ino;
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      try {
        // only our own file: never remove a lock another process holds
        if (lstatSync(file).ino === ino) unlinkSync(file);
      } catch {
        // already gone: nothing to release
      }
    },
  };
}
