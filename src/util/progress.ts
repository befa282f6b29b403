/**
 * Progress reporting: on a terminal, a bar per running task (a layer download, a layer extraction)
 * and one total bar per phase, with sizes, percentage, rate and ETA (apt, dnf, skopeo); without a
 * terminal, plain lines (a line per task start and finish, a phase line at most every few
 * seconds, no carriage returns); with --json, one JSON object per line. All of it goes to stderr:
 * stdout keeps the command's result. Library code only talks to the Reporter interface.
 *
 * Sizes are what a phase really moves: for layers the compressed blob bytes (the bytes that cross
 * the network, and the bytes the extractor reads and decompresses), never an estimate of the
 * unpacked size. Rates and ETAs come from the clock: bytes counted over the last seconds.
 */
import type { Writable } from 'node:stream';
import { stderrStream } from './stdio.js';

/** A byte-counted piece of work inside a phase (one layer, one file set). */
export interface ProgressTask {
  /** `n` more bytes done just now (they count towards the rate). */
  add(n: number): void;
  /**
   * The task continues from `done` bytes that were not moved now (a resumed partial download, a
   * restart from 0): shown, but not counted in the rate.
   */
  rebase(done: number): void;
  /** Finished: its bytes join the phase's done total. */
  finish(): void;
  /** Abandoned, to be done again (a damaged cached blob fetched anew): counted nowhere. */
  cancel(): void;
  /** A line about the task while it runs ("waiting for … being downloaded by pid 12"). */
  note(message: string): void;
}

/** What a transfer (a blob download) reports to. */
export type TransferProgress = Pick<ProgressTask, 'add' | 'rebase'> &
  Partial<Pick<ProgressTask, 'note'>>;

export interface PhaseOptions {
  /** Byte total of the phase, when known. */
  total?: number;
  /** Number of tasks the phase will run, when known. */
  items?: number;
  /** What a task is ("layer"), for the summary. */
  noun?: string;
}

export interface TaskOptions {
  /** Byte total of the task, when known. */
  total?: number;
  /** Digest of the blob the task moves (shown shortened, given whole in JSON). */
  digest?: string;
}

export interface Reporter {
  /** A step starts ("waiting for lock held by pid 12"). */
  step(message: string): void;
  /** A bare counter for work without tasks; total when known. */
  progress(label: string, done: number, total?: number): void;
  /** Announces a phase ("download", "extract") with what is known of its size. */
  phase(name: string, opts?: PhaseOptions): void;
  /** Starts a task of `phase` (which is announced on first use when it was not). */
  task(phase: string, label: string, opts?: TaskOptions): ProgressTask;
  warn(message: string): void;
  /** Verbose detail. */
  detail(message: string): void;
  /** Output of a finalizer, line by line. */
  output(pkg: string, line: string): void;
  /**
   * Settles the display and prints the summary of the phases since the last end(): elapsed time
   * and bytes. With the failure that stops the work, running tasks are shown where they stopped
   * and the summary says "interrupted" (E_INTERRUPTED) or "failed". Reusable afterwards.
   */
  end(failure?: unknown): void;
}

export type ReporterMode = 'tty' | 'plain' | 'json' | 'silent';

export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ReporterOptions {
  mode?: ReporterMode;
  quiet?: boolean;
  verbose?: boolean;
  stream?: (Writable & { isTTY?: boolean; columns?: number }) | ProgressStream;
  /** Milliseconds, monotonic (tests pass a fake). */
  clock?: () => number;
  /**
   * Terminal only: redraw this often (ms) so a stalled transfer shows its rate falling; 0 = only
   * on updates (tests).
   */
  tickMs?: number;
}

/** Plain mode: a phase line at most this often (ms). */
export const PLAIN_INTERVAL_MS = 5000;
/** The rate is the bytes of this last window (ms). */
const RATE_WINDOW_MS = 5000;
/** Rate samples are at least this far apart (ms). */
const SAMPLE_MS = 100;
/** Terminal redraws at most this often (ms), but always on a task start or finish. */
const TTY_INTERVAL_MS = 100;
/** JSON progress events at most this often (ms). */
const JSON_INTERVAL_MS = 250;

export function human(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** "0:07", "12:34", "1:02:03". */
export function clockTime(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** "0.4s", "12.3s", "2:05". */
export function elapsed(ms: number): string {
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)}s` : clockTime(ms / 1000);
}

const PAST: Record<string, string> = {
  download: 'downloaded',
  extract: 'extracted',
  pack: 'packed',
  pull: 'pulled',
  push: 'pushed',
  upload: 'uploaded',
  copy: 'copied',
};

function past(verb: string): string {
  return PAST[verb] ?? `${verb}ed`;
}

export function plural(n: number, noun: string): string {
  if (n === 1) return `1 ${noun}`;
  return `${n} ${noun.endsWith('y') ? `${noun.slice(0, -1)}ie` : noun}s`;
}

/** Bytes over time, from the samples of the last RATE_WINDOW_MS. */
class Meter {
  private samples: Array<[number, number]> = [];
  /** Bytes counted (moved now, not rebased). */
  moved = 0;
  constructor(private readonly clock: () => number) {}
  count(n: number): void {
    this.moved += n;
    const now = this.clock();
    // one sample per SAMPLE_MS: a fast transfer counts thousands of chunks a second
    const last = this.samples[this.samples.length - 1];
    if (last && now - last[0] < SAMPLE_MS) return;
    this.samples.push([now, this.moved]);
    while (this.samples.length > 2 && now - this.samples[1]![0] > RATE_WINDOW_MS)
      this.samples.shift();
  }
  /** Bytes per second over the window; undefined before there is a time span to measure. */
  rate(started: number): number | undefined {
    const now = this.clock();
    // before the window fills, the rate is measured from the start of the work
    const first = this.samples[0];
    const [t0, b0] =
      first && now - first[0] <= RATE_WINDOW_MS ? [started, 0] : (first ?? [started, 0]);
    const span = now - t0;
    if (span < 200) return undefined;
    return ((this.moved - b0) * 1000) / span;
  }
}

interface Task {
  phase: Phase;
  label: string;
  digest?: string;
  total?: number;
  done: number;
  started: number;
  meter: Meter;
  finished: boolean;
  seq: number;
}

interface Phase {
  name: string;
  total?: number;
  items?: number;
  noun: string;
  /** Bytes of finished tasks. */
  finishedBytes: number;
  finishedItems: number;
  started: number;
  lastActive: number;
  meter: Meter;
  active: Set<Task>;
  lastPlain: number;
}

function phaseDone(p: Phase): number {
  let n = p.finishedBytes;
  for (const t of p.active) n += t.done;
  return n;
}

/** Where a task or phase stands: "45.0 MiB/180.0 MiB 25% 12.3 MiB/s ETA 0:11". */
function figures(done: number, total: number | undefined, rate: number | undefined): string {
  const parts: string[] = [];
  if (total !== undefined && total > 0) {
    parts.push(`${human(done)}/${human(total)}`);
    parts.push(`${Math.floor(Math.min(1, done / total) * 100)}%`);
  } else parts.push(human(done));
  if (rate !== undefined) {
    parts.push(`${human(Math.round(rate))}/s`);
    if (total !== undefined && total > done && rate > 0)
      parts.push(`ETA ${clockTime((total - done) / rate)}`);
  }
  return parts.join('  ');
}

/** " (12.3 MiB/s)": the average rate of `moved` bytes over `ms`, or "" for too short a span. */
function averageRate(moved: number, ms: number): string {
  return ms >= 200 && moved > 0 ? ` (${human(Math.round((moved * 1000) / ms))}/s)` : '';
}

function bar(frac: number, width: number): string {
  const fill = Math.round(Math.min(1, Math.max(0, frac)) * width);
  return `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}]`;
}

function taskName(t: Pick<Task, 'label' | 'digest'>): string {
  const short = t.digest ? t.digest.replace(/^[a-z0-9]+:/, '').slice(0, 12) : '';
  return short ? `${t.label} ${short}` : t.label;
}

function interruptSignalOf(failure: unknown): string | undefined {
  if (!failure || typeof failure !== 'object') return undefined;
  const e = failure as { code?: unknown; context?: { signal?: unknown } };
  if (e.code !== 'E_INTERRUPTED') return undefined;
  return typeof e.context?.signal === 'string' ? e.context.signal : 'a signal';
}

/** The model shared by the three renderers: phases, tasks, timings. */
class Progress {
  phases = new Map<string, Phase>();
  started: number;
  private seq = 0;
  constructor(readonly clock: () => number) {
    this.started = clock();
  }
  phase(name: string, opts: PhaseOptions = {}): Phase {
    let p = this.phases.get(name);
    const now = this.clock();
    if (!p) {
      p = {
        name,
        noun: opts.noun ?? 'item',
        finishedBytes: 0,
        finishedItems: 0,
        started: now,
        lastActive: now,
        meter: new Meter(this.clock),
        active: new Set(),
        lastPlain: now,
      };
      this.phases.set(name, p);
    }
    if (opts.total !== undefined) p.total = (p.total ?? 0) + opts.total;
    if (opts.items !== undefined) p.items = (p.items ?? 0) + opts.items;
    if (opts.noun) p.noun = opts.noun;
    return p;
  }
  task(phase: string, label: string, opts: TaskOptions): Task {
    const p = this.phases.get(phase) ?? this.phase(phase);
    const t: Task = {
      phase: p,
      label,
      ...(opts.digest ? { digest: opts.digest } : {}),
      ...(opts.total !== undefined ? { total: opts.total } : {}),
      done: 0,
      started: this.clock(),
      meter: new Meter(this.clock),
      finished: false,
      seq: this.seq++,
    };
    if (p.active.size === 0 && p.finishedItems === 0) p.started = t.started;
    p.active.add(t);
    return t;
  }
  add(t: Task, n: number): void {
    if (t.finished || n <= 0) return;
    t.done += n;
    t.meter.count(n);
    t.phase.meter.count(n);
    t.phase.lastActive = this.clock();
  }
  finish(t: Task): void {
    if (t.finished) return;
    t.finished = true;
    t.phase.active.delete(t);
    t.phase.finishedBytes += t.done;
    t.phase.finishedItems++;
    t.phase.lastActive = this.clock();
  }
  /** Tasks still running, oldest first. */
  running(): Task[] {
    return [...this.phases.values()].flatMap((p) => [...p.active]).sort((a, b) => a.seq - b.seq);
  }
  phaseRate(p: Phase): number | undefined {
    return p.meter.rate(p.started);
  }
  /** The summary of the phases: "downloaded 3 layers, 180.0 MiB in 14.6s (12.3 MiB/s)". */
  summary(failure: unknown): string | null {
    const counted = [...this.phases.values()].filter(
      (p) => p.finishedItems > 0 || p.active.size > 0 || phaseDone(p) > 0,
    );
    if (counted.length === 0) return null;
    const now = this.clock();
    const parts = counted.map((p) => {
      const done = phaseDone(p);
      const ms = (p.active.size > 0 ? now : p.lastActive) - p.started;
      const items = p.items !== undefined ? p.items : p.finishedItems + p.active.size;
      const what =
        failure && p.total !== undefined && done < p.total
          ? `${human(done)} of ${human(p.total)}`
          : human(done);
      const count =
        failure && p.items !== undefined && p.finishedItems < p.items
          ? `${p.finishedItems} of ${plural(items, p.noun)}`
          : plural(items, p.noun);
      return `${past(p.name)} ${count}, ${what} in ${elapsed(ms)}${averageRate(p.meter.moved, ms)}`;
    });
    const total = elapsed(now - this.started);
    const sig = interruptSignalOf(failure);
    if (sig) return `interrupted by ${sig} after ${total}: ${parts.join('; ')}`;
    if (failure) return `failed after ${total}: ${parts.join('; ')}`;
    return `${parts.join('; ')}; ${total} in all`;
  }
  reset(): void {
    this.phases.clear();
    this.started = this.clock();
  }
}

// process.hrtime, not performance.now(): the `performance` global loads perf_hooks' eleven
// internal modules on Node 24 (≈ 1.5 ms of every command that reports progress).
const defaultClock = (): number => Number(process.hrtime.bigint()) / 1e6;

export function createReporter(opts: ReporterOptions = {}): Reporter {
  const out: ProgressStream = opts.stream ?? stderrStream();
  const mode: ReporterMode = opts.mode ?? (out.isTTY ? 'tty' : 'plain');
  if (mode === 'silent') return silentReporter();
  const clock = opts.clock ?? defaultClock;
  if (mode === 'json') return jsonReporter(out, opts, clock);
  return textReporter(out, mode === 'tty', opts, clock);
}

/** Progress on stderr as a command's --json, --quiet and --verbose flags ask for it. */
export function reporterForFlags(f: {
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}): Reporter {
  return createReporter({
    ...(f.json ? { mode: 'json' as const } : {}),
    quiet: f.quiet,
    verbose: f.verbose,
  });
}

function handle(
  model: Progress,
  t: Task,
  note: (t: Task, message: string) => void,
  changed: (t: Task, kind: 'add' | 'finish' | 'cancel') => void,
): ProgressTask {
  return {
    note: (message) => note(t, message),
    add: (n) => {
      model.add(t, n);
      changed(t, 'add');
    },
    rebase: (done) => {
      if (t.finished) return;
      t.done = Math.max(0, done);
      changed(t, 'add');
    },
    finish: () => {
      if (t.finished) return;
      model.finish(t);
      changed(t, 'finish');
    },
    cancel: () => {
      if (t.finished) return;
      t.finished = true;
      t.phase.active.delete(t);
      changed(t, 'cancel');
    },
  };
}

function jsonReporter(out: ProgressStream, opts: ReporterOptions, clock: () => number): Reporter {
  const emit = (o: Record<string, unknown>): void => {
    out.write(JSON.stringify(o) + '\n');
  };
  const model = new Progress(clock);
  let last = -Infinity;
  const seconds = (ms: number): number => Math.round(ms) / 1000;
  const round = (r: number | undefined): number | undefined =>
    r === undefined ? undefined : Math.round(r);
  return {
    step: (message) => emit({ event: 'step', message }),
    progress: (label, done, total) => {
      const now = clock();
      if (now - last < JSON_INTERVAL_MS && done !== total) return;
      last = now;
      emit({ event: 'progress', label, done, total });
    },
    phase: (name, o = {}) => {
      const p = model.phase(name, o);
      emit({ event: 'phase', phase: name, total: p.total, items: p.items });
    },
    task: (phase, label, o = {}) => {
      const t = model.task(phase, label, o);
      emit({ event: 'start', phase, label, digest: o.digest, total: o.total });
      const note = (task: Task, message: string): void =>
        emit({ event: 'note', phase, label: task.label, digest: task.digest, message });
      return handle(model, t, note, (task, kind) => {
        const p = task.phase;
        if (kind === 'finish') {
          emit({
            event: 'finish',
            phase: p.name,
            label: task.label,
            digest: task.digest,
            bytes: task.done,
            seconds: seconds(clock() - task.started),
          });
          return;
        }
        if (kind === 'cancel') {
          emit({ event: 'cancel', phase: p.name, label: task.label, digest: task.digest });
          return;
        }
        const now = clock();
        if (now - last < JSON_INTERVAL_MS) return;
        last = now;
        emit({
          event: 'progress',
          phase: p.name,
          label: task.label,
          digest: task.digest,
          done: task.done,
          total: task.total,
          phaseDone: phaseDone(p),
          phaseTotal: p.total,
          rate: round(model.phaseRate(p)),
        });
      });
    },
    warn: (message) => emit({ event: 'warning', message }),
    detail: (message) => {
      if (opts.verbose) emit({ event: 'detail', message });
    },
    output: (pkg, line) => emit({ event: 'output', package: pkg, line }),
    end: (failure) => {
      const running = model.running();
      const sig = interruptSignalOf(failure);
      for (const t of running)
        emit({
          event: sig ? 'interrupted' : 'failed',
          phase: t.phase.name,
          label: t.label,
          digest: t.digest,
          done: t.done,
          total: t.total,
        });
      const now = clock();
      const phases = [...model.phases.values()]
        .filter((p) => p.finishedItems > 0 || p.active.size > 0)
        .map((p) => ({
          phase: p.name,
          items: p.finishedItems,
          bytes: phaseDone(p),
          total: p.total,
          seconds: seconds((p.active.size > 0 ? now : p.lastActive) - p.started),
        }));
      if (phases.length > 0)
        emit({
          event: 'summary',
          result: sig ? 'interrupted' : failure ? 'failed' : 'done',
          ...(sig ? { signal: sig } : {}),
          seconds: seconds(now - model.started),
          phases,
        });
      model.reset();
    },
  };
}

function textReporter(
  out: ProgressStream,
  tty: boolean,
  opts: ReporterOptions,
  clock: () => number,
): Reporter {
  const model = new Progress(clock);
  const quiet = !!opts.quiet;
  /** Lines of the live block drawn below the last permanent line (terminal). */
  let drawn = 0;
  let lastDraw = -Infinity;
  let legacy: string | null = null;
  let ticker: ReturnType<typeof setInterval> | null = null;

  // a pty without a size says 0 columns
  const width = (): number => Math.max(40, (out.columns || 80) - 1);
  const fit = (s: string): string => (s.length > width() ? `${s.slice(0, width() - 1)}…` : s);

  const clear = (): void => {
    if (drawn === 0) return;
    out.write(`\r${drawn > 1 ? `\x1b[${drawn - 1}A` : ''}\x1b[J`);
    drawn = 0;
  };

  /** The live block: a bar per running task, then a total bar per phase with running tasks. */
  const block = (): string[] => {
    const lines: string[] = [];
    const running = model.running();
    const shown = running.slice(0, 6);
    const cols = width();
    /** "NAME [###...]  FIGURES", the bar left out when there is no total or no room. */
    const barLine = (
      name: string,
      done: number,
      total: number | undefined,
      fig: string,
    ): string => {
      const w = Math.min(30, cols - name.length - fig.length - 6);
      const b = total && w >= 10 ? ` ${bar(done / total, w)}` : '';
      return fit(`${name}${b}  ${fig}`);
    };
    for (const t of shown) {
      const fig = figures(t.done, t.total, t.meter.rate(t.started));
      lines.push(barLine(`${t.phase.name} ${taskName(t)}`, t.done, t.total, fig));
    }
    if (running.length > shown.length) lines.push(`… and ${running.length - shown.length} more`);
    for (const p of model.phases.values()) {
      if (p.active.size === 0) continue;
      const done = phaseDone(p);
      const count = p.items !== undefined ? ` ${p.finishedItems}/${p.items}` : '';
      const fig = figures(done, p.total, model.phaseRate(p));
      lines.push(barLine(`total ${p.name}${count}`, done, p.total, fig));
    }
    if (legacy !== null) lines.push(fit(legacy));
    return lines;
  };

  const draw = (force: boolean): void => {
    if (!tty || quiet) return;
    const now = clock();
    if (!force && now - lastDraw < TTY_INTERVAL_MS) return;
    lastDraw = now;
    const lines = block();
    clear();
    if (lines.length === 0) return;
    out.write(lines.map((l) => `\x1b[2K${l}`).join('\n'));
    drawn = lines.length;
  };

  const startTicker = (): void => {
    const every = opts.tickMs ?? 1000;
    if (!tty || quiet || every <= 0 || ticker) return;
    ticker = setInterval(() => draw(true), every);
    ticker.unref();
  };
  const stopTicker = (): void => {
    if (ticker) clearInterval(ticker);
    ticker = null;
  };

  /** A permanent line: above the live block on a terminal. */
  const line = (s: string): void => {
    clear();
    out.write(s + '\n');
    draw(true);
  };

  const plainPhaseLine = (p: Phase): void => {
    const now = clock();
    if (now - p.lastPlain < PLAIN_INTERVAL_MS) return;
    p.lastPlain = now;
    const count = p.items !== undefined ? ` ${p.finishedItems}/${plural(p.items, p.noun)}` : '';
    out.write(`${p.name}${count}: ${figures(phaseDone(p), p.total, model.phaseRate(p))}\n`);
  };

  return {
    step: (message) => {
      if (!quiet) line(message);
    },
    progress: (label, done, total) => {
      if (quiet || !tty) return;
      legacy = `${label} ${figures(done, total, undefined)}`;
      draw(done === total);
    },
    phase: (name, o = {}) => {
      const p = model.phase(name, o);
      if (quiet || (o.total === undefined && o.items === undefined)) return;
      const parts: string[] = [];
      if (p.items !== undefined) parts.push(plural(p.items, p.noun));
      if (p.total !== undefined) parts.push(human(p.total));
      if (!tty) out.write(`${name} ${parts.join(', ')}\n`);
    },
    task: (phase, label, o = {}) => {
      const t = model.task(phase, label, o);
      if (!quiet) {
        if (!tty)
          out.write(
            `${phase} ${taskName(t)}${o.total !== undefined ? ` (${human(o.total)})` : ''}\n`,
          );
        startTicker();
        draw(true);
      }
      const note = (task: Task, message: string): void => {
        if (!quiet) line(`${phase} ${taskName(task)}: ${message}`);
      };
      return handle(model, t, note, (task, kind) => {
        if (quiet) return;
        if (kind === 'finish') {
          const ms = clock() - task.started;
          line(
            `${past(task.phase.name)} ${taskName(task)} ${human(task.done)} in ${elapsed(ms)}${averageRate(task.meter.moved, ms)}`,
          );
          return;
        }
        if (kind === 'cancel') draw(true);
        else if (tty) draw(false);
        else plainPhaseLine(task.phase);
      });
    },
    warn: (message) => line(`warning: ${message}`),
    detail: (message) => {
      if (opts.verbose) line(message);
    },
    output: (pkg, l) => {
      if (!quiet) line(`${pkg}| ${l}`);
    },
    end: (failure) => {
      stopTicker();
      legacy = null;
      const sig = interruptSignalOf(failure);
      if (!quiet) {
        clear();
        // what was running stays on screen where it stopped
        for (const t of model.running())
          out.write(
            `${t.phase.name} ${taskName(t)} ${sig ? 'interrupted' : 'stopped'} at ${figures(t.done, t.total, undefined)}\n`,
          );
        const s = model.summary(failure);
        if (s) out.write(s + '\n');
      } else clear();
      model.reset();
    },
  };
}

/** Collects everything; for tests and for library callers that render themselves. */
export function silentReporter(): Reporter & { warnings: string[]; lines: string[] } {
  const warnings: string[] = [];
  const lines: string[] = [];
  const task: ProgressTask = {
    add: () => undefined,
    rebase: () => undefined,
    finish: () => undefined,
    cancel: () => undefined,
    note: (m) => lines.push(m),
  };
  return {
    warnings,
    lines,
    step: (m) => lines.push(m),
    progress: () => undefined,
    phase: () => undefined,
    task: () => task,
    warn: (m) => warnings.push(m),
    detail: () => undefined,
    output: (pkg, l) => lines.push(`${pkg}| ${l}`),
    end: () => undefined,
  };
}
