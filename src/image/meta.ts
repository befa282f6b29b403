/**
 * The seam between an installed root and the image writers. A root on disk is the truth for file
 * contents; an optional metadata overlay (supplied by the installer DB) is the truth for owners,
 * modes and special files, because an install that ran without root could not chown or mknod.
 */
import { CpmError } from '../errors.js';

export type EntryType = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

/** What the overlay knows about one path. `mode` may carry type bits; only 0o7777 is used. */
export interface EntryMeta {
  type: EntryType;
  uid: number;
  gid: number;
  mode: number;
  /** Linux dev_t of a char/block device (as in stat.rdev). */
  rdev?: number;
  /** Symlink target. */
  linkTarget?: string;
  /** Extended attributes an unprivileged install could not set (security.capability, …). */
  xattrs?: Record<string, Buffer>;
}

/**
 * Looks up a path relative to the root, '/'-separated without a leading slash ("usr/bin/env");
 * the root directory itself is "". Returns undefined when the overlay has no record.
 */
export type MetadataOverlay = (relPath: string) => EntryMeta | undefined;

/** Splits a Linux dev_t into major/minor (glibc's gnu_dev_major/minor layout). */
export function splitDev(rdev: number): { major: number; minor: number } {
  const d = BigInt(rdev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n));
  const minor = Number((d & 0xffn) | ((d >> 12n) & 0xffffff00n));
  return { major, minor };
}

/** Inverse of splitDev. */
export function makeDev(major: number, minor: number): number {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  const d =
    ((ma & 0xfffn) << 8n) |
    ((ma & 0xfffff000n) << 32n) |
    (mi & 0xffn) |
    ((mi & 0xffffff00n) << 12n);
  return Number(d);
}

/** SOURCE_DATE_EPOCH from the environment: unset → undefined, garbage → E_USAGE. */
export function sourceDateEpochFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw)) {
    throw new CpmError('E_USAGE', `SOURCE_DATE_EPOCH must be whole seconds, got "${raw}"`);
  }
  return Number(raw);
}

/**
 * An overlay that is a plain table (what the installer DB gives): records per path, and paths
 * that read as plain root-owned directories (missing ancestors of records). Unlike an arbitrary
 * function it can be copied to a worker thread, so the whole walk can run there.
 */
export interface OverlayTable {
  records: Map<string, EntryMeta>;
  defaultDirs: Set<string>;
}

const TABLES = new WeakMap<MetadataOverlay, OverlayTable>();
const DEFAULT_DIR: EntryMeta = { type: 'dir', uid: 0, gid: 0, mode: 0o755 };

/** The overlay function of a table; overlayTable() gives the table back. */
export function tableOverlay(table: OverlayTable): MetadataOverlay {
  const { records, defaultDirs } = table;
  const overlay: MetadataOverlay = (rel) =>
    records.get(rel) ?? (defaultDirs.has(rel) ? DEFAULT_DIR : undefined);
  TABLES.set(overlay, table);
  return overlay;
}

/** The table behind an overlay made by tableOverlay, else undefined. */
export function overlayTable(overlay: MetadataOverlay): OverlayTable | undefined {
  return TABLES.get(overlay);
}
