/**
 * Standard output and error written with fs.writeSync while Node's stream for them was never made.
 * Making process.stdout or process.stderr loads Node's stream modules and, for a pipe, net (about
 * 25 modules, ≈ 5 ms of CPU: a sixth of what `cpm --version` costs over `node -e 0`). A short
 * command that prints through out()/err() and touches neither stream never loads them.
 *
 * Order is kept: once a stream exists (any code read process.stdout, or a direct write failed),
 * every later write to that descriptor goes through it, behind what it may still hold. A direct
 * write that fails (EAGAIN on a non-blocking pipe shared with another process, EPIPE, anything)
 * hands what is left to the stream, which then reports or queues it as it always did.
 *
 * Until directStdio() is called (bin/cpm.js does, for the CLI), out() and err() are plain stream
 * writes: in-process callers and tests see no difference.
 */
import { writeSync } from 'node:fs';

type Name = 'stdout' | 'stderr';

/** Whether the stream of each descriptor exists (or is to be used regardless). */
const made: Record<Name, boolean> = { stdout: true, stderr: true };

/** Writes go straight to the descriptors from now on, while their streams are not made. */
export function directStdio(): void {
  for (const name of ['stdout', 'stderr'] as const) {
    if (!made[name]) continue; // already watched
    const d = Object.getOwnPropertyDescriptor(process, name);
    const get = d?.get;
    if (!d || !get || !d.configurable) continue; // not Node's lazy getter: keep the stream
    made[name] = false;
    Object.defineProperty(process, name, {
      ...d,
      get() {
        made[name] = true;
        return get.call(process) as NodeJS.WriteStream;
      },
    });
  }
}

/** The standard streams that were made (bin/cpm.js waits for these to flush before exiting). */
export function madeStreams(): NodeJS.WriteStream[] {
  return (['stdout', 'stderr'] as const).filter((n) => made[n]).map((n) => process[n]);
}

function write(name: Name, fd: number, text: string): void {
  if (made[name]) {
    process[name].write(text);
    return;
  }
  const buf = Buffer.from(text, 'utf8');
  let at = 0;
  try {
    while (at < buf.length) at += writeSync(fd, buf, at, buf.length - at);
  } catch {
    process[name].write(buf.subarray(at));
  }
}

/** Writes text to standard output. */
export function out(text: string): void {
  write('stdout', 1, text);
}

/** Writes text to standard error. */
export function err(text: string): void {
  write('stderr', 2, text);
}
