/**
 * Warnings as cpm prints every other message: one `cpm: warning: …` line on stderr. (Node's
 * process warnings add a pid, a code and a --trace-warnings advice that are about Node, not cpm.)
 */
import { err } from './stdio.js';

export function warn(message: string): void {
  err(`cpm: warning: ${message}\n`);
}
