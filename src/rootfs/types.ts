/**
 * Shared installer types: the seam between the resolver/repository side (which hands over
 * resolved packages and their layer blobs) and the installer (extract, DB, transaction).
 */
import type { Readable } from 'node:stream';
import type { FinalizeSpec } from '../package/finalize.js';
import type { InstallReason, PackageSpec } from '../package/package.js';
import type { TransferProgress } from '../util/progress.js';

/** One layer blob, as the blob store or a local file provides it. */
export interface LayerSource {
  /** "sha256:…" of the blob as stored (compressed); checked while streaming. */
  digest: string;
  /** OCI media type; compression is sniffed when it says nothing. */
  mediaType: string;
  /**
   * "sha256:…" of the uncompressed tar (the image config's rootfs.diff_ids entry), when known:
   * the decompressed stream is hashed while extracting and a mismatch refuses the layer.
   */
  diffId?: string;
  /** Compressed size of the blob (its descriptor's size), for progress totals. */
  size?: number;
  open(): Promise<Readable>;
  /**
   * The blob as a local file (blob store, OCI layout): the extractor then opens it itself instead
   * of calling open(), so zstd can read the descriptor directly and the digest be computed from
   * the same open file off the main thread.
   */
  file?: string;
  /**
   * The blob as a local file the source opens and checks itself (a dir:// or on-disk luet
   * repository: a regular file inside the repository): a descriptor at offset 0 that the
   * extractor reads as it reads `file`, and closes. The source does not hash it: the extractor's
   * digest and size checks are the only ones, and they are made whatever verifyDigest says.
   */
  openFile?(): Promise<number>;
  /**
   * open()'s stream checks the blob's digest and size itself and fails with E_DIGEST at its end,
   * before the extractor accepts the layer (a dir:// or http:// repository's stream): the
   * extractor does not hash it again. Not for a cached blob, which open() reads as it is.
   */
  streamVerifies?: boolean;
  /** Where the blob is read from (repository and file or URL), named in a digest mismatch. */
  where?: string;
  /**
   * A remote blob: brought into the local cache before extraction starts (the downloads of a
   * transaction run in parallel, with progress); open() would fetch it too, silently.
   */
  fetch?: {
    /** Bytes still to download: 0 when the blob is cached. */
    missing(): Promise<number>;
    /** Downloads; when `signal` fires it stops at once and keeps no partial file. */
    run(progress: TransferProgress, signal: AbortSignal): Promise<void>;
  };
  /**
   * Drops a cached copy of the blob (a cache that heals itself): called when the blob failed
   * verification, before open() is tried once more. Absent for sources without a cache.
   */
  evict?(): Promise<void>;
}

export interface InstallStep {
  spec: PackageSpec;
  layers: LayerSource[];
  /** Repository name (or image reference) the package came from. */
  origin: string;
  /** Manifest digest of the package image; "" when unknown. */
  imageDigest: string;
  reason: InstallReason;
  finalize?: FinalizeSpec;
  /** Marks a distribution base (rootfs init). */
  base?: boolean;
}

/** Type letters: f regular, d directory, l symlink, c/b char/block device, p fifo. */
export type FileType = 'f' | 'd' | 'l' | 'c' | 'b' | 'p';

export interface FileRecord {
  /** Root-relative canonical path without a leading slash ("usr/bin/sh"). */
  path: string;
  type: FileType;
  /** Permission bits including setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  /** Symlink target as written in the layer. */
  target?: string;
  /** Device numbers for c/b. */
  rdev?: [number, number];
  /** Config file: kept as .cpmsave on uninstall, .cpmnew on upgrade when user-modified. */
  config?: boolean;
  /** pax SCHILY.xattr.* values (utf8), recorded whether or not they could be applied. */
  xattrs?: Record<string, string>;
  /** Why the entry is recorded but not on disk (device node as non-root). */
  skipped?: string;
  /**
   * Created by the package's finalizers, not shipped in its image (rpm's %ghost): owned — not
   * foreign, removed with the package — but its content is the system's, so verify skips it.
   */
  generated?: boolean;
}

export interface InstalledPackage {
  id: string;
  spec: PackageSpec;
  origin: string;
  imageDigest: string;
  reason: InstallReason;
  /** Digests of the layers it was installed from, in order. */
  layers: string[];
  base?: boolean;
  /** Owners were not applied (installed as non-root); the DB has the intended ones. */
  rootless?: boolean;
  finalize?: FinalizeSpec;
  files: FileRecord[];
}

/** Bounds against decompression bombs and hostile archives. */
export interface ExtractLimits {
  maxEntries: number;
  /** Total bytes of tar stream (after decompression) over all layers of a transaction. */
  maxBytes: number;
}

export const DEFAULT_LIMITS: ExtractLimits = {
  maxEntries: 2_000_000,
  maxBytes: 64 * 1024 ** 3,
};
