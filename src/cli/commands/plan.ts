import type { Command } from 'commander';

/** `cpm plan install|uninstall|upgrade` — filled in by the resolver work. */
export function registerPlan(_program: Command): void {}
