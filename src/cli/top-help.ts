/**
 * The top-level `cpm help` (and `cpm --help`, `cpm -h`, bare `cpm`) without the command tree:
 * building every command with its options was most of what `cpm help` cost over a bare start
 * (bench/startup). The listing comes from COMMAND_SUMMARIES, generated from the full tree
 * (test/cli/docs.test.ts checks it is current and that both print the same at any width);
 * commander lays it out as it does for the full tree.
 */
import { Command, Help } from 'commander';
import { COMMAND_SUMMARIES } from './command-summaries.js';
import { topProgram } from './command-table.js';

/** argv that only asks for the top-level help. */
export function isTopLevelHelp(argv: readonly string[]): boolean {
  return argv.length === 0 || (argv.length === 1 && ['help', '--help', '-h'].includes(argv[0]!));
}

/** The top-level program with one stand-in per command: its help term and summary, no options. */
export function topLevelHelpProgram(): Command {
  const program = topProgram(Command);
  const terms = new Map<Command, string>();
  for (const [term, summary] of COMMAND_SUMMARIES) {
    const cmd = program.command(term.split(' ')[0]!).description(summary);
    terms.set(cmd, term);
  }
  program.configureHelp({
    subcommandTerm(this: Help, cmd: Command): string {
      return terms.get(cmd) ?? Help.prototype.subcommandTerm.call(this, cmd);
    },
  });
  return program;
}
