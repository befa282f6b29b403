/**
 * The order cpm lists paths, package ids and messages in: the Unicode root collation (what
 * `localeCompare(b, 'en')` gives), the same on every machine. Text of printable ASCII, which is
 * nearly all of it, is compared here directly: the first localeCompare of a process sets up ICU's
 * collator, ≈ 10 ms of a short command. Anything else goes to localeCompare.
 *
 * Root collation of printable ASCII: characters compare by a primary weight over the whole text
 * first (spaces and punctuation, then symbols, digits, letters; a letter and its capital weigh
 * the same, a shorter text that is a prefix comes first), then, when all of those are equal, by
 * case at the first place it differs (lowercase first). test/util/collate.test.ts compares it
 * with localeCompare.
 */

/** Printable ASCII in root collation order; a letter's capital follows it at the same weight. */
const ORDER =
  ' _-,;:!?.\'"()[]{}@*/\\&#%`^+<=>|~$0123456789aAbBcCdDeEfFgGhHiIjJkKlLmMnNoOpPqQrRsStTuUvVwWxXyYzZ';

/** Primary weight by character code (0: not printable ASCII). */
const PRIMARY = new Uint8Array(128);
{
  let w = 0;
  for (const ch of ORDER) {
    const c = ch.charCodeAt(0);
    // a capital letter weighs what its lowercase letter does
    PRIMARY[c] = c >= 65 && c <= 90 ? PRIMARY[c + 32]! : ++w;
  }
}

const isUpper = (c: number): boolean => c >= 65 && c <= 90;

/** Printable ASCII only (a regex: sorting runs cold, once per process). */
const PRINTABLE = /^[\x20-\x7e]*$/;
const printable = (s: string): boolean => PRINTABLE.test(s);

/** -1, 0 or 1 as `a` sorts before, with or after `b` (root collation, as localeCompare). */
export function collate(a: string, b: string): number {
  if (a === b) return 0;
  if (!printable(a) || !printable(b)) return Math.sign(a.localeCompare(b, 'en'));
  const n = Math.min(a.length, b.length);
  let caseOrder = 0;
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const px = PRIMARY[x]!;
    const py = PRIMARY[y]!;
    if (px !== py) return px < py ? -1 : 1;
    if (caseOrder === 0) caseOrder = isUpper(x) ? 1 : -1;
  }
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return caseOrder;
}
