import type { Command } from 'commander';

/** `cpm image squashfs|oci|tar`, `cpm demo`, `cpm completion` — the image-output work. */
export function registerImage(_program: Command): void {}
