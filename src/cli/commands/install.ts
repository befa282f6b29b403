import type { Command } from 'commander';

/** install, uninstall, upgrade, reinstall, list, files, owns, verify, reclaim, cleanup, recover, rootfs — the installer work. */
export function registerInstall(_program: Command): void {}
