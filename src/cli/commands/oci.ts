import type { Command } from 'commander';

/** `cpm pack`, `cpm pull`, `cpm push`, `cpm login|logout` — filled in by the registry work. */
export function registerOci(_program: Command): void {}
