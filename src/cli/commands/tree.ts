import type { Command } from 'commander';

/** `cpm tree validate|list|deps|graph|render` — filled in by the packages-tree work. */
export function registerTree(program: Command): void {
  program.command('tree').description('inspect and validate a packages tree');
}
