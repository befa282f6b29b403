/**
 * The reporter with a fake clock and a fake stream: what a terminal, a pipe and a --json reader
 * get, rates and ETAs from the clock's timings, the summary, and an interrupt that leaves the
 * running tasks where they stopped.
 */
import { describe, expect, it } from 'vitest';
import {
  PLAIN_INTERVAL_MS,
  clockTime,
  createReporter,
  human,
  type ReporterMode,
} from '../../src/util/progress.js';
import { CpmError } from '../../src/errors.js';

const MiB = 1024 ** 2;
const ESC = '\x1b';

function setup(mode: ReporterMode, extra: { quiet?: boolean; columns?: number } = {}) {
  let now = 1000;
  let text = '';
  const stream = {
    isTTY: mode === 'tty',
    columns: extra.columns ?? 100,
    write: (s: string) => {
      text += s;
      return true;
    },
  };
  const rep = createReporter({
    mode,
    stream,
    clock: () => now,
    tickMs: 0,
    ...(extra.quiet ? { quiet: true } : {}),
  });
  return {
    rep,
    advance: (ms: number) => void (now += ms),
    text: () => text,
    lines: () => text.split('\n').filter((l) => l !== ''),
    /** What a terminal shows: each line as last drawn, escape codes applied. */
    screen: () => render(text),
  };
}

/** A minimal terminal: \r, \n, ESC[nA (up), ESC[J (erase below), ESC[2K (erase line). */
function render(s: string): string[] {
  const rows: string[] = [''];
  let row = 0;
  let col = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\x1b') {
      const m = new RegExp(`^${ESC}\\[(\\d*)([AJK])`).exec(s.slice(i))!;
      if (m[2] === 'A') row = Math.max(0, row - Number(m[1] || 1));
      else if (m[2] === 'J') {
        rows.splice(row + 1);
        rows[row] = rows[row]!.slice(0, col);
      } else rows[row] = '';
      i += m[0].length - 1;
    } else if (c === '\r') col = 0;
    else if (c === '\n') {
      row++;
      col = 0;
      if (rows.length <= row) rows.push('');
    } else {
      const r = rows[row]!.padEnd(col);
      rows[row] = r.slice(0, col) + c + r.slice(col + 1);
      col++;
    }
  }
  return rows.filter((r, i) => r !== '' || i < rows.length - 1);
}

describe('formatting', () => {
  it('sizes and clock times', () => {
    expect(human(512)).toBe('512 B');
    expect(human(1536)).toBe('1.5 KiB');
    expect(human(188 * MiB)).toBe('188.0 MiB');
    expect(clockTime(7)).toBe('0:07');
    expect(clockTime(754)).toBe('12:34');
    expect(clockTime(3723)).toBe('1:02:03');
  });
});

describe('plain (stderr is not a terminal)', () => {
  it('a line per phase, task start and finish; a phase line at most every few seconds', () => {
    const t = setup('plain');
    t.rep.phase('download', { total: 100 * MiB, items: 2, noun: 'layer' });
    const a = t.rep.task('download', 'sys/a@1', {
      total: 60 * MiB,
      digest: 'sha256:' + 'a'.repeat(64),
    });
    const b = t.rep.task('download', 'sys/b@1', {
      total: 40 * MiB,
      digest: 'sha256:' + 'b'.repeat(64),
    });
    for (let i = 0; i < 20; i++) {
      t.advance(500);
      a.add(3 * MiB);
    }
    a.finish();
    t.advance(1000);
    b.add(40 * MiB);
    b.finish();
    t.rep.end();
    const lines = t.lines();
    expect(lines[0]).toBe('download 2 layers, 100.0 MiB');
    expect(lines[1]).toBe('download sys/a@1 aaaaaaaaaaaa (60.0 MiB)');
    expect(lines[2]).toBe('download sys/b@1 bbbbbbbbbbbb (40.0 MiB)');
    // 10 s of transfer at 6 MiB/s: phase lines at 5 s and 10 s, each with rate and ETA
    const periodic = lines.filter((l) => l.startsWith('download 0/2 layers: '));
    expect(periodic).toEqual([
      'download 0/2 layers: 30.0 MiB/100.0 MiB  30%  6.0 MiB/s  ETA 0:12',
      'download 0/2 layers: 60.0 MiB/100.0 MiB  60%  6.0 MiB/s  ETA 0:07',
    ]);
    expect(lines).toContain('downloaded sys/a@1 aaaaaaaaaaaa 60.0 MiB in 10.0s (6.0 MiB/s)');
    expect(lines).toContain('downloaded sys/b@1 bbbbbbbbbbbb 40.0 MiB in 11.0s (3.6 MiB/s)');
    expect(lines.at(-1)).toBe('downloaded 2 layers, 100.0 MiB in 11.0s (9.1 MiB/s); 11.0s in all');
    expect(t.text()).not.toContain('\r');
    expect(t.text()).not.toContain(ESC);
    expect(PLAIN_INTERVAL_MS).toBe(5000);
  });

  it('warnings and steps are lines; quiet keeps only warnings', () => {
    const t = setup('plain', { quiet: true });
    t.rep.step('waiting for lock held by pid 1');
    const k = t.rep.task('extract', 'x/y@1', { total: 10 });
    k.add(10);
    k.finish();
    t.rep.warn('careful');
    t.rep.end();
    expect(t.text()).toBe('warning: careful\n');
  });

  it('an interrupt leaves each running task where it stopped and says so', () => {
    const t = setup('plain');
    t.rep.phase('download', { total: 10 * MiB, items: 1, noun: 'layer' });
    const a = t.rep.task('download', 'img:1', {
      total: 10 * MiB,
      digest: 'sha256:' + 'c'.repeat(64),
    });
    t.advance(2000);
    a.add(MiB);
    t.advance(1000);
    t.rep.end(
      new CpmError('E_INTERRUPTED', 'interrupted by SIGINT', { context: { signal: 'SIGINT' } }),
    );
    const lines = t.lines();
    expect(lines.at(-2)).toBe('download img:1 cccccccccccc interrupted at 1.0 MiB/10.0 MiB  10%');
    expect(lines.at(-1)).toBe(
      'interrupted by SIGINT after 3.0s: downloaded 0 of 1 layer, 1.0 MiB of 10.0 MiB in 3.0s (341.3 KiB/s)',
    );
  });

  it('rebased bytes (a resumed download) are shown but not counted in the rate', () => {
    const t = setup('plain');
    const a = t.rep.task('download', 'img:1', { total: 10 * MiB });
    a.rebase(8 * MiB);
    t.advance(2000);
    a.add(2 * MiB);
    a.finish();
    t.rep.end();
    expect(t.lines()).toContain('downloaded img:1 10.0 MiB in 2.0s (1.0 MiB/s)');
  });
});

describe('terminal', () => {
  it('a bar per running task and a total bar, redrawn in place; finished tasks become lines', () => {
    const t = setup('tty', { columns: 120 });
    t.rep.phase('extract', { total: 20 * MiB, items: 2, noun: 'layer' });
    const a = t.rep.task('extract', 'sys/a@1', {
      total: 10 * MiB,
      digest: 'sha256:' + 'a'.repeat(64),
    });
    const b = t.rep.task('extract', 'sys/b@1', {
      total: 10 * MiB,
      digest: 'sha256:' + 'b'.repeat(64),
    });
    t.advance(1000);
    a.add(5 * MiB);
    t.advance(1000);
    b.add(MiB);
    expect(t.screen()).toEqual([
      expect.stringMatching(
        /^extract sys\/a@1 aaaaaaaaaaaa \[#{15}\.{15}\] {2}5\.0 MiB\/10\.0 MiB {2}50% {2}2\.5 MiB\/s {2}ETA 0:02$/,
      ),
      expect.stringMatching(
        /^extract sys\/b@1 bbbbbbbbbbbb \[#{3}\.{27}\] {2}1\.0 MiB\/10\.0 MiB {2}10% {2}512\.0 KiB\/s {2}ETA 0:18$/,
      ),
      expect.stringMatching(
        /^total extract 0\/2 \[#{9}\.{21}\] {2}6\.0 MiB\/20\.0 MiB {2}30% {2}3\.0 MiB\/s {2}ETA 0:05$/,
      ),
    ]);
    a.add(5 * MiB);
    a.finish();
    expect(t.screen()).toEqual([
      'extracted sys/a@1 aaaaaaaaaaaa 10.0 MiB in 2.0s (5.0 MiB/s)',
      expect.stringMatching(/^extract sys\/b@1 bbbbbbbbbbbb /),
      expect.stringMatching(/^total extract 1\/2 .* 11\.0 MiB\/20\.0 MiB {2}55%/),
    ]);
    t.rep.warn('a warning goes above the bars');
    expect(t.screen()[1]).toBe('warning: a warning goes above the bars');
    t.advance(1000);
    b.add(9 * MiB);
    b.finish();
    t.rep.end();
    expect(t.screen()).toEqual([
      'extracted sys/a@1 aaaaaaaaaaaa 10.0 MiB in 2.0s (5.0 MiB/s)',
      'warning: a warning goes above the bars',
      'extracted sys/b@1 bbbbbbbbbbbb 10.0 MiB in 3.0s (3.3 MiB/s)',
      'extracted 2 layers, 20.0 MiB in 3.0s (6.7 MiB/s); 3.0s in all',
    ]);
  });

  it('lines never wrap: they are cut to the terminal width', () => {
    const t = setup('tty', { columns: 50 });
    const a = t.rep.task('download', 'category/a-very-long-package-name@1.0.0-rc.1', { total: 10 });
    a.add(1);
    expect(t.screen().every((l) => l.length < 50)).toBe(true);
  });

  it('a stalled transfer shows its rate falling, measured over the last seconds', () => {
    const t = setup('tty');
    const a = t.rep.task('download', 'img:1', { total: 100 * MiB });
    for (let i = 0; i < 10; i++) {
      t.advance(1000);
      a.add(MiB);
    }
    expect(t.screen()[0]).toMatch(/ {2}1\.0 MiB\/s {2}ETA 1:30$/);
    t.advance(20_000);
    a.add(1); // the next update after a long stall
    expect(t.screen()[0]).toMatch(/ {2}\d+(\.\d)? (B|KiB)\/s {2}ETA/);
  });
});

describe('--json', () => {
  it('one JSON object per line: phase, start, progress (throttled), finish, summary', () => {
    const t = setup('json');
    t.rep.phase('download', { total: 2 * MiB, items: 1, noun: 'layer' });
    const a = t.rep.task('download', 'img:1', {
      total: 2 * MiB,
      digest: 'sha256:' + 'd'.repeat(64),
    });
    for (let i = 0; i < 8; i++) {
      t.advance(100);
      a.add(MiB / 4);
    }
    a.finish();
    t.rep.end();
    const events = t.lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events[0]).toEqual({ event: 'phase', phase: 'download', total: 2 * MiB, items: 1 });
    expect(events[1]).toEqual({
      event: 'start',
      phase: 'download',
      label: 'img:1',
      digest: 'sha256:' + 'd'.repeat(64),
      total: 2 * MiB,
    });
    const progress = events.filter((e) => e.event === 'progress');
    // 8 updates 100 ms apart, at most one per 250 ms
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.length).toBeLessThanOrEqual(4);
    expect(progress[0]).toMatchObject({ phase: 'download', total: 2 * MiB, phaseTotal: 2 * MiB });
    expect(progress.at(-1)!.rate).toEqual(expect.any(Number));
    expect(events.at(-2)).toEqual({
      event: 'finish',
      phase: 'download',
      label: 'img:1',
      digest: 'sha256:' + 'd'.repeat(64),
      bytes: 2 * MiB,
      seconds: 0.8,
    });
    expect(events.at(-1)).toEqual({
      event: 'summary',
      result: 'done',
      seconds: 0.8,
      phases: [{ phase: 'download', items: 1, bytes: 2 * MiB, total: 2 * MiB, seconds: 0.8 }],
    });
  });

  it('an interrupt: the running task and a summary that says so', () => {
    const t = setup('json');
    const a = t.rep.task('extract', 'x/y@1', { total: 100 });
    a.add(40);
    t.rep.end(new CpmError('E_INTERRUPTED', 'interrupted', { context: { signal: 'SIGTERM' } }));
    const events = t.lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.at(-2)).toMatchObject({
      event: 'interrupted',
      phase: 'extract',
      done: 40,
      total: 100,
    });
    expect(events.at(-1)).toMatchObject({
      event: 'summary',
      result: 'interrupted',
      signal: 'SIGTERM',
    });
  });
});

describe('a note about a running task', () => {
  it('is a line naming the task on a pipe, a note event in JSON, nothing with -q', () => {
    const msg = 'waiting for sha256:0123456789ab being downloaded by pid 42';
    const plain = setup('plain');
    plain.rep
      .task('download', 'test/big@1.0', { total: MiB, digest: `sha256:${'01'.repeat(32)}` })
      .note(msg);
    expect(plain.lines()).toContain(`download test/big@1.0 010101010101: ${msg}`);
    const json = setup('json');
    json.rep.task('download', 'test/big@1.0', { digest: 'sha256:ab' }).note(msg);
    expect(json.lines().map((l) => JSON.parse(l) as unknown)).toContainEqual({
      event: 'note',
      phase: 'download',
      label: 'test/big@1.0',
      digest: 'sha256:ab',
      message: msg,
    });
    const quiet = setup('plain', { quiet: true });
    quiet.rep.task('download', 'test/big@1.0').note(msg);
    expect(quiet.text()).toBe('');
  });
});
