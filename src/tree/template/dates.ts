/**
 * Sprig's date and semver functions that real luet trees call (`now`, `date`, `dateInZone`,
 * `unixEpoch`, `semver`, `semverCompare`). Times print as Go's time.Time does; `now` honours
 * SOURCE_DATE_EPOCH so a build spec stamped with the time renders reproducibly when asked to.
 */
import { compareVersions } from '../../package/version.js';
import { GO_STRING, MISSING, printValue, type Value } from './values.js';

/** A Go time.Time: an instant (ms since the epoch) and nothing else; zones apply when formatting. */
export interface GoTime {
  readonly [GO_STRING]: () => string;
  readonly ms: number;
}

const TIME_TAG = Symbol('goTime');

function goTime(ms: number): GoTime {
  const t = {
    ms,
    [GO_STRING]: () => formatGoTime(ms, 'Local', '2006-01-02 15:04:05.999999999 -0700 MST'),
  };
  Object.defineProperty(t, TIME_TAG, { value: true });
  Object.defineProperty(t, 'ms', { value: ms, enumerable: false });
  return t;
}

function isGoTime(v: Value): v is GoTime {
  return v !== null && typeof v === 'object' && TIME_TAG in v;
}

/** The current time, or SOURCE_DATE_EPOCH when set (reproducible renders). */
export function now(): GoTime {
  const e = process.env.SOURCE_DATE_EPOCH;
  if (e && /^[0-9]+$/.test(e)) return goTime(Number(e) * 1000);
  return goTime(Date.now());
}

/** Sprig's toDate argument rules: a time, or Unix seconds as a number or numeric string. */
function instant(v: Value): number {
  if (isGoTime(v)) return v.ms;
  if (typeof v === 'number') return Math.trunc(v) * 1000;
  if (typeof v === 'string' && /^-?[0-9]+$/.test(v)) return Number(v) * 1000;
  // Sprig falls back to time.Now() for anything else.
  return now().ms;
}

interface Parts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  weekday: number;
  ms: number;
  offsetMin: number;
  abbr: string;
}

function zoneName(zone: string): string | undefined {
  if (zone === 'Local') return undefined;
  if (zone === '' || zone === 'UTC') return 'UTC';
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return zone;
  } catch {
    return 'UTC'; // sprig: an unknown zone is UTC
  }
}

function partsIn(ms: number, zone: string): Parts {
  const tz = zoneName(zone);
  if (tz === 'UTC') {
    // No zone data needed: the Date's UTC fields (the first Intl.DateTimeFormat of a process
    // costs tens of ms of ICU set-up, a good part of validating a small tree). Years outside
    // 1..9999 are left to Intl, which words them its own way.
    const d = new Date(ms);
    const year = d.getUTCFullYear();
    if (year >= 1 && year <= 9999) {
      return {
        year,
        month: d.getUTCMonth() + 1,
        day: d.getUTCDate(),
        hour: d.getUTCHours(),
        minute: d.getUTCMinutes(),
        second: d.getUTCSeconds(),
        weekday: d.getUTCDay(),
        ms: ((ms % 1000) + 1000) % 1000,
        offsetMin: 0,
        abbr: 'UTC',
      };
    }
  }
  const f = new Intl.DateTimeFormat('en-US', {
    timeZone: tz,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
    weekday: 'short',
    timeZoneName: 'short',
  });
  const p: Record<string, string> = {};
  for (const x of f.formatToParts(new Date(ms))) p[x.type] = x.value;
  const year = Number(p.year);
  const month = Number(p.month);
  const day = Number(p.day);
  const hour = Number(p.hour);
  const minute = Number(p.minute);
  const second = Number(p.second);
  const asUtc = Date.UTC(year, month - 1, day, hour, minute, second);
  const offsetMin = Math.round((asUtc - Math.floor(ms / 1000) * 1000) / 60000);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  let abbr = p.timeZoneName ?? 'UTC';
  if (tz === 'UTC') abbr = 'UTC';
  else if (/^GMT[+-]/.test(abbr)) {
    // en-US lacks some names tzdata has (CET); en-GB has those. Else a numeric name, as tzdata.
    const gb = new Intl.DateTimeFormat('en-GB', { timeZone: tz, timeZoneName: 'short' })
      .formatToParts(new Date(ms))
      .find((x) => x.type === 'timeZoneName')?.value;
    abbr = gb && !/^GMT/.test(gb) ? gb : offset(offsetMin, false, false).replace(/00$/, '');
  }
  return {
    year,
    month,
    day,
    hour,
    minute,
    second,
    weekday: days.indexOf(p.weekday ?? 'Sun'),
    ms: ((ms % 1000) + 1000) % 1000,
    offsetMin,
    abbr,
  };
}

const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

const pad = (n: number, w = 2, c = '0'): string => String(n).padStart(w, c);

function offset(min: number, colon: boolean, z: boolean, secs = false): string {
  if (z && min === 0) return 'Z';
  const s = min < 0 ? '-' : '+';
  const a = Math.abs(min);
  const hm = `${pad(Math.floor(a / 60))}${colon ? ':' : ''}${pad(a % 60)}`;
  return s + hm + (secs ? (colon ? ':00' : '00') : '');
}

// Longest tokens first, as Go's layout scanner prefers them.
const TOKENS = [
  'January',
  'Monday',
  'Z07:00:00',
  '-07:00:00',
  'Z070000',
  '-070000',
  'Z07:00',
  '-07:00',
  'Z0700',
  '-0700',
  '2006',
  '-07',
  'Z07',
  'Jan',
  'Mon',
  'MST',
  '002',
  '__2',
  '_2',
  '01',
  '02',
  '03',
  '04',
  '05',
  '06',
  '15',
  'PM',
  'pm',
  '1',
  '2',
  '3',
  '4',
  '5',
];

/** Formats an instant with a Go reference-time layout ("2006-01-02T15:04:05Z07:00"). */
export function formatGoTime(ms: number, zone: string, layout: string): string {
  const t = partsIn(ms, zone);
  const yday = Math.floor(
    (Date.UTC(t.year, t.month - 1, t.day) - Date.UTC(t.year, 0, 1)) / 86_400_000 + 1,
  );
  const h12 = t.hour % 12 === 0 ? 12 : t.hour % 12;
  let out = '';
  let i = 0;
  outer: while (i < layout.length) {
    // Fractional seconds: .000 / ,000 (fixed) and .999 (trailing zeros dropped).
    const frac = /^[.,](0+|9+)(?![0-9])/.exec(layout.slice(i));
    if (frac && /[0-9]$/.test(out)) {
      const n = frac[1]!.length;
      let digits = pad(t.ms, 3).padEnd(9, '0').slice(0, n);
      if (frac[1]![0] === '9') digits = digits.replace(/0+$/, '');
      out += digits ? layout[i] + digits : '';
      i += frac[0].length;
      continue;
    }
    for (const tok of TOKENS) {
      if (!layout.startsWith(tok, i)) continue;
      switch (tok) {
        case 'January':
          out += MONTHS[t.month - 1];
          break;
        case 'Jan':
          out += MONTHS[t.month - 1]!.slice(0, 3);
          break;
        case 'Monday':
          out += DAYS[t.weekday];
          break;
        case 'Mon':
          out += DAYS[t.weekday]!.slice(0, 3);
          break;
        case '2006':
          out += pad(t.year, 4);
          break;
        case '06':
          out += pad(t.year % 100);
          break;
        case '01':
          out += pad(t.month);
          break;
        case '1':
          out += String(t.month);
          break;
        case '02':
          out += pad(t.day);
          break;
        case '2':
          out += String(t.day);
          break;
        case '_2':
          out += pad(t.day, 2, ' ');
          break;
        case '__2':
          out += pad(yday, 3, ' ');
          break;
        case '002':
          out += pad(yday, 3);
          break;
        case '15':
          out += pad(t.hour);
          break;
        case '03':
          out += pad(h12);
          break;
        case '3':
          out += String(h12);
          break;
        case '04':
          out += pad(t.minute);
          break;
        case '4':
          out += String(t.minute);
          break;
        case '05':
          out += pad(t.second);
          break;
        case '5':
          out += String(t.second);
          break;
        case 'PM':
          out += t.hour >= 12 ? 'PM' : 'AM';
          break;
        case 'pm':
          out += t.hour >= 12 ? 'pm' : 'am';
          break;
        case 'MST':
          out += t.abbr;
          break;
        case '-07':
          out += offset(t.offsetMin, false, false).slice(0, 3);
          break;
        case 'Z07':
          out += offset(t.offsetMin, false, true).slice(0, 3);
          break;
        case '-0700':
          out += offset(t.offsetMin, false, false);
          break;
        case 'Z0700':
          out += offset(t.offsetMin, false, true);
          break;
        case '-07:00':
          out += offset(t.offsetMin, true, false);
          break;
        case 'Z07:00':
          out += offset(t.offsetMin, true, true);
          break;
        case '-070000':
          out += offset(t.offsetMin, false, false, true);
          break;
        case 'Z070000':
          out += offset(t.offsetMin, false, true, true);
          break;
        case '-07:00:00':
          out += offset(t.offsetMin, true, false, true);
          break;
        case 'Z07:00:00':
          out += offset(t.offsetMin, true, true, true);
          break;
      }
      i += tok.length;
      continue outer;
    }
    out += layout[i];
    i++;
  }
  return out;
}

function str(v: Value): string {
  return v === null || v === undefined || v === MISSING ? '' : printValue(v);
}

function arity(name: string, args: Value[], n: number): void {
  if (args.length !== n)
    throw new Error(`wrong number of args for ${name}: want ${n} got ${args.length}`);
}

const SEMVER =
  /^v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$/;

/** Sprig's `semver`: a version with Major/Minor/Patch/Prerelease/Metadata/Original; prints normalised. */
function semver(v: string): Record<string, unknown> {
  const m = SEMVER.exec(v.trim());
  if (!m) throw new Error(`semver: Invalid Semantic Version "${v}"`);
  const major = Number(m[1]);
  const minor = Number(m[2] ?? 0);
  const patch = Number(m[3] ?? 0);
  const pre = m[4] ?? '';
  const meta = m[5] ?? '';
  const o: Record<string, unknown> = {
    Major: major,
    Minor: minor,
    Patch: patch,
    Prerelease: pre,
    Metadata: meta,
    Original: v,
  };
  const text = `${major}.${minor}.${patch}${pre ? '-' + pre : ''}${meta ? '+' + meta : ''}`;
  Object.defineProperty(o, GO_STRING, { value: () => text });
  return o;
}

/** Semver order: numeric parts, then a pre-release sorts before the release. */
function semverCmp(a: Record<string, unknown>, b: Record<string, unknown>): number {
  for (const k of ['Major', 'Minor', 'Patch'])
    if (a[k] !== b[k]) return (a[k] as number) < (b[k] as number) ? -1 : 1;
  const pa = a.Prerelease as string;
  const pb = b.Prerelease as string;
  if (pa === pb) return 0;
  if (pa === '') return 1;
  if (pb === '') return -1;
  return compareVersions(`0~${pa}`, `0~${pb}`);
}

/** Sprig's `semverCompare "CONSTRAINT" VERSION`: ops = != > < >= <= ~ ^, "," or " " for and, "||" for or. */
function semverCompare(constraint: string, version: string): boolean {
  const v = semver(version);
  return constraint.split('||').some((alt) =>
    alt
      .trim()
      .split(/\s*,\s*|\s+(?=[=!<>~^v0-9])/)
      .filter((t) => t !== '')
      .every((term) => {
        const m = /^(=|!=|>=|<=|>|<|~|\^)?\s*(.+)$/.exec(term);
        if (!m) throw new Error(`semverCompare: improper constraint: ${constraint}`);
        const op = m[1] ?? '=';
        const want = semver(m[2]!.replace(/\.[xX*]$/, ''));
        const c = semverCmp(v, want);
        const major = v.Major === want.Major;
        switch (op) {
          case '=':
            return c === 0;
          case '!=':
            return c !== 0;
          case '>':
            return c > 0;
          case '<':
            return c < 0;
          case '>=':
            return c >= 0;
          case '<=':
            return c <= 0;
          case '~':
            return c >= 0 && major && v.Minor === want.Minor;
          default:
            return c >= 0 && major; // ^
        }
      }),
  );
}

export const DATE_FUNCS: Record<string, (args: Value[]) => Value> = {
  now: (a) => (arity('now', a, 0), now()),
  unixEpoch: (a) => (arity('unixEpoch', a, 1), String(Math.floor(instant(a[0]) / 1000))),
  date: (a) => (arity('date', a, 2), formatGoTime(instant(a[1]), 'Local', str(a[0]))),
  dateInZone: (a) => (arity('dateInZone', a, 3), formatGoTime(instant(a[1]), str(a[2]), str(a[0]))),
  semver: (a) => (arity('semver', a, 1), semver(str(a[0]))),
  semverCompare: (a) => (arity('semverCompare', a, 2), semverCompare(str(a[0]), str(a[1]))),
};
