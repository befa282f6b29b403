import type { Command } from 'commander';

/** `cpm repo create|list|add|remove|update`, `cpm search`, `cpm info` — filled in by the repository work. */
export function registerRepo(_program: Command): void {}
