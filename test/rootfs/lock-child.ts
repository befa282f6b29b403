/**
 * Child of the lock race test: takes the lock `rounds` times; inside, appends "enter PID" to the
 * log, stays a moment, checks nobody else entered, appends "leave PID". With `die` it SIGKILLs
 * itself while holding the lock on its last round (a stale lock for the others to take over).
 */
import { appendFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { acquireLock } from '../../src/rootfs/lock.js';

const [dbDir, log, rounds, die] = process.argv.slice(2) as [string, string, string, string];
for (let i = 0; i < Number(rounds); i++) {
  const lock = await acquireLock(dbDir);
  appendFileSync(log, `enter ${process.pid}\n`);
  await sleep(Math.random() * 4);
  if (die === '1' && i === Number(rounds) - 1) {
    appendFileSync(log, `die ${process.pid}\n`);
    process.kill(process.pid, 'SIGKILL');
  }
  appendFileSync(log, `leave ${process.pid}\n`);
  lock.release();
  await sleep(Math.random() * 2);
}
