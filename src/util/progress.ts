/**
 * Progress reporting: a TTY bar, plain lines, or JSON events (one object per line), with
 * quiet/verbose levels. Library code only talks to the Reporter interface.
 */
import type { Writable } from 'node:stream';

export interface Reporter {
  /** A step starts ("extract system/foo@1.0"). */
  step(message: string): void;
  /** Bytes done for the current step; total when known. */
  progress(label: string, done: number, total?: number): void;
  warn(message: string): void;
  /** Verbose detail. */
  detail(message: string): void;
  /** Output of a finalizer, line by line. */
  output(pkg: string, line: string): void;
  end(): void;
}

export type ReporterMode = 'tty' | 'plain' | 'json' | 'silent';

export interface ReporterOptions {
  mode?: ReporterMode;
  quiet?: boolean;
  verbose?: boolean;
  stream?: Writable & { isTTY?: boolean; columns?: number };
}

function human(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export function createReporter(opts: ReporterOptions = {}): Reporter {
  const out = opts.stream ?? process.stderr;
  const mode: ReporterMode = opts.mode ?? (out.isTTY ? 'tty' : 'plain');
  if (mode === 'silent') return silentReporter();
  if (mode === 'json') {
    const emit = (o: Record<string, unknown>): void => {
      out.write(JSON.stringify(o) + '\n');
    };
    let last = 0;
    return {
      step: (message) => emit({ event: 'step', message }),
      progress: (label, done, total) => {
        // throttle to ~10 events/s so machines reading us are not flooded
        const now = Date.now();
        if (now - last < 100 && done !== total) return;
        last = now;
        emit({ event: 'progress', label, done, total });
      },
      warn: (message) => emit({ event: 'warning', message }),
      detail: (message) => {
        if (opts.verbose) emit({ event: 'detail', message });
      },
      output: (pkg, line) => emit({ event: 'output', package: pkg, line }),
      end: () => undefined,
    };
  }
  let barShown = false;
  let last = 0;
  const clearBar = (): void => {
    if (barShown) out.write('\r\x1b[K');
    barShown = false;
  };
  const line = (s: string): void => {
    clearBar();
    out.write(s + '\n');
  };
  return {
    step: (message) => {
      if (!opts.quiet) line(message);
    },
    progress: (label, done, total) => {
      if (opts.quiet || mode !== 'tty') return;
      const now = Date.now();
      if (now - last < 80 && done !== total) return;
      last = now;
      const width = Math.max(10, Math.min(40, (out.columns ?? 80) - 50));
      const frac = total ? Math.min(1, done / total) : 0;
      const fill = Math.round(frac * width);
      const bar = total ? `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ` : '';
      out.write(`\r\x1b[K${label} ${bar}${human(done)}${total ? ` / ${human(total)}` : ''}`);
      barShown = true;
    },
    warn: (message) => line(`warning: ${message}`),
    detail: (message) => {
      if (opts.verbose) line(message);
    },
    output: (pkg, l) => {
      if (!opts.quiet) line(`${pkg}| ${l}`);
    },
    end: clearBar,
  };
}

/** Collects everything; for tests and for library callers that render themselves. */
export function silentReporter(): Reporter & { warnings: string[]; lines: string[] } {
  const warnings: string[] = [];
  const lines: string[] = [];
  return {
    warnings,
    lines,
    step: (m) => lines.push(m),
    progress: () => undefined,
    warn: (m) => warnings.push(m),
    detail: () => undefined,
    output: (pkg, l) => lines.push(`${pkg}| ${l}`),
    end: () => undefined,
  };
}
