/**
 * Fault injection for the crash-consistency test: CPM_FAULT_AT=N makes cpm SIGKILL itself right
 * before its N-th counted filesystem operation (1-based). CPM_FAULT_COUNT=FILE writes the number
 * of operations done so far to FILE at every step, so a test can learn how many there are.
 * CPM_FAULT_SIGNAL=SIGINT|SIGTERM sends that signal instead of SIGKILL (interrupt-window tests).
 */
import { writeFileSync } from 'node:fs';

let count = 0;
const at = Number(process.env.CPM_FAULT_AT ?? 0);
const countFile = process.env.CPM_FAULT_COUNT;
const signal = (process.env.CPM_FAULT_SIGNAL ?? 'SIGKILL') as NodeJS.Signals;

/** Call before each filesystem operation that matters for crash consistency. */
export function faultPoint(): void {
  count++;
  if (countFile) writeFileSync(countFile, String(count));
  if (at > 0 && count === at) process.kill(process.pid, signal);
}

export function faultCount(): number {
  return count;
}
