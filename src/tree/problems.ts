/** Problems and warnings found while loading a tree: each located at file:line with a field path. */
import type { ErrorCode } from '../errors.js';
import { collate } from '../util/collate.js';

export interface Problem {
  code: ErrorCode;
  /** Path shown to users (relative to the tree's parent directory, e.g. `packages/meta/collection.yaml`). */
  file: string;
  line?: number;
  /** Field path inside the file, e.g. `requires[1]` or `packages[3].version`; "" for the file. */
  path: string;
  message: string;
}

/** `file:line: path: message` — the one format every tree problem and warning uses. */
export function formatProblem(p: Problem): string {
  const loc = p.line ? `${p.file}:${p.line}` : p.file;
  return p.path ? `${loc}: ${p.path}: ${p.message}` : `${loc}: ${p.message}`;
}

/** Collects problems and warnings; sorted by file, line and text for stable output. */
export class Report {
  readonly problems: Problem[] = [];
  readonly warnings: Problem[] = [];

  error(p: Problem): void {
    this.problems.push(p);
  }

  warn(p: Problem): void {
    this.warnings.push(p);
  }

  sorted(): { problems: Problem[]; warnings: Problem[] } {
    const cmp = (a: Problem, b: Problem): number =>
      collate(a.file, b.file) ||
      (a.line ?? 0) - (b.line ?? 0) ||
      collate(formatProblem(a), formatProblem(b));
    // One template error in a collection's shared build.yaml shows once, not once per stanza.
    const uniq = (list: Problem[]): Problem[] => {
      const seen = new Set<string>();
      return list.filter((p) => {
        const k = formatProblem(p);
        if (seen.has(k)) return false;
        seen.add(k);
        return true;
      });
    };
    return {
      problems: uniq([...this.problems].sort(cmp)),
      warnings: uniq([...this.warnings].sort(cmp)),
    };
  }
}

/** Joins a field path: `packages[2]` + `requires[1]` → `packages[2].requires[1]`. */
export function joinPath(base: string, part: string): string {
  if (!base) return part;
  if (!part) return base;
  return part.startsWith('[') ? base + part : `${base}.${part}`;
}
