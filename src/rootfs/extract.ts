/**
 * Streaming extraction of layers into the transaction's staging area: blob → digest check →
 * decompression → tar-parser (synchronous, strict) → one file per entry under ROOT/.cpm-tx/stage, hashed
 * while written. Nothing outside the staging dir is written here; every entry name is resolved
 * through fs-path against the root plus everything staged so far, so a symlink from an earlier
 * layer or package cannot redirect a later write. The result is a per-package map of canonical
 * path → staged entry that the transaction checks for conflicts and then renames into place.
 * Every non-directory entry gets a flat name (stage/fSEQ); directories are made at commit.
 *
 * Fresh-root mode (StagerOptions.fresh: one package into a root that holds nothing but cpm's DB
 * directory): every entry is created at its final path instead, directories when their entry
 * comes (with their metadata set by the transaction at the end), each path appended to the
 * fresh-root journal before it is created. The resolution is the same: the overlay holds what
 * this transaction created, and the disk is known to hold nothing else.
 */
import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  closeSync,
  fchmodSync,
  fchownSync,
  fstatSync,
  futimesSync,
  lchownSync,
  linkSync,
  lutimesSync,
  mkdirSync,
  statSync,
  openSync,
  readSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { CpmError } from '../errors.js';
import { packageId } from '../package/package.js';
import { fsError } from '../util/fs-errors.js';
import { interruptSignal } from '../util/signals.js';
import { faultPoint } from './fault.js';
import type { FreshJournalWriter } from './journal.js';
import {
  LayerReadError,
  readLayer,
  type LayerEntry,
  type LayerRead,
  type LayerSink,
} from './layer-reader.js';
import { TarHeaderError } from './tar-headers.js';
import { LAYER_MEDIA_TYPES } from '../oci/types.js';
import {
  DiskView,
  UnsafePathError,
  entryComponents,
  resolveInRoot,
  type NodeInfo,
  type PathView,
} from './fs-path.js';
import type { ProgressTask, Reporter } from '../util/progress.js';
import type { TarRing } from './file-digest.js';
import { SMALL_FILE, StageWriter, metaCalls, type StageMeta } from './stage-writer.js';
import type { ExtractLimits, FileRecord, InstallStep, LayerSource } from './types.js';
import { childProcess } from '../util/lazy-builtins.js';

export interface StagedEntry {
  rec: FileRecord;
  /** Absolute path of the staged object (not for directories). */
  staged?: string;
  /** Layer index within its package (whiteouts only hide lower layers). */
  layer: number;
  /** mtime from the header, seconds. */
  mtime: number;
  /** Directory created because an entry needed it, not listed in the layer. */
  implicit?: boolean;
  /**
   * A directory whose xattrs could not be set on its probe in the stage (EPERM, ENOTSUP, no
   * setfattr; warned there): the commit does not try them again.
   */
  xattrsWarned?: boolean;
}

export type PackageEntries = Map<string, StagedEntry>;

/** Disk plus everything staged so far in this transaction. */
class Overlay implements PathView {
  readonly staged = new Map<string, StagedEntry>();
  constructor(readonly disk: PathView) {}
  lookup(rel: string): NodeInfo | null {
    if (rel === '') return { type: 'd' };
    const e = this.staged.get(rel);
    if (e) return { type: e.rec.type, target: e.rec.target };
    return this.disk.lookup(rel);
  }
}

const isRoot = process.getuid?.() === 0;

/**
 * The disk of a fresh root, checked under the lock: only the directories on the way to the DB
 * directory (and what is in that, which entries never reach: it is reserved). Nothing else to
 * lstat; what the transaction creates is in the overlay.
 */
class FreshDisk implements PathView {
  constructor(private readonly dirs: ReadonlySet<string>) {}
  lookup(rel: string): NodeInfo | null {
    return rel === '' || this.dirs.has(rel) ? { type: 'd' } : null;
  }
}

/** Where a fresh-root transaction writes (see the module comment). */
export interface FreshTarget {
  journal: FreshJournalWriter;
  /** Directories that were there (root-relative): never created, removed or journalled here. */
  existing: ReadonlySet<string>;
  /** New files are owned 0:0 already (root, no setgid directory on the way). */
  plainOwner: boolean;
}

/** A device node or fifo to create in the stage (mknod has no Node API). */
interface PendingNode {
  staged: string;
  rel: string;
  type: 'c' | 'b' | 'p';
  mode: number;
  rdev?: [number, number];
  uid: number;
  gid: number;
  mtime: number;
}
/** Extended attributes to set on a staged file, and whose they are (for messages). */
export interface PendingXattrs {
  /** What setfattr is given: the staged object, or /proc/self/fd/N at commit. */
  staged: string;
  rel: string;
  id: string;
  digest: string;
  xattrs: Record<string, string>;
  /** Called when they could not be set and it is only a warning. */
  onWarn?: () => void;
}
/** Where the body of the entry being read goes. */
const SKIP = 0;
/** The worker writes it from the tar ring once it is all there. */
const RING = 1;
/** Written here, through bodyFd. */
const FD = 2;
/** The worker writes it from the tar ring in pieces, as it passes (a large file). */
const PIECES = 3;

/** The layer being read. */
interface LayerCtx {
  digest: string;
  layer: number;
  pkg: PackageEntries;
  id: string;
}

/** Operations per helper process (its argument list stays far below ARG_MAX). */
const HELPER_BATCH = 500;

export interface StagerOptions {
  root: string;
  stageDir: string;
  limits: ExtractLimits;
  reporter: Reporter;
  verifyDigest: boolean;
  /** Checked between entries so SIGINT/SIGTERM stop extraction promptly. */
  interrupted: () => boolean;
  /**
   * Root-relative paths that belong to cpm (its DB dir, the stage): a layer entry there is skipped
   * with a warning, so no image (e.g. one `cpm image oci` wrote, DB included) can rewrite the DB.
   */
  reserved?: readonly string[];
  /** Create entries at their final paths (fresh-root mode); the stage is not used. */
  fresh?: FreshTarget;
}

export class Stager {
  readonly view: Overlay;
  private seq = 0;
  private entries = 0;
  private bytes = 0;
  /** Worker for the files of the current layer, started once a layer proves large. */
  private writer: StageWriter | null = null;
  /** The current layer's tar ring (layer-reader.ts), which the writer reads file bodies from. */
  private ring: TarRing | null = null;
  /** A file the writer created for a body the read did not finish: removed after a failure. */
  private orphan: string | null = null;
  private smallFiles = 0;
  /**
   * Small files of a layer written on this thread before the worker starts: a small layer is done
   * before a worker would be up. CPM_STAGE_WORKER_AFTER overrides it for benches (0 = always).
   */
  private readonly workerAfter = Number(process.env.CPM_STAGE_WORKER_AFTER ?? 256);

  /** New staged objects are owned 0:0 (see metaCalls). */
  private readonly plainOwner: boolean;
  /** Device nodes and xattrs not made yet: settle() makes them with one helper process. */
  private nodes: PendingNode[] = [];
  private xattrs: PendingXattrs[] = [];
  private nodeContext: Record<string, string> = {};

  /** The entry whose body is being read: where its bytes go (see onData/onEnd). */
  private body = SKIP;
  /** Stream position of the body's first byte. */
  private bodyAt = 0;
  private bodyFd = -1;
  private bodyHash: Hash | null = null;
  private bodyEntry: StagedEntry | null = null;
  private bodyMeta: StageMeta = { uid: 0, gid: 0, mode: 0, mtime: 0 };
  private bodyXattrs: Record<string, string> | null = null;

  /** Fresh-root mode: the journal and the root without a trailing slash. */
  private readonly fresh: FreshTarget | null;
  private readonly base: string;

  constructor(private readonly o: StagerOptions) {
    this.fresh = o.fresh ?? null;
    this.base = o.root.replace(/\/+$/, '');
    if (this.fresh) {
      this.view = new Overlay(new FreshDisk(this.fresh.existing));
      this.plainOwner = this.fresh.plainOwner;
      return;
    }
    this.view = new Overlay(new DiskView(o.root));
    mkdirSync(`${o.stageDir}/stage`, { recursive: true, mode: 0o700 });
    const st = statSync(`${o.stageDir}/stage`);
    this.plainOwner = isRoot && st.uid === 0 && st.gid === 0 && (st.mode & 0o2000) === 0;
  }

  async stagePackage(step: InstallStep): Promise<PackageEntries> {
    const pkg: PackageEntries = new Map();
    try {
      return await this.stageLayers(step, pkg);
    } catch (e) {
      // a cached blob that does not hash to its digest (or is so damaged that it does not even
      // decompress first): evicted and fetched again, once; a bad blob from the source fails again
      const bad =
        e instanceof CpmError && (e.code === 'E_DIGEST' || e.code === 'E_UNSAFE_ENTRY')
          ? step.layers.find((l) => l.digest === e.context.digest && l.evict)
          : undefined;
      if (!bad) throw e;
      this.o.reporter.warn(`${(e as Error).message}; dropping the cached copy and fetching again`);
      this.dropPackage(pkg);
      await bad.evict!();
      return await this.stageLayers(step, new Map());
    }
  }

  /** Forgets what a failed attempt staged for one package (its files go with the stage). */
  private dropPackage(pkg: PackageEntries): void {
    const dirs: string[] = [];
    for (const [p, e] of pkg) {
      if (e.staged) rmSync(e.staged, { force: true });
      else if (e.rec.type === 'd') dirs.push(p);
      if (this.view.staged.get(p) === e) this.view.staged.delete(p);
    }
    pkg.clear();
    this.removeFreshDirs(pkg, dirs, 0);
  }

  private async stageLayers(step: InstallStep, pkg: PackageEntries): Promise<PackageEntries> {
    const id = packageId(step.spec);
    // before anything of the package is read: a type cpm does not know is not guessed at
    for (const layer of step.layers)
      if (!LAYER_MEDIA_TYPES.has(layer.mediaType))
        throw new CpmError(
          'E_IMAGE',
          `refusing ${id}: layer ${layer.digest} has media type "${layer.mediaType}", which is no OCI or Docker layer type cpm extracts`,
          {
            hint: 'layers must be tar, tar+gzip or tar+zstd (OCI or Docker schema2)',
            context: { digest: layer.digest, package: id, mediaType: layer.mediaType },
          },
        );
    for (let i = 0; i < step.layers.length; i++) {
      const layer = step.layers[i]!;
      // progress counts the compressed bytes read: what the layer's size (the total) measures
      const task = this.o.reporter.task('extract', id, {
        digest: layer.digest,
        ...(layer.size !== undefined ? { total: layer.size } : {}),
      });
      this.smallFiles = 0;
      this.orphan = null;
      try {
        await this.extractLayer(layer, i, pkg, id, task);
        await this.settle();
        task.finish();
      } finally {
        task.cancel(); // a failed layer's task (no-op once finished)
        // a failed layer: let queued writes finish (or fail) before the caller removes the stage
        await this.writer?.flush().catch(() => undefined);
        await this.writer?.close();
        this.writer = null;
        this.ring = null;
        if (this.orphan) rmSync(this.orphan, { force: true });
        this.orphan = null;
        this.nodes = [];
        this.xattrs = [];
      }
    }
    return pkg;
  }

  private nextStage(): string {
    return `${this.o.stageDir}/stage/f${(this.seq++).toString(36)}`;
  }

  /**
   * Where the entry at `rel` is created: a fresh stage name, or in fresh-root mode its final
   * path, journalled (appended with the next flush, which comes before it is created).
   */
  private target(rel: string): string {
    if (!this.fresh) return this.nextStage();
    this.fresh.journal.note(rel);
    return `${this.base}/${rel}`;
  }

  /** Fresh-root mode: every noted path is in the journal file (call before creating one). */
  private journalled(): void {
    this.fresh?.journal.flush();
  }

  /**
   * Fresh-root mode: the directory at `rel` is created (journalled first), mode 0700 until the
   * end: now, or by the writer's thread once it runs (every creation goes through it then).
   */
  private mkdirFresh(rel: string): void {
    if (!this.fresh) return;
    this.fresh.journal.note(rel);
    if (this.writer) {
      // in order with the files queued before and after it, journalled with its batch
      faultPoint();
      this.writer.mkdir(`${this.base}/${rel}`);
      return;
    }
    this.fresh.journal.flush();
    faultPoint();
    mkdirSync(`${this.base}/${rel}`, { mode: 0o700 });
  }

  /**
   * Fresh-root mode: removes directories of entries just dropped, deepest first. One still holding
   * entries of this layer (a whiteout of a lower layer's directory its own files are in) stays,
   * recorded as an implicit directory.
   */
  private removeFreshDirs(pkg: PackageEntries, dirs: string[], layer: number): void {
    if (!this.fresh || dirs.length === 0) return;
    for (const p of dirs.sort().reverse()) {
      if (this.fresh.existing.has(p)) continue;
      try {
        rmdirSync(`${this.base}/${p}`);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') continue;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
        this.putImplicitDir(pkg, p, layer);
      }
    }
  }

  /** Fresh-root mode: a non-directory where a directory was before the transaction is refused. */
  private refuseOverExisting(rel: string, c: LayerCtx): void {
    if (!this.fresh?.existing.has(rel)) return;
    throw new CpmError('E_FILE_CONFLICT', `1 file conflict(s):\n  /${rel}: (unowned), ${c.id}`, {
      context: { conflicts: [{ path: rel, claimants: ['(unowned)', c.id] }] },
      hint: 'a directory and a non-directory cannot share a path, even with --force',
    });
  }

  private async extractLayer(
    layer: LayerSource,
    layerIndex: number,
    pkg: PackageEntries,
    id: string,
    task: ProgressTask,
  ): Promise<void> {
    // a local blob file is read through a descriptor (layer-reader.ts: zstd reads it directly,
    // the digests are computed off this thread); a stream otherwise
    let src: Readable | number | undefined;
    if (layer.openFile) {
      // the source checked what it opened and hashes nothing: this read is the only check
      if (!layer.digest.startsWith('sha256:'))
        throw new CpmError('E_DIGEST', `layer ${layer.digest} of ${id}: not a sha256 digest`, {
          context: { digest: layer.digest, package: id },
        });
      src = await layer.openFile();
    } else if (layer.file !== undefined) {
      try {
        src = openSync(layer.file, 'r');
      } catch (e) {
        // not fetched (yet, or again after an eviction): open() brings it
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
          throw this.readError(new LayerReadError('read', e, 'none', ''), layer, id);
      }
    }
    src ??= await layer.open();
    const fd = typeof src === 'number' ? src : -1;
    if (fd >= 0 && layer.size !== undefined) {
      // a file of another size cannot hold the blob: refused before any of it is read
      let size: number;
      try {
        size = fstatSync(fd).size;
      } catch (e) {
        closeSync(fd);
        throw this.readError(new LayerReadError('read', e, 'none', ''), layer, id);
      }
      if (size !== layer.size) {
        closeSync(fd);
        throw digestMismatch(layer, id, `is ${size} bytes, expected ${layer.size}`);
      }
    }
    const verify =
      (this.o.verifyDigest || layer.openFile !== undefined) && layer.digest.startsWith('sha256:');
    // a stream that checks itself (a repository's over http) is not hashed a second time here
    const hashBlob = verify && !(layer.streamVerifies && fd < 0);
    const checkDiff = layer.diffId?.startsWith('sha256:') ?? false;
    const limits = this.o.limits;
    const c: LayerCtx = { digest: layer.digest, layer: layerIndex, pkg, id };
    const sink: LayerSink = {
      start: (ring) => void (this.ring = ring),
      entry: (h, at) => this.onEntry(h, at, c),
      data: (b) => this.onData(b),
      end: () => this.onEnd(c),
    };
    let read: LayerRead;
    try {
      read = await readLayer(
        src,
        {
          mediaType: layer.mediaType,
          // SIGINT/SIGTERM: stop reading at once (a large entry streams for a long time between
          // the per-entry checks); the transaction reports the interrupt
          signal: interruptSignal(),
          hashBlob: hashBlob,
          hashTar: checkDiff,
          onBlobBytes: (n) => task.add(n),
          onTar: (chunk) => {
            this.bytes += chunk.length;
            if (this.bytes > limits.maxBytes)
              throw unsafe(
                layer.digest,
                id,
                '',
                `uncompressed data exceeds the limit of ${limits.maxBytes} bytes (decompression bomb?)`,
              );
          },
        },
        sink,
      );
    } catch (err) {
      this.closeBody();
      if (!(err instanceof LayerReadError)) throw err;
      // a local blob that does not decompress or parse may just not be the blob its digest names:
      // said so (E_DIGEST, which also lets a cache drop its copy), as a stream's check would
      if (verify && fd >= 0 && !interruptSignal().aborted && damaged(err)) {
        const got = hashFile(fd);
        if (got !== undefined && got !== layer.digest)
          throw digestMismatch(layer, id, `has digest ${got}, expected ${layer.digest}`);
      }
      // a stream that checks itself fails only at its end, and the layer stopped before it: read
      // to the end once more for the check's verdict (an http:// blob: downloaded again)
      if (layer.streamVerifies && fd < 0 && !interruptSignal().aborted && damaged(err)) {
        const verdict = await streamVerdict(layer);
        if (verdict) throw verdict;
      }
      throw this.readError(err, layer, id);
    } finally {
      if (fd >= 0) closeSync(fd);
    }
    if (hashBlob && read.blob !== layer.digest)
      throw digestMismatch(layer, id, `has digest ${read.blob}, expected ${layer.digest}`);
    // the blob may be the one the manifest names and still not hold the tar the config describes
    if (checkDiff) {
      const got = read.tar;
      if (got !== layer.diffId)
        throw new CpmError(
          'E_DIGEST',
          `layer ${layer.digest} of ${id} decompresses to ${got}, but the image config's rootfs.diff_ids says ${layer.diffId}`,
          {
            hint: 'the image is inconsistent; rebuild or re-push it',
            context: { digest: layer.digest, package: id, diffId: layer.diffId },
          },
        );
    }
  }

  /** A failed layer read as the CpmError the user reads. */
  private readError(err: LayerReadError, layer: LayerSource, id: string): Error {
    const e = err.cause;
    if (e instanceof CpmError && e.code === 'E_TOOL_MISSING') return e;
    if (err.stage === 'entry' && !(e instanceof CpmError)) {
      // a failed local write is the machine's problem, not the package's: named as such
      const local = fsError(e, {
        doing: `extracting /${err.entry} of ${id} into`,
        path: (e as { path?: string }).path ?? this.o.root,
        where: 'root',
        context: { package: id, digest: layer.digest },
      });
      if (local instanceof CpmError) return local;
    }
    if (err.stage === 'decompress')
      return unsafe(
        layer.digest,
        id,
        err.entry,
        `corrupt or truncated ${err.compression} data (${(e as Error).message})`,
      );
    if (e instanceof CpmError) return e;
    if (e instanceof TarHeaderError) return unsafe(layer.digest, id, err.entry, e.why);
    if (err.stage === 'parse')
      return unsafe(
        layer.digest,
        id,
        err.entry,
        `malformed or truncated tar stream (${(e as Error).message})`,
      );
    // a streamed layer's connection that dropped or stalled is the network's fault, not the disk's
    if (err.stage === 'read' && !layer.file && !layer.openFile && networkFault(e))
      return new CpmError(
        'E_NETWORK',
        `reading layer ${layer.digest} of ${id}${layer.where ? ` from ${layer.where}` : ''}: ${(e as Error).message}`,
        {
          context: {
            digest: layer.digest,
            package: id,
            ...(layer.where ? { path: layer.where } : {}),
          },
          cause: e,
        },
      );
    const local = fsError(e, {
      doing: `reading layer ${layer.digest} of ${id}`,
      where: 'cache',
      context: { digest: layer.digest, package: id },
    });
    if (local instanceof CpmError) return local;
    return new CpmError('E_IO', `reading layer ${layer.digest} of ${id}: ${(e as Error).message}`, {
      context: { digest: layer.digest, package: id },
      cause: e,
    });
  }

  /**
   * A new entry: checks and resolves its path, stages what has no body, and sets where the body
   * goes (onData/onEnd). Returns a promise only when it must wait (the worker's ring is full,
   * queued files must be on disk first); most entries need none.
   */
  private onEntry(h: LayerEntry, at: number, c: LayerCtx): void | Promise<void> {
    this.body = SKIP;
    const { digest, layer, pkg, id } = c;
    if (this.o.interrupted())
      throw new CpmError('E_INTERRUPTED', 'interrupted', { context: { package: id } });
    const refuse = (why: string): CpmError => unsafe(digest, id, h.name, why);
    if (++this.entries > this.o.limits.maxEntries)
      throw refuse(`more than ${this.o.limits.maxEntries} entries`);
    const size = h.size;
    if (size > this.o.limits.maxBytes - this.bytes + 1024 ** 2 && isFile(h.type))
      throw refuse(`entry size ${size} exceeds the remaining byte limit`);

    let comps: string[];
    try {
      comps = entryComponents(h.name);
    } catch (e) {
      if (e instanceof UnsafePathError) throw refuse(e.message);
      throw e;
    }
    const base = comps[comps.length - 1] ?? '';
    if (base.startsWith('.wh.')) return this.whiteout(h, c, comps, base);
    if (comps.length === 0) {
      if (h.type !== 'directory') throw refuse('the root itself must be a directory');
      return; // the root directory itself: its metadata belongs to the root's owner
    }

    const mode = h.mode & 0o7777;
    const xattrs = paxXattrs(h.pax);
    const rel = this.resolve(h, c, comps, false);
    const reserved = this.o.reserved?.find((r) => rel === r || rel.startsWith(`${r}/`));
    if (reserved !== undefined) {
      this.o.reporter.warn(`${id}: skipped /${rel} (cpm's own /${reserved}, not a package file)`);
      return;
    }
    const existing = this.view.lookup(rel);

    if (h.type === 'directory') {
      if (existing?.type === 'l') {
        // merged-/usr style: a directory entry over a symlink to a directory keeps the link
        const followed = this.resolve(h, c, comps, true);
        if (this.view.lookup(followed)?.type === 'd') return;
      }
      this.ensureParents(pkg, rel, layer);
      const dirEntry: StagedEntry = {
        rec: { path: rel, type: 'd', mode, uid: h.uid, gid: h.gid, ...(xattrs ? { xattrs } : {}) },
        layer,
        mtime: h.mtime,
      };
      // fresh-root mode: set on the directory itself at the end (the transaction's setDirXattrs)
      if (xattrs && !this.fresh) this.probeDirXattrs(dirEntry, c, xattrs);
      const prev = pkg.get(rel);
      if (prev && prev.rec.type !== 'd')
        return this.settle().then(() => {
          this.discard(pkg, rel);
          this.mkdirFresh(rel);
          this.put(pkg, dirEntry);
        });
      if (!existing) this.mkdirFresh(rel);
      this.put(pkg, dirEntry);
      return;
    }

    this.refuseOverExisting(rel, c);
    this.ensureParents(pkg, rel, layer);
    if (pkg.has(rel))
      return this.settle().then(() => {
        this.discard(pkg, rel);
        return this.place(h, at, c, rel, mode, xattrs);
      });
    return this.place(h, at, c, rel, mode, xattrs);
  }

  private resolve(h: LayerEntry, c: LayerCtx, comps: string[], followLast: boolean): string {
    try {
      return resolveInRoot(this.view, comps, followLast);
    } catch (e) {
      if (e instanceof UnsafePathError) throw unsafe(c.digest, c.id, h.name, e.message);
      throw e;
    }
  }

  private async whiteout(h: LayerEntry, c: LayerCtx, comps: string[], base: string): Promise<void> {
    await this.settle(); // staged files it hides must exist to be removed
    const parent = this.resolve(h, c, comps.slice(0, -1), true);
    if (base === '.wh..wh..opq') {
      this.hideUnder(c.pkg, parent, c.layer, false);
    } else if (!base.startsWith('.wh..wh.')) {
      const name = base.slice(4);
      if (name === '' || name === '.' || name === '..')
        throw unsafe(c.digest, c.id, h.name, `whiteout of "${name}" points outside its directory`);
      const target = parent === '' ? name : `${parent}/${name}`;
      this.hideUnder(c.pkg, target, c.layer, true);
    }
  }

  /** Stages a non-directory entry at `rel` (nothing of this package is there now). */
  private place(
    h: LayerEntry,
    at: number,
    c: LayerCtx,
    rel: string,
    mode: number,
    xattrs: Record<string, string> | null,
  ): void | Promise<void> {
    const { digest, layer, pkg, id } = c;
    const { uid, gid, mtime, size } = h;
    switch (h.type) {
      case 'file':
      case 'contiguous-file': {
        const staged = this.target(rel);
        faultPoint();
        const meta = { uid, gid, mode, mtime };
        const rec: FileRecord = {
          path: rel,
          type: 'f',
          mode,
          uid,
          gid,
          size,
          sha256: '',
          ...(xattrs ? { xattrs } : {}),
        };
        this.bodyEntry = { rec, staged, layer, mtime };
        this.bodyMeta = meta;
        this.bodyXattrs = xattrs;
        this.bodyAt = at;
        const writer = this.fileWriter(c);
        if (writer) {
          // the worker writes and hashes it from the ring: nothing of the body is copied here
          if (size <= SMALL_FILE) {
            this.body = RING;
            writer.hold(at);
          } else {
            this.body = PIECES;
            writer.open(staged, at, meta);
          }
          return;
        }
        // written here with sync calls (fast for the many small files before the worker starts)
        const calls = metaCalls(meta, this.plainOwner);
        this.journalled();
        this.bodyFd = openSync(staged, 'wx', calls.chmod ? 0o600 : mode);
        this.bodyHash = createHash('sha256');
        this.body = FD;
        return;
      }
      case 'symlink': {
        const target = h.linkname;
        if (target === '' || target.includes('\0'))
          throw unsafe(digest, id, h.name, 'empty or invalid symlink target');
        const staged = this.target(rel);
        faultPoint();
        const meta = { uid, gid, mode: 0o777, mtime };
        if (this.writer) this.writer.symlink(staged, target, meta);
        else {
          this.journalled();
          symlinkSync(target, staged);
          if (metaCalls(meta, this.plainOwner).chown) lchownSync(staged, uid, gid);
          lutimesSync(staged, mtime, mtime);
        }
        this.put(pkg, {
          rec: { path: rel, type: 'l', mode: 0o777, uid, gid, target },
          staged,
          layer,
          mtime,
        });
        return;
      }
      case 'link': {
        let tcomps: string[];
        try {
          tcomps = entryComponents(h.linkname);
        } catch (e) {
          if (e instanceof UnsafePathError)
            throw unsafe(digest, id, h.name, `hardlink target: ${e.message}`);
          throw e;
        }
        const trel = this.resolve(h, c, tcomps, false);
        const target = pkg.get(trel);
        if (!target || target.rec.type !== 'f' || !target.staged)
          throw unsafe(
            digest,
            id,
            h.name,
            `hardlink target /${trel} is not a regular file of this package`,
          );
        const staged = this.target(rel);
        faultPoint();
        const from = target.staged;
        // the target must be on disk
        return this.settle().then(() => {
          this.journalled();
          linkSync(from, staged);
          this.put(pkg, { rec: { ...target.rec, path: rel }, staged, layer, mtime });
        });
      }
      case 'character-device':
      case 'block-device':
      case 'fifo': {
        const type = h.type === 'fifo' ? 'p' : h.type === 'block-device' ? 'b' : 'c';
        const rec: FileRecord = { path: rel, type, mode, uid, gid };
        if (type !== 'p') rec.rdev = [h.devmajor, h.devminor];
        if (!isRoot && type !== 'p') {
          rec.skipped = 'device nodes need root';
          this.o.reporter.warn(`${id}: skipped device node /${rel} (not running as root)`);
          this.put(pkg, { rec, layer, mtime });
          return;
        }
        const staged = this.target(rel);
        faultPoint();
        // made with the layer's other nodes by one helper process (settle())
        this.nodes.push({ staged, rel, type, mode, rdev: rec.rdev, uid, gid, mtime });
        this.nodeContext = { package: id, digest };
        this.put(pkg, { rec, staged, layer, mtime });
        return;
      }
    }
  }

  /** A piece of the current entry's body (a view valid during the call). */
  private onData(b: Buffer): void {
    // RING: the bytes stay where they are until the whole body is queued
    if (this.body === PIECES) this.writer!.piece(b.length);
    else if (this.body === FD) {
      this.bodyHash!.update(b);
      let off = 0;
      while (off < b.length) off += writeSync(this.bodyFd, b, off);
    }
  }

  /** The current entry's body is complete: its file is queued or finished, and recorded. */
  private onEnd(c: LayerCtx): void {
    const kind = this.body;
    this.body = SKIP;
    if (kind === SKIP) return;
    const e = this.bodyEntry!;
    this.bodyEntry = null;
    if (kind === RING || kind === PIECES) {
      const rec = e.rec;
      const onHash = (h: string): void => void (rec.sha256 = h);
      if (kind === RING)
        this.writer!.file(e.staged!, this.bodyAt, rec.size!, this.bodyMeta, onHash);
      else this.writer!.end(onHash);
      this.pendXattrs(e, c);
      this.put(c.pkg, e);
      return;
    }
    const fd = this.bodyFd;
    this.bodyFd = -1;
    const meta = this.bodyMeta;
    const calls = metaCalls(meta, this.plainOwner);
    try {
      if (calls.chown) fchownSync(fd, meta.uid, meta.gid);
      if (calls.chmod) fchmodSync(fd, meta.mode); // after chown, which clears setuid/setgid
      futimesSync(fd, meta.mtime, meta.mtime);
    } finally {
      closeSync(fd);
    }
    e.rec.sha256 = this.bodyHash!.digest('hex');
    this.bodyHash = null;
    this.pendXattrs(e, c);
    this.put(c.pkg, e);
  }

  /** The xattrs of the file just read, set with the layer's others by the helper (settle()). */
  private pendXattrs(e: StagedEntry, c: LayerCtx): void {
    if (!this.bodyXattrs) return;
    this.xattrs.push({
      staged: e.staged!,
      rel: e.rec.path,
      id: c.id,
      digest: c.digest,
      xattrs: this.bodyXattrs,
    });
    this.nodeContext = { package: c.id, digest: c.digest }; // what a failed helper run names
  }

  /**
   * A directory's xattrs are set at commit (directories are made there), but tried first on an
   * empty directory in the stage, on the root's filesystem, by the same helper as the files': a
   * value the filesystem refuses for its size fails the install before the root is touched, and
   * EPERM/ENOTSUP/no setfattr is warned once, here (the commit then skips them).
   */
  private probeDirXattrs(e: StagedEntry, c: LayerCtx, xattrs: Record<string, string>): void {
    const probe = this.nextStage();
    mkdirSync(probe, { mode: 0o700 });
    this.xattrs.push({
      staged: probe,
      rel: e.rec.path,
      id: c.id,
      digest: c.digest,
      xattrs,
      onWarn: () => void (e.xattrsWarned = true),
    });
    this.nodeContext = { package: c.id, digest: c.digest };
  }

  /** After a failed read: the file being written is closed (the stage goes with the attempt). */
  private closeBody(): void {
    // the worker created it (removed once the worker is done: stageLayers)
    if (this.body === PIECES && this.bodyEntry?.staged) this.orphan = this.bodyEntry.staged;
    if (this.bodyFd >= 0) {
      try {
        closeSync(this.bodyFd);
      } catch {
        // already closed
      }
      // the half-written file is in no package map yet: a retry of the package (an evicted
      // cache blob fetched again) would find it in its way at its final path (fresh-root mode)
      if (this.bodyEntry?.staged) rmSync(this.bodyEntry.staged, { force: true });
    }
    this.bodyFd = -1;
    this.body = SKIP;
    this.bodyEntry = null;
    this.bodyHash = null;
  }

  /** The worker writer, once this layer has had enough files to be worth a thread. */
  private fileWriter(c: LayerCtx): StageWriter | null {
    if (this.writer) return this.writer;
    if (++this.smallFiles <= this.workerAfter || !this.ring) return null;
    // fresh-root mode: each batch's paths are journalled before the worker gets it
    this.writer = new StageWriter(
      this.ring,
      this.plainOwner,
      this.fresh ? () => this.journalled() : undefined,
      { package: c.id, digest: c.digest },
    );
    return this.writer;
  }

  /** A directory no layer entry describes (a parent of a deeper entry, or one kept for what it holds): 0755, root-owned. */
  private putImplicitDir(pkg: PackageEntries, p: string, layer: number): void {
    this.put(pkg, {
      rec: { path: p, type: 'd', mode: 0o755, uid: 0, gid: 0 },
      layer,
      mtime: 0,
      implicit: true,
    });
  }

  private put(pkg: PackageEntries, e: StagedEntry): void {
    pkg.set(e.rec.path, e);
    this.view.staged.set(e.rec.path, e);
  }

  /** Adds implicit directories for missing parents of a canonical path. */
  private ensureParents(pkg: PackageEntries, rel: string, layer: number): void {
    let i = rel.lastIndexOf('/');
    const missing: string[] = [];
    while (i > 0) {
      const p = rel.slice(0, i);
      if (this.view.lookup(p)) break;
      missing.push(p);
      i = p.lastIndexOf('/');
    }
    for (const p of missing.reverse()) {
      this.mkdirFresh(p);
      this.putImplicitDir(pkg, p, layer);
    }
  }

  /** Removes an entry (and everything below it) from this package. */
  private discard(pkg: PackageEntries, rel: string): void {
    const one = pkg.get(rel);
    if (one && one.rec.type !== 'd') {
      if (one.staged) unlinkSync(one.staged);
      pkg.delete(rel);
      if (this.view.staged.get(rel) === one) this.view.staged.delete(rel);
      return;
    }
    const prefix = rel + '/';
    const dirs: string[] = [];
    for (const [p, e] of pkg) {
      if (p !== rel && !p.startsWith(prefix)) continue;
      if (e.staged) unlinkSync(e.staged);
      else if (e.rec.type === 'd') dirs.push(p);
      pkg.delete(p);
      if (this.view.staged.get(p) === e) this.view.staged.delete(p);
    }
    // the entry replacing it is of a layer at least as high as all of them
    this.removeFreshDirs(pkg, dirs, one?.layer ?? 0);
  }

  /** Whiteouts: hide lower-layer entries of this package at/under a path. */
  private hideUnder(pkg: PackageEntries, rel: string, layer: number, self: boolean): void {
    const prefix = rel === '' ? '' : rel + '/';
    const dirs: string[] = [];
    for (const [p, e] of pkg) {
      if (e.layer >= layer) continue;
      if (!(self && p === rel) && !p.startsWith(prefix)) continue;
      if (e.staged) unlinkSync(e.staged);
      else if (e.rec.type === 'd') dirs.push(p);
      pkg.delete(p);
      if (this.view.staged.get(p) === e) this.view.staged.delete(p);
    }
    this.removeFreshDirs(pkg, dirs, layer);
  }

  /** Everything staged so far is on disk: queued small files, device nodes, xattrs. */
  private async settle(): Promise<void> {
    await this.writer?.flush();
    while (this.nodes.length > 0 || this.xattrs.length > 0) {
      // xattrs go through stdin, whatever their size: a batch only bounds stderr and memory
      const nodes = this.nodes.splice(0, HELPER_BATCH);
      const xattrs = this.xattrs.splice(0, HELPER_BATCH);
      this.runHelper(nodes, xattrs);
    }
  }

  /**
   * mknod for each node and setfattr for each xattr in one `sh` (a process per node cost ≈ 0.1 s
   * each on a loaded machine: spawnSync forks this large process). Node paths are arguments,
   * never script text. The xattrs go to `setfattr --restore` on stdin (a value as an argument
   * hit E2BIG: one argument is at most 128 KiB, all of them 2 MiB), files named relative to the
   * stage, which is the helper's working directory. A failed mknod stops there and is an error.
   * A value the filesystem refuses for its size (ext4 without ea_inode keeps one value within a
   * block; no Linux filesystem takes more than 64 KiB) is an error naming package, layer and
   * path: the file would be installed without it. Any other setfattr failure (a namespace this
   * filesystem or user may not set) is a warning, the DB records the xattrs either way; so is a
   * missing setfattr.
   */
  private runHelper(nodes: PendingNode[], xattrs: PendingXattrs[]): void {
    const lines: string[] = [];
    const args: string[] = [];
    // names in the xattr dump are relative to it: the stage, or the root in fresh-root mode
    const cwd = this.fresh ? this.o.root : `${this.o.stageDir}/stage`;
    if (nodes.length > 0) this.journalled();
    const byName = new Map<string, PendingXattrs>();
    let dump = '';
    const arg = (v: string): string => {
      args.push(v);
      return `"\${${args.length}}"`;
    };
    nodes.forEach((n, i) => {
      const dev = n.rdev ? ` ${arg(String(n.rdev[0]))} ${arg(String(n.rdev[1]))}` : '';
      lines.push(
        `mknod -m ${arg(n.mode.toString(8))} ${arg(n.staged)} ${n.type}${dev} || { echo "cpm-node ${i}" >&2; exit 1; }`,
      );
    });
    if (xattrs.length > 0) {
      for (const x of xattrs) {
        const name = x.staged.startsWith(`${cwd}/`) ? x.staged.slice(cwd.length + 1) : x.staged;
        byName.set(name, x);
        dump += restoreRecord(name, x.xattrs);
      }
      lines.push(
        'if command -v setfattr >/dev/null 2>&1; then setfattr -h --restore=- || :; else echo cpm-no-setfattr >&2; fi',
      );
    }
    const r = childProcess().spawnSync('sh', ['-c', lines.join('\n'), 'sh', ...args], {
      cwd,
      input: dump,
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      // setfattr's messages are matched below: strerror in English
      env: { ...process.env, LC_ALL: 'C' },
    });
    const err = r.stderr ?? '';
    const failed = /cpm-node (\d+)\n?$/.exec(err);
    if (r.status !== 0 || r.error) {
      const n = failed ? nodes[Number(failed[1])] : undefined;
      const why =
        (failed ? err.slice(0, failed.index) : err).trim() ||
        r.error?.message ||
        (r.signal ? `killed by ${r.signal}` : `exit status ${r.status}`);
      // no mknod failed: the helper itself did not run (no sh) or was killed
      const what = n
        ? `mknod /${n.rel}`
        : `the sh helper for ${nodes.length} device nodes and ${xattrs.length} files' xattrs`;
      throw new CpmError('E_IO', `${what} failed: ${why}`, {
        context: { ...this.nodeContext, ...(n ? { path: n.rel } : {}) },
      });
    }
    for (const n of nodes) {
      if (isRoot) lchownSync(n.staged, n.uid, n.gid);
      lutimesSync(n.staged, n.mtime, n.mtime);
    }
    if (xattrs.length > 0) this.xattrResults(err, byName);
  }

  /** setfattr's complaints, one line per file it could not complete: errors and warnings. */
  private xattrResults(err: string, byName: Map<string, PendingXattrs>): void {
    setfattrResults(err, byName, this.o.reporter);
  }
}

/**
 * setfattr's stderr for a `--restore` of `byName` (dump name → what it set): a value refused for
 * its size throws E_IO naming attribute, size, path, package and layer; anything else (EPERM,
 * ENOTSUP, no setfattr: the helper printed cpm-no-setfattr) is a warning.
 */
export function setfattrResults(
  err: string,
  byName: Map<string, PendingXattrs>,
  reporter: Reporter,
): void {
  if (err.includes('cpm-no-setfattr')) {
    reporter.warn(
      `setfattr is not installed: the xattrs of ${byName.size} entries were not set (the DB records them; apt-get install attr)`,
    );
    for (const x of byName.values()) x.onWarn?.();
    return;
  }
  for (const line of err.split('\n')) {
    if (line.trim() === '') continue;
    const m = /^setfattr: (.*): ([^:]+)$/.exec(line);
    const x = m ? byName.get(m[1]!) : undefined;
    if (!x) {
      reporter.warn(`setting xattrs: ${line}`);
      continue;
    }
    const why = m![2]!;
    const attrs = Object.entries(x.xattrs)
      .map(([k, v]) => `${k} (${Buffer.byteLength(v)} bytes)`)
      .join(', ');
    const tooBig = XATTR_SIZE_REFUSALS[why];
    if (!tooBig) {
      reporter.warn(`cannot set xattrs ${attrs} of /${x.rel} (${x.id}): ${why}`);
      x.onWarn?.();
      continue;
    }
    throw new CpmError(
      'E_IO',
      `cannot set xattrs ${attrs} of /${x.rel} from layer ${x.digest} of ${x.id}: the filesystem of the root refuses them (${why})`,
      { hint: tooBig, context: { package: x.id, digest: x.digest, path: x.rel } },
    );
  }
}

/** setfattr messages (strerror, LC_ALL=C) that mean "too large", with what to do about it. */
const XATTR_SIZE_REFUSALS: Record<string, string> = {
  'No space left on device':
    'the value does not fit the filesystem (ext4 keeps xattrs within one block, about 4 KiB, unless made with -O ea_inode): install onto a filesystem that takes large xattrs (XFS, btrfs, tmpfs, ext4 with ea_inode) or free space',
  'Argument list too long':
    'Linux takes xattr values of at most 64 KiB on any filesystem: the package carries a larger one; fix the package',
  'Numerical result out of range':
    'the xattr name or value is longer than Linux or this filesystem allows (names: 255 bytes): fix the package',
};

/** One file's part of a `setfattr --restore` dump. */
export function restoreRecord(name: string, xattrs: Record<string, string>): string {
  let out = `# file: ${restoreQuote(name)}\n`;
  // hex: values such as security.capability are binary
  for (const [k, v] of Object.entries(xattrs))
    out += `${restoreQuote(k)}=0x${Buffer.from(v, 'utf8').toString('hex')}\n`;
  return `${out}\n`;
}

/**
 * A name for `setfattr --restore`: bytes other than plain ones as backslash-octal (its dump
 * format unquotes them), so newlines, "=" and backslashes in names cannot break the format.
 */
function restoreQuote(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9._\-+:@/]/.test(c) ? c : `\\${b.toString(8).padStart(3, '0')}`;
  }
  return out;
}

/** Whether a failed read looks like damaged content (rather than a local fault or a refusal by the sink). */
function damaged(err: LayerReadError): boolean {
  if (err.stage === 'decompress' || err.stage === 'parse') return true;
  const e = err.cause;
  return err.stage === 'entry' && e instanceof CpmError && e.code === 'E_UNSAFE_ENTRY';
}

const NET_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

/** An error of a connection (node:net's errno codes, undici's UND_ERR_*), not of a file. */
function networkFault(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('UND_ERR_') || NET_CODES.has(code));
}

/** The E_DIGEST of a self-checking layer stream read to its end; undefined when it passes. */
async function streamVerdict(layer: LayerSource): Promise<CpmError | undefined> {
  const signal = interruptSignal();
  // an interrupt ends the read at once, also while no bytes come (a stalled server)
  let s: Readable | undefined;
  const stop = (): void => void s?.destroy();
  signal.addEventListener('abort', stop, { once: true });
  try {
    s = await layer.open();
    if (signal.aborted) s.destroy();
    for await (const chunk of s) void chunk; // only the check at the end matters
  } catch (e) {
    if (!signal.aborted && e instanceof CpmError && e.code === 'E_DIGEST') return e;
  } finally {
    signal.removeEventListener('abort', stop);
  }
  return undefined;
}

/** sha256 of the open file (positional reads), or undefined when it cannot be read. */
function hashFile(fd: number): string | undefined {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(1 << 20);
  try {
    for (let at = 0; ;) {
      const n = readSync(fd, buf, 0, buf.length, at);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      at += n;
    }
  } catch {
    return undefined;
  }
  return `sha256:${h.digest('hex')}`;
}

/** A layer whose blob is not the one its digest and size name (E_DIGEST, where it was read). */
function digestMismatch(layer: LayerSource, id: string, what: string): CpmError {
  return new CpmError(
    'E_DIGEST',
    `layer of ${id}${layer.where ? ` (${layer.where})` : ''} ${what}`,
    {
      context: { digest: layer.digest, package: id, ...(layer.where ? { path: layer.where } : {}) },
    },
  );
}

function unsafe(digest: string, id: string, entry: string, why: string): CpmError {
  return new CpmError(
    'E_UNSAFE_ENTRY',
    `refusing ${id}: entry "${entry}" of layer ${digest}: ${why}`,
    {
      context: { digest, package: id, path: entry, reason: why },
      hint: 'the package image is malformed or hostile; nothing was installed',
    },
  );
}

function paxXattrs(pax: Record<string, string> | null): Record<string, string> | null {
  if (!pax) return null;
  let out: Record<string, string> | null = null;
  for (const [k, v] of Object.entries(pax)) {
    if (!k.startsWith('SCHILY.xattr.')) continue;
    (out ??= {})[k.slice('SCHILY.xattr.'.length)] = v;
  }
  if (!out) return null;
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

const isFile = (t: LayerEntry['type']): boolean => t === 'file' || t === 'contiguous-file';
