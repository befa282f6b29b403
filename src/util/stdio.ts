/**
 * Standard output and error written with fs.writeSync while Node's stream for them was never made.
 * Making process.stdout or process.stderr loads Node's stream modules and, for a pipe, net (about
 * 25 modules, ≈ 5 ms of CPU: a sixth of what `cpm --version` costs over `node -e 0`). A short
 * command that prints through out()/err() and touches neither stream never loads them.
 *
 * Order is kept: once a stream exists (any code read process.stdout, or a direct write met
 * EAGAIN on a non-blocking pipe shared with another process), every later write to that
 * descriptor goes through it, behind what it may still hold.
 *
 * Until directStdio() is called (bin/cpm.js does, for the CLI), out() and err() are plain stream
 * writes: in-process callers and tests see no difference.
 *
 * Output that cannot be written (ENOSPC, EIO: `cpm … > /dev/full`) must not end in an unhandled
 * stream error (a stack trace) nor in a silent exit 0: the first failure is kept (outputFailure),
 * later output to that descriptor is dropped, and bin/cpm.js turns it into E_IO's exit code. A
 * reader that went away (EPIPE: `cpm tree list | head`) is not a failure of cpm's.
 */
import { fstatSync, writeSync } from 'node:fs';

type Name = 'stdout' | 'stderr';

/** Whether the stream of each descriptor exists (or is to be used regardless). */
const made: Record<Name, boolean> = { stdout: true, stderr: true };
/** The first write error of each descriptor; its later output is dropped. */
const failed: Partial<Record<Name, NodeJS.ErrnoException>> = {};
/** Streams whose errors are kept in `failed` (an 'error' listener added once). */
const watched = new Set<Name>();

function keepError(name: Name, e: NodeJS.ErrnoException): void {
  failed[name] ??= e;
}

/** `s`, its errors kept instead of thrown as an unhandled 'error' event (a stack trace). */
function watch(name: Name, s: NodeJS.WriteStream): NodeJS.WriteStream {
  if (!watched.has(name)) {
    watched.add(name);
    s.on('error', (e: NodeJS.ErrnoException) => keepError(name, e));
  }
  return s;
}

function streamOf(name: Name): NodeJS.WriteStream {
  return watch(name, process[name]);
}

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
        return watch(name, get.call(process) as NodeJS.WriteStream);
      },
    });
  }
}

/** The standard streams that were made (bin/cpm.js waits for these to flush before exiting). */
export function madeStreams(): NodeJS.WriteStream[] {
  return (['stdout', 'stderr'] as const).filter((n) => made[n]).map((n) => process[n]);
}

/**
 * The first output error that is cpm's to report: standard output that could not be written for
 * another reason than its reader going away (EPIPE).
 */
export function outputFailure(): NodeJS.ErrnoException | undefined {
  const e = failed.stdout;
  return e && e.code !== 'EPIPE' ? e : undefined;
}

function write(name: Name, fd: number, text: string): void {
  if (failed[name]) return;
  if (made[name]) {
    streamOf(name).write(text);
    return;
  }
  const buf = Buffer.from(text, 'utf8');
  let at = 0;
  try {
    while (at < buf.length) at += writeSync(fd, buf, at, buf.length - at);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN' || code === 'EWOULDBLOCK') streamOf(name).write(buf.subarray(at));
    else keepError(name, e as NodeJS.ErrnoException);
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

/**
 * Whether descriptor `fd` may be a terminal: a terminal is a character device, and fstat says so
 * without loading node:tty (which loads net). True when it cannot be asked: then Node's stream
 * decides, as it would have.
 */
export function mayBeTerminal(fd: 1 | 2): boolean {
  try {
    return fstatSync(fd).isCharacterDevice();
  } catch {
    return true;
  }
}

/**
 * Standard error for progress output: process.stderr where it may be a terminal (the reporter
 * asks isTTY and columns), else an object that writes through err(), so a command whose output
 * goes to a pipe or a file does not make the stream to learn that it is not a terminal.
 */
export function stderrStream(): { write(s: string): boolean; isTTY?: boolean } {
  if (made.stderr || mayBeTerminal(2)) return process.stderr;
  return {
    write: (s: string) => {
      err(s);
      return true;
    },
    isTTY: false,
  };
}

/**
 * commander's output (help, usage errors) through out() and err(). Its defaults ask the streams
 * for isTTY, columns and colours, which makes them; on a descriptor that is no terminal the answers
 * are known: commander's width for no terminal (80) and no colours.
 */
export const commanderOutput = {
  writeOut: (s: string): void => out(s),
  writeErr: (s: string): void => err(s),
  getOutHelpWidth: (): number =>
    mayBeTerminal(1) && process.stdout.isTTY ? process.stdout.columns : 80,
  getErrHelpWidth: (): number =>
    mayBeTerminal(2) && process.stderr.isTTY ? process.stderr.columns : 80,
  getOutHasColors: (): boolean => hasColors(1),
  getErrHasColors: (): boolean => hasColors(2),
};

/** commander's rule: NO_COLOR and FORCE_COLOR first, else a terminal that has colours. */
function hasColors(fd: 1 | 2): boolean {
  const env = process.env;
  if (env.NO_COLOR || env.FORCE_COLOR === '0' || env.FORCE_COLOR === 'false') return false;
  if (env.FORCE_COLOR || env.CLICOLOR_FORCE !== undefined) return true;
  if (!mayBeTerminal(fd)) return false;
  const s = fd === 1 ? process.stdout : process.stderr;
  return !!s.isTTY && !!s.hasColors?.();
}
