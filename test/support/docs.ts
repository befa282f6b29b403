/**
 * Code blocks of the project's markdown, for the tests that run the docs as written
 * (test/docs/*.test.ts): a doc that drifts from the code fails there.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * The text of a markdown section: from its heading to the next heading of its level or above
 * (lines inside code fences, such as `# comments`, are no headings).
 */
export function section(file: string, heading: string): string {
  const lines = readFileSync(file, 'utf8').split('\n');
  const start = lines.indexOf(heading);
  if (start < 0) throw new Error(`${file}: no section "${heading}"`);
  const level = heading.split(' ')[0]!.length;
  let fenced = false;
  let end = lines.length;
  for (let i = start + 1; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.startsWith('```')) fenced = !fenced;
    const m = /^(#+) /.exec(l);
    if (!fenced && m && m[1]!.length <= level) {
      end = i;
      break;
    }
  }
  return lines.slice(start + 1, end).join('\n') + '\n';
}

/** The fenced blocks of one language (```sh by default) in a markdown section. */
export function codeBlocks(file: string, heading: string, lang = 'sh'): string[] {
  return [
    ...section(file, heading).matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g')),
  ].map((m) => m[1]!);
}

/** The ```sh blocks of a markdown section. */
export function shBlocks(file: string, heading: string): string[] {
  return codeBlocks(file, heading, 'sh');
}

/** Applies the substitutions, longest first, so a path is not replaced inside a longer one. */
export function substitute(text: string, subs: Record<string, string>): string {
  let out = text;
  for (const from of Object.keys(subs).sort((a, b) => b.length - a.length))
    out = out.replaceAll(from, subs[from]!);
  return out;
}

/**
 * Runs each non-empty line of a block with `sh -ec` (a trailing `\` joins lines), as a reader
 * pastes it; returns the output of each. Throws with the line and its output when one fails.
 */
export function runLines(
  block: string,
  opts: { cwd: string; env: NodeJS.ProcessEnv },
): Array<{ line: string; out: string; err: string }> {
  const lines = block.replace(/\\\n\s*/g, '').split('\n');
  const done: Array<{ line: string; out: string; err: string }> = [];
  for (const line of lines.filter((l) => l.trim() !== '' && !l.trim().startsWith('#'))) {
    const r = spawnSync('sh', ['-ec', line], {
      cwd: opts.cwd,
      encoding: 'utf8',
      env: opts.env,
      maxBuffer: 64 << 20,
    });
    if (r.status !== 0)
      throw new Error(`doc line failed (exit ${r.status}): ${line}\n${r.stdout}${r.stderr}`);
    done.push({ line, out: r.stdout, err: r.stderr });
  }
  return done;
}
