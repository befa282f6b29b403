/**
 * Warnings as cpm prints every other message: one `cpm: warning: …` line on stderr. (Node's
 * process warnings add a pid, a code and a --trace-warnings advice that are about Node, not cpm.)
 */
export function warn(message: string): void {
  process.stderr.write(`cpm: warning: ${message}\n`);
}
