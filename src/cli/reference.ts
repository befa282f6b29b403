/**
 * The command reference of docs/cli.md, generated from the live commander tree and EXIT_CODES so
 * the document cannot drift from the code (test/cli/docs.test.ts compares the two).
 */
import type { Command, Option } from 'commander';
import { EXIT_CODES, type ErrorCode } from '../errors.js';
import { JSON_ERROR, JSON_OUTPUT, type JsonKey } from './json-output.js';

export const BEGIN = '<!-- BEGIN GENERATED: cpm command reference (test/cli/docs.test.ts) -->';
export const END = '<!-- END GENERATED -->';

/** What each error code means for a user, for the exit-code table. */
export const ERROR_MEANING: Record<ErrorCode, string> = {
  E_USAGE: 'bad command line, reference or value',
  E_CONFIG: 'cpm.yaml or a repository config is invalid or unreadable',
  E_TREE: 'the packages tree is broken (file:line given)',
  E_YAML: 'a YAML file does not parse (file:line given)',
  E_TEMPLATE: 'a template does not render (file:line given)',
  E_VERSION: 'an invalid version or selector',
  E_NOT_FOUND: 'package, image, tag or file not found',
  E_UNSAT: 'no set of packages satisfies the request (the conflict is explained)',
  E_REQUIRED_BY: 'other installed packages still require the target',
  E_REGISTRY: 'the registry answered with an error',
  E_AUTH: 'authentication failed or is missing',
  E_DIGEST: 'downloaded or stored content does not match its digest',
  E_NETWORK: 'connection failed or timed out',
  E_REPO: 'a repository index is invalid or unusable',
  E_UNSAFE_ENTRY:
    'a layer entry, or a path in the root (a directory swapped for a symlink), would lead outside the root',
  E_FILE_CONFLICT: 'two packages (or a package and a foreign file) want the same path',
  E_LOCKED: 'another cpm holds the root, or a transaction needs `cpm recover`',
  E_DB: 'the installed-package database is unreadable or inconsistent',
  E_FINALIZER: 'a finalizer failed',
  E_IMAGE: 'an image could not be read or written',
  E_TOOL_MISSING: 'an external tool (tar2sqfs, mksquashfs, zstd, bwrap, …) is not installed',
  E_BUILD: 'a package build failed (cpm build): its step, exit code and log are named',
  E_INTERRUPTED:
    'interrupted: 130 for SIGINT, 143 for SIGTERM; the work was rolled back, or finished if it had committed',
  E_IO: 'the disk reported an I/O error (EIO), or another file operation failed',
  E_NO_SPACE: 'no space left on a filesystem, or a quota is exceeded (ENOSPC, EDQUOT)',
  E_READ_ONLY: 'a filesystem cpm must write is read-only (EROFS)',
  E_PERMISSION: 'permission denied (EACCES, EPERM): run as root or choose a writable location',
  E_PATH:
    'a path is in the way: not a directory, a directory, too long, a symlink loop (ENOTDIR, EISDIR, ENAMETOOLONG, ELOOP, EEXIST)',
  E_LIMIT: 'a process or system limit was hit (EMFILE, ENFILE, ENOMEM)',
};

export interface CommandDoc {
  /** "image oci" */
  path: string;
  usage: string;
  description: string;
  options: Array<{ flags: string; description: string }>;
  /** Text added with addHelpText('after', …), examples included. */
  after: string;
}

function optionText(o: Option): string {
  let d = o.description ?? '';
  if (o.argChoices) d += ` (one of: ${o.argChoices.join(', ')})`;
  // Defaults are shown only when they are plain values, never machine-specific paths.
  if (o.defaultValue !== undefined && !o.negate) {
    const v = o.defaultValue as unknown;
    const shown = Array.isArray(v) ? (v.length ? v.join(', ') : '') : String(v);
    if (shown !== '' && !shown.startsWith('/')) d += ` (default: ${shown})`;
  }
  return d;
}

function afterHelp(cmd: Command): string {
  // outputHelp() = helpInformation() + the addHelpText('after') texts; keep only the latter.
  let full = '';
  cmd.configureOutput({ writeOut: (s) => (full += s) });
  cmd.outputHelp();
  const base = cmd.helpInformation();
  return (full.startsWith(base) ? full.slice(base.length) : '').trim();
}

/** Every runnable command (leaves of the tree), in registration order. */
export function commandDocs(program: Command): CommandDoc[] {
  const out: CommandDoc[] = [];
  const visit = (cmd: Command, path: string[]): void => {
    for (const c of cmd.commands) {
      if ((c as unknown as { _hidden?: boolean })._hidden) continue;
      const p = [...path, c.name()];
      if (c.commands.length > 0) {
        visit(c, p);
        continue;
      }
      out.push({
        path: p.join(' '),
        usage: `cpm ${p.join(' ')} ${c.usage()}`.trim(),
        description: c.description(),
        options: c.options
          .filter((o) => !o.hidden)
          .map((o) => ({ flags: o.flags, description: optionText(o) })),
        after: afterHelp(c),
      });
    }
  };
  visit(program, []);
  return out;
}

const cell = (s: string): string => s.replace(/\|/g, '\\|');

/** The exit-code table, one row per exit code. */
export function exitCodeTable(): string {
  const byExit = new Map<number, ErrorCode[]>();
  for (const [code, exit] of Object.entries(EXIT_CODES) as Array<[ErrorCode, number]>) {
    byExit.set(exit, [...(byExit.get(exit) ?? []), code]);
  }
  const rows: Array<[number, string]> = [
    [0, '| 0 | | success |'],
    [
      1,
      '| 1 | | the check said no: `cpm tree validate` found problems, `cpm verify` found changes |',
    ],
    [70, '| 70 | | internal error (a bug: run with `--debug` and report the stack trace) |'],
    [
      143,
      '| 143 | `E_INTERRUPTED` | interrupted by SIGTERM (128 + 15); the root was left unchanged |',
    ],
  ];
  for (const [exit, codes] of byExit) {
    rows.push([
      exit,
      `| ${exit} | ${codes.map((c) => `\`${c}\``).join(', ')} | ${cell(codes.map((c) => ERROR_MEANING[c]).join('; '))} |`,
    ]);
  }
  rows.sort((a, b) => a[0] - b[0]);
  return [
    '| exit | error codes | meaning |',
    '| ---- | ----------- | ------- |',
    ...rows.map((r) => r[1]),
  ].join('\n');
}

/** The table of a JSON document's top-level keys. */
export function jsonKeyTable(keys: readonly JsonKey[]): string {
  return [
    '| key | |',
    '| --- | --- |',
    ...keys.map(
      (k) => `| \`${k.key}\` | ${cell(k.about)}${k.when ? ` (only: ${cell(k.when)})` : ''} |`,
    ),
  ].join('\n');
}

/** The generated part of docs/cli.md (between BEGIN and END). */
export function cliReference(program: Command): string {
  const parts: string[] = [BEGIN, '', '## Commands', ''];
  for (const d of commandDocs(program)) {
    parts.push(`### cpm ${d.path}`, '', d.description, '', '```', d.usage, '```', '');
    if (d.options.length > 0) {
      parts.push('| option | |', '| --- | --- |');
      for (const o of d.options) parts.push(`| \`${o.flags}\` | ${cell(o.description)} |`);
      parts.push('');
    }
    const json = JSON_OUTPUT[d.path];
    if (json) {
      const flag = d.path === 'tree graph' ? '`--format json`' : '`--json`';
      parts.push(`${flag} prints one object:`, '', jsonKeyTable(json), '');
    }
    if (d.after) parts.push('```', d.after, '```', '');
  }
  parts.push(
    '## JSON errors',
    '',
    'Every command with `--json` prints this object instead when it fails (exit code as below):',
    '',
    jsonKeyTable(JSON_ERROR),
    '',
  );
  parts.push('## Exit codes', '', exitCodeTable(), '', END);
  return parts.join('\n');
}

/**
 * Each visible top-level command as `cpm help` lists it, [term, summary] in order: the table
 * src/cli/command-summaries.ts holds (top-help.ts prints the top-level help from it).
 */
export function commandSummaries(program: Command): Array<[string, string]> {
  const helper = program.createHelp();
  const visible = new Set(helper.visibleCommands(program));
  return program.commands
    .filter((c) => visible.has(c))
    .map((c) => [helper.subcommandTerm(c), helper.subcommandDescription(c)]);
}

/** The source of src/cli/command-summaries.ts for `summaries` (before formatting). */
export function commandSummariesModule(summaries: Array<[string, string]>): string {
  return (
    '/**\n * Generated from the command tree by test/cli/docs.test.ts (CPM_UPDATE_DOCS=1 npx vitest run\n' +
    ' * test/cli/docs.test.ts): each top-level command as `cpm help` lists it, [term, summary]. Do not\n' +
    ' * edit; src/cli/top-help.ts prints the top-level help from it without building the tree.\n */\n' +
    `export const COMMAND_SUMMARIES: ReadonlyArray<readonly [string, string]> = ${JSON.stringify(summaries)};\n`
  );
}
