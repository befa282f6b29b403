/**
 * The one interrupt controller of the process (SIGINT, SIGTERM). Long work calls
 * `watchInterrupts()` and from then on a signal no longer kills the process: it is recorded, the
 * shared AbortSignal fires (fetch, child tools, streams stop), and the code that watches checks
 * `throwIfInterrupted()` at safe points, cleans up (rolls back, removes partials) and throws
 * E_INTERRUPTED, which the CLI turns into exit 130 (SIGINT) or 143 (SIGTERM).
 *
 * A second signal while nothing is critical exits at once (the user insists; everything cpm writes
 * is crash-safe, `cpm recover` finishes the job). Inside `critical()` — the commit window of a
 * transaction — even a repeated signal only waits: that window finishes or rolls back first.
 * While nobody watches, Node's default applies and a signal ends the process immediately.
 */
import { CpmError } from '../errors.js';

export type InterruptSignal = 'SIGINT' | 'SIGTERM';

/** The shell convention: 128 + signal number. */
export function interruptExitCode(sig: InterruptSignal | undefined): number {
  return sig === 'SIGTERM' ? 143 : 130;
}

let watchers = 0;
let criticalDepth = 0;
let received: InterruptSignal | null = null;
let controller = new AbortController();

function onSignal(sig: NodeJS.Signals): void {
  const s = sig === 'SIGTERM' ? 'SIGTERM' : 'SIGINT';
  if (received !== null && criticalDepth === 0) {
    process.stderr.write(`cpm: interrupted again (${s}); exiting now, run cpm recover if needed\n`);
    process.exit(interruptExitCode(s));
  }
  if (received === null) {
    received = s;
    controller.abort(interruptedError(s));
  }
}

/**
 * Starts catching SIGINT and SIGTERM (reference-counted). Returns the release function; the last
 * release restores Node's default and forgets a received signal (the error carrying it is thrown).
 */
export function watchInterrupts(): () => void {
  if (watchers++ === 0) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--watchers === 0) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      received = null;
      controller = new AbortController();
    }
  };
}

/** The signal received while watched, or null. */
export function interruptReceived(): InterruptSignal | null {
  return received;
}

/** Aborted on the first interrupt: pass it to fetch, child processes and streams. */
export function interruptSignal(): AbortSignal {
  return controller.signal;
}

/** E_INTERRUPTED for `sig`; `state` says what was left behind ("the root is unchanged"). */
export function interruptedError(sig: InterruptSignal, state = 'nothing was changed'): CpmError {
  return new CpmError('E_INTERRUPTED', `interrupted by ${sig}; ${state}`, {
    context: { signal: sig },
  });
}

/** Throws E_INTERRUPTED when a signal arrived since watching started. */
export function throwIfInterrupted(state?: string): void {
  if (received !== null) throw interruptedError(received, state);
}

/**
 * Runs `fn` as a critical section: a signal (even a repeated one) is only recorded until it ends.
 * Pair with throwIfInterrupted() right after, once the state is consistent again.
 */
export async function critical<T>(fn: () => T | Promise<T>): Promise<T> {
  criticalDepth++;
  try {
    return await fn();
  } finally {
    criticalDepth--;
  }
}

/** Synchronous form of critical(). */
export function criticalSync<T>(fn: () => T): T {
  criticalDepth++;
  try {
    return fn();
  } finally {
    criticalDepth--;
  }
}

/**
 * Runs `fn` with interrupts watched (work that is not a transaction: a pull, a pack): a signal
 * aborts what `fn` is waiting on, and whatever `fn` then fails with becomes E_INTERRUPTED saying
 * `state`, so the user reads "interrupted by SIGINT" and the exit code is 130 or 143.
 */
export async function interruptible<T>(
  fn: () => Promise<T>,
  state = 'nothing was changed',
): Promise<T> {
  const unwatch = watchInterrupts();
  try {
    // work that finished despite a signal is done: it is reported as done
    return await fn();
  } catch (e) {
    const sig = interruptReceived();
    if (sig && !(e instanceof CpmError && e.code === 'E_INTERRUPTED'))
      throw interruptedError(sig, state);
    throw e;
  } finally {
    unwatch();
  }
}
