/** `cpm completion SHELL`: the script walks the whole command tree (program.ts loads it). */
import { Command } from 'commander';
import { completionScript, SHELLS } from '../completion.js';
import { out } from '../../util/stdio.js';

export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script')
    .addArgument(new Command().createArgument('<shell>', 'bash, zsh or fish').choices([...SHELLS]))
    .addHelpText(
      'after',
      `
Examples:
  source <(cpm completion bash)
  cpm completion zsh > "\${fpath[1]}/_cpm"
  cpm completion fish > ~/.config/fish/completions/cpm.fish`,
    )
    .action((shell: string) => {
      out(completionScript(program, shell));
    });
}
