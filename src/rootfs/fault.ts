/**
 * Fault injection for the crash-consistency test: CPM_FAULT_AT=N makes cpm SIGKILL itself right
 * before its N-th counted filesystem operation (1-based). CPM_FAULT_COUNT=FILE writes the number
 * of operations done so far to FILE at every step, so a test can learn how many there are.
 * CPM_FAULT_SIGNAL=SIGINT|SIGTERM sends that signal instead of SIGKILL (interrupt-window tests).
 * CPM_FAULT_ERRNO=ENOSPC|EIO|EROFS|… makes that operation fail with that system error instead, as
 * a full or failing disk would (environment-fault tests: a clear error, the root recoverable).
 */
import { writeFileSync } from 'node:fs';

let count = 0;
const at = Number(process.env.CPM_FAULT_AT ?? 0);
const countFile = process.env.CPM_FAULT_COUNT;
const signal = (process.env.CPM_FAULT_SIGNAL ?? 'SIGKILL') as NodeJS.Signals;
const errno = process.env.CPM_FAULT_ERRNO;
const ERRNO_TEXT: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EIO: 'i/o error',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
};

/** Call before each filesystem operation that matters for crash consistency. */
export function faultPoint(): void {
  count++;
  if (countFile) writeFileSync(countFile, String(count));
  if (at > 0 && count === at) {
    if (errno)
      throw Object.assign(new Error(`${errno}: ${ERRNO_TEXT[errno] ?? 'injected fault'}, write`), {
        code: errno,
        syscall: 'write',
      });
    process.kill(process.pid, signal);
  }
}

export function faultCount(): number {
  return count;
}
