/**
 * The rootfs layer's entry point for code outside it (install/, build/, tests): transactions over
 * install steps with their layer sources, and the per-operation wrappers tests drive it with.
 * Everything that writes under a root goes through applyTransaction.
 */
import { createReadStream, statSync } from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { packageId } from '../package/package.js';
import { InstalledDb, resolveDbDir } from './db.js';
import {
  applyTransaction,
  type TransactionOptions,
  type TransactionResult,
} from './transaction.js';
import type { InstallStep, LayerSource } from './types.js';

export * from './types.js';
export { InstalledDb } from './db.js';
export { applyTransaction, recover } from './transaction.js';
export { DEFAULT_DB_DIR, resolveDbDir } from './db.js';
export { STAGE_DIR } from './journal.js';
export type {
  TransactionInput,
  TransactionOptions,
  TransactionResult,
  FileConflict,
} from './transaction.js';
export { runFinalizers } from './finalize.js';

/** Installs (or upgrades to) the given packages in one transaction. */
export function installPackages(
  root: string,
  steps: InstallStep[],
  opts: TransactionOptions = {},
): Promise<TransactionResult> {
  return applyTransaction(root, { install: steps, remove: [] }, opts);
}

/** Removes installed packages (ids or "cat/name") in one transaction. */
export async function uninstallPackages(
  root: string,
  refs: string[],
  opts: TransactionOptions & { full?: boolean } = {},
): Promise<TransactionResult> {
  const db = InstalledDb.load(resolveDbDir(path.resolve(root), opts.dbDir));
  const ids = new Set<string>();
  for (const r of refs) {
    const p = db.find(r);
    if (!p) throw new CpmError('E_NOT_FOUND', `${r} is not installed`, { context: { package: r } });
    ids.add(p.id);
  }
  if (opts.full) {
    // luet --full: also drop packages pulled in as dependencies (transitively) that no
    // remaining package requires; explicitly installed ones and bases stay
    for (let changed = true; changed;) {
      changed = false;
      for (const p of db.list()) {
        if (ids.has(p.id) || p.base || p.reason !== 'dependency') continue;
        const users = db.reverseDeps(p.id);
        if (users.length > 0 && users.every((u) => ids.has(u))) {
          ids.add(p.id);
          changed = true;
        }
      }
    }
  }
  if (!opts.force) {
    for (const id of ids) {
      const users = db.reverseDeps(id).filter((u) => !ids.has(u));
      if (users.length > 0)
        throw new CpmError('E_REQUIRED_BY', `${id} is required by: ${users.join(', ')}`, {
          context: { package: id, requiredBy: users },
          hint: 'uninstall those too, or use --force',
        });
    }
  }
  return applyTransaction(root, { install: [], remove: [...ids] }, opts);
}

/** Upgrade = install of newer versions; the old ones are replaced in the same transaction. */
export const upgradePackages = installPackages;

/** Installs the same packages again, repairing modified or missing files. */
export function reinstallPackages(
  root: string,
  steps: InstallStep[],
  opts: TransactionOptions = {},
): Promise<TransactionResult> {
  return applyTransaction(root, { install: steps, remove: [] }, { ...opts, reinstall: true });
}

/** The fast "already installed?" check: same id and, when given, the same image digest. */
export function isInstalled(
  root: string,
  spec: { category: string; name: string; version: string },
  imageDigest?: string,
  dbDir?: string,
): boolean {
  const p = InstalledDb.load(resolveDbDir(path.resolve(root), dbDir)).get(packageId(spec));
  return p !== undefined && (imageDigest === undefined || p.imageDigest === imageDigest);
}

/** A layer blob in a local file (blob store, OCI layout, bench). */
export function fileLayer(file: string, mediaType: string, digest: string): LayerSource {
  statSync(file);
  return {
    digest,
    mediaType,
    open: () => Promise.resolve(createReadStream(file, { highWaterMark: 1024 * 1024 })),
    file,
  };
}
