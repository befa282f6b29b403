/**
 * docs/cli.md cannot drift: its command reference and exit-code table are generated from the live
 * program and EXIT_CODES (src/cli/reference.ts) and must match the file. Every command has
 * --help examples, and every example parses against the real option definitions.
 * Regenerate after changing a command: CPM_UPDATE_DOCS=1 npx vitest run test/cli/docs.test.ts
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import prettier from 'prettier';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/program.js';
import { JSON_OUTPUT } from '../../src/cli/json-output.js';
import {
  BEGIN,
  END,
  cliReference,
  commandDocs,
  commandSummaries,
  commandSummariesModule,
  exitCodeTable,
} from '../../src/cli/reference.js';
import { COMMAND_SUMMARIES } from '../../src/cli/command-summaries.js';
import { isTopLevelHelp, topLevelHelpProgram } from '../../src/cli/top-help.js';
import { EXIT_CODES } from '../../src/errors.js';

const DOC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../docs/cli.md');
const SUMMARIES = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../src/cli/command-summaries.ts',
);

describe('docs/cli.md', () => {
  it('holds the generated command reference and exit codes', async () => {
    const text = readFileSync(DOC, 'utf8');
    const a = text.indexOf(BEGIN);
    const b = text.indexOf(END);
    expect(a, 'docs/cli.md lacks the generated section').toBeGreaterThanOrEqual(0);
    const want = cliReference(await buildProgram());
    if (process.env.CPM_UPDATE_DOCS) {
      writeFileSync(DOC, text.slice(0, a) + want + text.slice(b + END.length));
      return;
    }
    expect(
      text.slice(a, b + END.length),
      'docs/cli.md is stale: CPM_UPDATE_DOCS=1 npx vitest run test/cli/docs.test.ts',
    ).toBe(want);
  });

  it('src/cli/command-summaries.ts lists the commands of the tree (top-level help without the tree)', async () => {
    const want = commandSummaries(await buildProgram());
    if (process.env.CPM_UPDATE_DOCS) {
      const options = await prettier.resolveConfig(SUMMARIES);
      const text = commandSummariesModule(want);
      writeFileSync(SUMMARIES, await prettier.format(text, { ...options, filepath: SUMMARIES }));
      return;
    }
    expect(
      COMMAND_SUMMARIES,
      'src/cli/command-summaries.ts is stale: CPM_UPDATE_DOCS=1 npx vitest run test/cli/docs.test.ts',
    ).toEqual(want);
  });

  it('the top-level help from the table is the same as the full tree at any width, to stdout and stderr', async () => {
    const full = await buildProgram();
    const table = topLevelHelpProgram();
    for (const width of [40, 80, 100, 132, 200]) {
      for (const p of [full, table])
        p.configureOutput({ getOutHelpWidth: () => width, getErrHelpWidth: () => width });
      for (const error of [false, true])
        expect(table.helpInformation({ error }), `width ${width}`).toBe(
          full.helpInformation({ error }),
        );
    }
    expect(['help', '--help', '-h'].every((a) => isTopLevelHelp([a]))).toBe(true);
    expect(isTopLevelHelp([])).toBe(true);
    expect(isTopLevelHelp(['help', 'install'])).toBe(false);
    expect(isTopLevelHelp(['install'])).toBe(false);
  });

  it('lists every exit code of EXIT_CODES exactly once', () => {
    const table = exitCodeTable();
    for (const [code, exit] of Object.entries(EXIT_CODES)) {
      const row = table.split('\n').find((l) => l.includes(`\`${code}\``));
      expect(row, code).toBeDefined();
      expect(row!.startsWith(`| ${exit} |`), `${code} → ${exit}`).toBe(true);
    }
    const exits = table
      .split('\n')
      .slice(2)
      .map((l) => Number(l.split('|')[1]));
    expect(new Set(exits).size).toBe(exits.length);
  });
});

/** Splits an example line like a shell would, enough for our examples; stops at | < > #. */
function words(line: string): string[] {
  const out: string[] = [];
  let cur: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (ch === "'" || ch === '"') {
      const j = line.indexOf(ch, i + 1);
      cur = (cur ?? '') + line.slice(i + 1, j);
      i = j;
    } else if (ch === ' ') {
      if (cur !== null) out.push(cur);
      cur = null;
    } else if ('|<>#'.includes(ch) && cur === null) {
      break;
    } else {
      cur = (cur ?? '') + ch;
    }
  }
  if (cur !== null) out.push(cur);
  return out;
}

const docs = commandDocs(await buildProgram());

describe('--json', () => {
  it('every command with --json (and tree graph) has a documented top level, and only those', () => {
    const withJson = docs
      .filter((d) => d.options.some((o) => /(^|\s)--json\b/.test(o.flags)))
      .map((d) => d.path);
    expect(Object.keys(JSON_OUTPUT).sort()).toEqual([...withJson, 'tree graph'].sort());
    for (const [cmd, keys] of Object.entries(JSON_OUTPUT)) {
      expect(keys.length, cmd).toBeGreaterThan(0);
      expect(new Set(keys.map((k) => k.key)).size, `${cmd}: a key twice`).toBe(keys.length);
    }
  });
});

describe('--help', () => {
  it('covers every command with examples', () => {
    expect(docs.length).toBeGreaterThan(30);
    for (const d of docs) expect(d.after, `cpm ${d.path} --help`).toMatch(/Examples:\n {2}\S/);
  });

  it('has examples that parse with the real options', async () => {
    let checked = 0;
    for (const d of docs) {
      for (const line of d.after.split('\n')) {
        const w = words(line.trim());
        while (w.length > 0 && /^[A-Z_]+=/.test(w[0]!)) w.shift();
        if (w[0] !== 'cpm') continue;
        const program = await buildProgram();
        program.configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
        // Parse only: every command's action is replaced by a no-op.
        const stub = (c: Command): void => {
          c.exitOverride();
          c.configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
          if (c.commands.length === 0) c.action(() => undefined);
          c.commands.forEach(stub);
        };
        stub(program);
        await expect(
          program.parseAsync(w.slice(1), { from: 'user' }),
          `example "${line.trim()}" of cpm ${d.path}`,
        ).resolves.toBeDefined();
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(60);
  });
});
