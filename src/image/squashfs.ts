/**
 * `cpm image squashfs`: the root as a squashfs image, built by the well-kept squashfs tools.
 * Backends, in order of preference:
 *  - gensquashfs (squashfs-tools-ng) with a pack file from our walk: it reads the files itself
 *    (see gensquashfs.ts); 'auto' tries it only with --fixed-mtime and takes it only when the pack
 *    file describes the root exactly (one mtime for every entry, no xattrs);
 *  - mksquashfs reading the root directory itself (mksquashfs-dir), started at once while we walk
 *    beside it; 'auto' keeps its image only when the disk holds every entry exactly as the
 *    records say (an install run as root, or a root without records; no excludes, no xattrs),
 *    else stops it and goes on to the next;
 *  - tar2sqfs (squashfs-tools-ng) fed with our reproducible tar stream;
 *  - mksquashfs -tar (squashfs-tools ≥ 4.5 with tar input) fed with the same stream;
 *  - mksquashfs on the directory plus pseudo-file definitions that carry owners, modes, times
 *    and special files from the overlay (older squashfs-tools).
 * With SOURCE_DATE_EPOCH the same root gives a byte-identical image on each backend.
 */
import { spawnSync } from 'node:child_process';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { compileExcludes } from './exclude.js';
import { describePack, packDefaults, type PackResult } from './gensquashfs.js';
import { rootfsTarSource, type RootfsTarOptions } from './rootfs-tar.js';
import { RootWalker, type RootEntry, type RootInfo } from './rootfs-walk.js';
import { readXattrs, type XattrMap } from './xattrs.js';
import { findTool, runTool } from './tools.js';
import {
  SQUASHFS_COMPRESSORS,
  type SquashfsBackend,
  type SquashfsCompressor,
} from './squashfs-options.js';

export {
  SQUASHFS_BACKENDS,
  SQUASHFS_COMPRESSORS,
  type SquashfsBackend,
  type SquashfsCompressor,
} from './squashfs-options.js';

export interface SquashfsOptions extends RootfsTarOptions {
  comp?: SquashfsCompressor;
  /** Bytes, a power of two between 4 KiB and 1 MiB (default 128 KiB). */
  blockSize?: number;
  /** Compressor threads (default: available CPUs). */
  jobs?: number;
  /** 'auto' picks the first installed backend in the order above (gensquashfs only if exact). */
  backend?: SquashfsBackend | 'auto';
}

export interface SquashfsResult {
  backend: SquashfsBackend;
  output: string;
  bytes: number;
  entries: number;
  /** Why 'auto' passed over gensquashfs or mksquashfs-dir (installed, but not exact here). */
  skipped?: string;
}

const MISSING_HINT =
  'install squashfs-tools-ng (gensquashfs, tar2sqfs) or squashfs-tools (mksquashfs): apt-get install squashfs-tools-ng';

let mksquashfsTarCache: boolean | undefined;
/** mksquashfs grew tar input in 4.5.x/4.6; older ones need the pseudo-file backend. */
function mksquashfsHasTar(bin: string): boolean {
  if (mksquashfsTarCache === undefined) {
    const r = spawnSync(bin, ['-help'], { encoding: 'utf8' });
    mksquashfsTarCache = /^-tar\s/m.test(`${r.stdout ?? ''}${r.stderr ?? ''}`);
  }
  return mksquashfsTarCache;
}

/**
 * Which backend `auto` resolves to on this machine (gensquashfs is tried first when `exact` is
 * not false; writeSquashfs passes false once the pack file turned out inexact), or a CpmError
 * naming what to install.
 */
export function pickBackend(
  wanted: SquashfsBackend | 'auto' = 'auto',
  gensquashfsOk = true,
): {
  backend: SquashfsBackend;
  bin: string;
} {
  if (wanted === 'gensquashfs' || (wanted === 'auto' && gensquashfsOk)) {
    const gensquashfs = findTool('gensquashfs');
    if (gensquashfs) return { backend: 'gensquashfs', bin: gensquashfs };
    if (wanted === 'gensquashfs') {
      throw new CpmError('E_TOOL_MISSING', 'gensquashfs is not installed', {
        hint: 'apt-get install squashfs-tools-ng',
      });
    }
  }
  const tar2sqfs = findTool('tar2sqfs');
  const mksquashfs = findTool('mksquashfs');
  if (wanted === 'tar2sqfs' || (wanted === 'auto' && tar2sqfs)) {
    if (!tar2sqfs) {
      throw new CpmError('E_TOOL_MISSING', 'tar2sqfs is not installed', {
        hint: 'apt-get install squashfs-tools-ng',
      });
    }
    return { backend: 'tar2sqfs', bin: tar2sqfs };
  }
  if (!mksquashfs) {
    throw new CpmError(
      'E_TOOL_MISSING',
      wanted === 'auto'
        ? 'none of gensquashfs, tar2sqfs and mksquashfs is installed'
        : 'mksquashfs is not installed',
      { hint: wanted === 'auto' ? MISSING_HINT : 'apt-get install squashfs-tools' },
    );
  }
  if (wanted === 'mksquashfs-pseudo' || wanted === 'mksquashfs-dir') {
    return { backend: wanted, bin: mksquashfs };
  }
  if (mksquashfsHasTar(mksquashfs)) return { backend: 'mksquashfs-tar', bin: mksquashfs };
  if (wanted === 'mksquashfs-tar') {
    throw new CpmError('E_TOOL_MISSING', 'this mksquashfs cannot read tar input (-tar)', {
      hint: 'use --backend mksquashfs-pseudo or install squashfs-tools-ng',
    });
  }
  return { backend: 'mksquashfs-pseudo', bin: mksquashfs };
}

function checkBlockSize(n: number): void {
  if (!Number.isInteger(n) || n < 4096 || n > 1 << 20 || (n & (n - 1)) !== 0) {
    throw new CpmError('E_USAGE', `block size ${n} must be a power of two from 4096 to 1048576`);
  }
}

/**
 * mksquashfs refuses SOURCE_DATE_EPOCH together with -mkfs-time, so the tools get exactly the
 * epoch we decided on (or none) rather than whatever the caller's environment holds.
 */
function toolEnv(sourceDateEpoch?: number): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.SOURCE_DATE_EPOCH;
  if (sourceDateEpoch !== undefined) env.SOURCE_DATE_EPOCH = String(sourceDateEpoch);
  return env;
}

export async function writeSquashfs(
  root: string,
  outFile: string,
  opts: SquashfsOptions = {},
): Promise<SquashfsResult> {
  const comp = opts.comp ?? 'zstd';
  if (!SQUASHFS_COMPRESSORS.includes(comp)) {
    throw new CpmError('E_USAGE', `unknown squashfs compressor "${comp}"`, {
      hint: `use one of ${SQUASHFS_COMPRESSORS.join(', ')}`,
    });
  }
  const blockSize = opts.blockSize ?? 131072;
  checkBlockSize(blockSize);
  const jobs = Math.max(1, opts.jobs ?? os.availableParallelism());
  const auto = (opts.backend ?? 'auto') === 'auto';
  let { backend, bin } = pickBackend(opts.backend);
  // A pack file has one mtime for every entry: without --fixed-mtime 'auto' does not try it.
  if (auto && backend === 'gensquashfs' && opts.fixedMtime === undefined) {
    ({ backend, bin } = pickBackend('auto', false));
  }
  // The tools that read the directory themselves come first where they can be exact.
  const mksquashfsBin = auto ? findTool('mksquashfs') : undefined;
  const output = path.resolve(outFile);
  await fsp.rm(output, { force: true });
  const walker = new RootWalker(root, opts);
  const info = await walker.rootInfo();
  // Without SOURCE_DATE_EPOCH the image records "now" like any other build.
  const mkfsTime = opts.sourceDateEpoch ?? Math.floor(Date.now() / 1000);
  let entries: number;
  const skipped: string[] = [];
  const result = async (e: number): Promise<SquashfsResult> => {
    const { size } = await fsp.stat(output);
    return {
      backend,
      output,
      bytes: size,
      entries: e,
      ...(skipped.length > 0 ? { skipped: skipped.join('; ') } : {}),
    };
  };
  if (backend === 'gensquashfs') {
    const pack = await gensquashfsBuild(bin, walker.root, output, opts, info, [
      '-q',
      '-f',
      '-c',
      comp,
      '-b',
      String(blockSize),
      '-j',
      String(jobs),
      '-d',
      packDefaults(info),
    ]);
    if (pack.ok) {
      await setSuperblockTime(output, mkfsTime);
      return result(pack.entries);
    }
    if (opts.backend === 'gensquashfs') {
      throw new CpmError('E_IMAGE', `gensquashfs cannot describe this root: ${pack.reason}`, {
        hint: 'a pack file has one mtime for all entries and no xattrs: use --fixed-mtime (and --no-xattrs), or --backend tar2sqfs',
        context: { path: walker.root },
      });
    }
    skipped.push(`gensquashfs: ${pack.reason}`);
    ({ backend, bin } = pickBackend('auto', false));
  }
  // With a fixed mtime mksquashfs sets every time itself (-all-time) and refuses
  // SOURCE_DATE_EPOCH next to it; without, the epoch goes in the environment.
  const fixed = opts.fixedMtime;
  const mksqTimes =
    fixed === undefined
      ? { env: toolEnv(opts.sourceDateEpoch), args: [] as string[], mkfs: undefined }
      : { env: toolEnv(undefined), args: ['-all-time', String(fixed)], mkfs: mkfsTime };
  const mkArgs = [
    ...mksquashfsCommon(comp, blockSize, jobs, info, mksqTimes.mkfs),
    ...mksqTimes.args,
    ...(opts.xattrs === false ? ['-no-xattrs'] : []),
  ];
  if (backend === 'mksquashfs-dir' || (mksquashfsBin && !opts.excludes?.length)) {
    const dir = await mksquashfsDir(backend === 'mksquashfs-dir' ? bin : mksquashfsBin!, {
      root: walker.root,
      output,
      opts,
      args: mkArgs,
      env: mksqTimes.env,
    });
    if (dir.ok) {
      backend = 'mksquashfs-dir';
      return result(dir.entries);
    }
    if (backend === 'mksquashfs-dir' && dir.error !== undefined) throw dir.error;
    if (backend === 'mksquashfs-dir') {
      throw new CpmError('E_IMAGE', `mksquashfs cannot read this root as it is: ${dir.reason}`, {
        hint: 'the disk must hold every entry as the records say (an install run as root does); use --backend tar2sqfs',
        context: { path: walker.root },
      });
    }
    skipped.push(`mksquashfs-dir: ${dir.reason}`);
  }
  if (backend === 'tar2sqfs') {
    const src = rootfsTarSource(root, opts, walker);
    // tar2sqfs reads the mode as a decimal number.
    const defaults = `uid=${info.uid},gid=${info.gid},mode=${info.mode},mtime=${info.mtime}`;
    await runTool(
      bin,
      ['-q', '-f', '-c', comp, '-b', String(blockSize), '-j', String(jobs), '-d', defaults, output],
      { stdin: (w) => src.pipeTo(w), env: toolEnv(undefined) },
    );
    entries = src.stats.entries;
    // tar2sqfs stamps the superblock with 0; set the mkfs time like mksquashfs -mkfs-time does.
    await setSuperblockTime(output, mkfsTime);
  } else if (backend === 'mksquashfs-tar') {
    const src = rootfsTarSource(root, opts, walker);
    // In tar mode -root-time is ignored; SOURCE_DATE_EPOCH sets root and mkfs time instead.
    await runTool(
      bin,
      [
        '-',
        output,
        '-tar',
        ...mksquashfsCommon(comp, blockSize, jobs, info, mksqTimes.mkfs),
        ...mksqTimes.args,
      ],
      { stdin: (w) => src.pipeTo(w), env: mksqTimes.env },
    );
    entries = src.stats.entries;
  } else {
    entries = await mksquashfsPseudo(bin, root, output, walker, opts, {
      comp,
      blockSize,
      jobs,
      info,
      mkfsTime,
      times: mksqTimes,
    });
  }
  return result(entries);
}

/**
 * mksquashfs reading the root directory itself, started at once while we check the root beside
 * it: when the disk is exact (every entry as the records say, see RootWalker.diskCheck), the
 * tool's image is the image, and no file byte passed through Node. When the check finds a
 * difference the tool is stopped and its partial output removed.
 */
async function mksquashfsDir(
  bin: string,
  p: {
    root: string;
    output: string;
    opts: SquashfsOptions;
    args: string[];
    env: NodeJS.ProcessEnv;
  },
): Promise<{ ok: true; entries: number } | { ok: false; reason: string; error?: unknown }> {
  const ac = new AbortController();
  // Settled either way, so a tool failing during the walk is not an unhandled rejection.
  const tool = runTool(bin, [p.root, p.output, ...p.args], { env: p.env, signal: ac.signal }).then(
    () => undefined,
    (e: unknown) => ({ e }),
  );
  let done = false;
  try {
    const check = await new RootWalker(p.root, p.opts).diskCheck();
    if (check.inexact !== undefined) {
      ac.abort();
      await tool;
      return { ok: false, reason: check.inexact };
    }
    const entries = check.entries;
    const failed = await tool;
    if (failed) {
      return {
        ok: false,
        reason: (failed.e as Error).message ?? String(failed.e),
        error: failed.e,
      };
    }
    done = true;
    return { ok: true, entries };
  } finally {
    ac.abort();
    if (!done) {
      await tool;
      await fsp.rm(p.output, { force: true });
    }
  }
}

/**
 * Runs gensquashfs on a pack file that is written while we walk: the pack file is a fifo, so
 * the tool parses it (≈0.2 s CPU for 25k entries) on the other core while the walk goes on. The
 * tool starts reading files only at the end of the pack file, so when the walk finds something
 * a pack file cannot say, killing it loses nothing; then nothing is built and the reason comes
 * back. xattrs on disk (getfattr) are checked before the pack file ends.
 */
async function gensquashfsBuild(
  bin: string,
  root: string,
  output: string,
  opts: SquashfsOptions,
  info: RootInfo,
  args: string[],
): Promise<PackResult> {
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-gensquashfs-'));
  const fifo = path.join(tmp, 'pack');
  const ac = new AbortController();
  let fh: fsp.FileHandle | undefined;
  let built = false;
  try {
    const mk = spawnSync('mkfifo', ['-m', '600', fifo], { encoding: 'utf8' });
    if (mk.status !== 0) {
      throw new CpmError('E_IMAGE', `cannot make a fifo for gensquashfs: ${mk.stderr || mk.error}`);
    }
    // getfattr (xattrs on disk) runs beside the walk, but only once the walk looks exact: most
    // roots show an own mtime within the first entries, and then its work would be wasted.
    let xattrs: Promise<{ m: XattrMap | undefined } | { e: unknown }> | undefined;
    const readDiskXattrs = () =>
      (xattrs ??= readXattrs(root).then(
        (m) => ({ m }),
        (e: unknown) => ({ e }),
      ));
    // Settled either way, so an early failure is not an unhandled rejection.
    const tool = runTool(bin, [...args, '-F', fifo, '-D', root, output], {
      env: toolEnv(undefined),
      signal: ac.signal,
    }).then(
      () => undefined,
      (e: unknown) => ({ e }),
    );
    // Opening a fifo for writing waits for the reader; if the tool fails before it opens the
    // fifo, open the read end ourselves so that this open returns.
    const opening = fsp.open(fifo, 'w');
    const first = await Promise.race([opening, tool]);
    if (first === undefined || 'e' in first) {
      const rd = await fsp.open(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
      await (await opening).close();
      await rd.close();
      throw first
        ? first.e
        : new CpmError('E_IMAGE', 'gensquashfs ended before reading its pack file');
    }
    const handle = (fh = first);
    let pack: PackResult;
    try {
      const walk = new RootWalker(root, { ...opts, xattrs: false });
      pack = await describePack(
        walk.entries(),
        info,
        async (text) => {
          await handle.write(text);
        },
        opts.xattrs === false ? undefined : { at: 1000, then: readDiskXattrs },
      );
      if (pack.ok && opts.xattrs !== false) {
        const x = await readDiskXattrs();
        if ('e' in x) throw x.e;
        pack = xattrBlocker(x.m, opts, pack.entries) ?? pack;
      }
    } catch (e) {
      // A walk error: stop the tool. A write error (EPIPE): the tool is exiting and says why.
      if (e instanceof CpmError) throw e;
      const failed = await tool;
      throw failed ? failed.e : e;
    }
    if (!pack.ok) {
      ac.abort();
      await tool;
      return pack;
    }
    fh = undefined;
    await handle.close();
    const done = await tool;
    if (done) throw done.e;
    built = true;
    return pack;
  } finally {
    ac.abort();
    await fh?.close().catch(() => undefined);
    // gensquashfs creates the output first: leave no partial image behind.
    if (!built) await fsp.rm(output, { force: true });
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

/** The first path in the image with xattrs on disk (a pack file cannot carry them). */
function xattrBlocker(
  map: XattrMap | undefined,
  opts: SquashfsOptions,
  entries: number,
): PackResult | undefined {
  if (!map) {
    opts.onWarning?.('getfattr not found (package "attr"): xattrs on disk are not copied');
    return undefined;
  }
  const excluded = compileExcludes(opts.excludes ?? []);
  for (const [rel, attrs] of map) {
    if (rel === '' || Object.keys(attrs).length === 0) continue;
    const parts = rel.split('/');
    const inImage = parts.every((_, i) => !excluded(parts.slice(0, i + 1).join('/')));
    if (inImage) return { ok: false, reason: `${rel} has xattrs`, entries };
  }
  return undefined;
}

function mksquashfsCommon(
  comp: SquashfsCompressor,
  blockSize: number,
  jobs: number,
  info: { uid: number; gid: number; mode: number; mtime: number },
  mkfsTime: number | undefined,
): string[] {
  // The pseudo backend passes SOURCE_DATE_EPOCH in the environment instead (see there).
  const times =
    mkfsTime === undefined
      ? []
      : ['-mkfs-time', String(mkfsTime), '-root-time', String(info.mtime)];
  return [
    '-noappend',
    '-quiet',
    '-no-progress',
    '-reproducible',
    '-comp',
    comp,
    '-b',
    String(blockSize),
    '-processors',
    String(jobs),
    ...times,
    '-root-mode',
    info.mode.toString(8),
    '-root-uid',
    String(info.uid),
    '-root-gid',
    String(info.gid),
  ];
}

/** squashfs superblock: modification_time is a little-endian u32 at offset 8. */
async function setSuperblockTime(file: string, seconds: number): Promise<void> {
  const fh = await fsp.open(file, 'r+');
  try {
    const buf = Buffer.alloc(4);
    buf.writeUInt32LE(seconds >>> 0);
    await fh.write(buf, 0, 4, 8);
  } finally {
    await fh.close();
  }
}

/** Pseudo-file names: mksquashfs splits on whitespace and honours backslash escapes. */
export function pseudoName(rel: string): string {
  return rel.replace(/[\\\s"]/g, (c) => `\\${c}`);
}

/**
 * One pseudo definition for an entry; `onDisk` says whether mksquashfs will find it itself.
 * Directories on disk get none: mksquashfs 4.5 drops the children of a directory that has an
 * M definition, so their owners and modes go through actions instead (dirActions).
 */
export function pseudoLine(e: RootEntry, onDisk: boolean): string | undefined {
  const name = pseudoName(e.path);
  const attrs = `${e.mtime} ${e.mode.toString(8)} ${e.uid} ${e.gid}`;
  if (onDisk) return e.type === 'hardlink' || e.type === 'dir' ? undefined : `${name} M ${attrs}`;
  switch (e.type) {
    case 'dir':
      return `${name} D ${attrs}`;
    case 'char':
      return `${name} C ${attrs} ${e.devmajor} ${e.devminor}`;
    case 'block':
      return `${name} B ${attrs} ${e.devmajor} ${e.devminor}`;
    case 'fifo':
      return `${name} I ${attrs} f`;
    case 'symlink':
      return `${name} S ${attrs} ${e.linkTarget}`;
    default:
      return undefined;
  }
}

/** mksquashfs action lines that give an on-disk directory the owner and mode the walk decided. */
export function dirActions(
  e: RootEntry,
  disk: { uid: number; gid: number; mode: number },
): string[] {
  const pattern = `"${e.path.replace(/[\\*?[\]"]/g, (c) => `\\${c}`)}"`;
  const out: string[] = [];
  if (e.uid !== disk.uid || e.gid !== disk.gid)
    out.push(`guid(${e.uid},${e.gid})@pathname(${pattern})`);
  if (e.mode !== (disk.mode & 0o7777))
    out.push(`chmod(${e.mode.toString(8).padStart(4, '0')})@pathname(${pattern})`);
  return out;
}

async function mksquashfsPseudo(
  bin: string,
  root: string,
  output: string,
  walker: RootWalker,
  opts: SquashfsOptions,
  p: {
    comp: SquashfsCompressor;
    blockSize: number;
    jobs: number;
    info: { uid: number; gid: number; mode: number; mtime: number };
    mkfsTime: number;
    times: { env: NodeJS.ProcessEnv; args: string[]; mkfs: number | undefined };
  },
): Promise<number> {
  const lines: string[] = [];
  const actions: string[] = [];
  // Entries mksquashfs must not take from disk: placeholders for special files.
  const replaced: string[] = [];
  let entries = 0;
  for await (const e of walker.entries()) {
    entries++;
    const abs = path.join(walker.root, e.path);
    const st = await fsp.lstat(abs).catch(() => undefined);
    const diskIsSame =
      st !== undefined &&
      !((e.type === 'char' || e.type === 'block' || e.type === 'fifo') && st.isFile());
    if (st && !diskIsSame) replaced.push(e.path);
    const line = pseudoLine(e, diskIsSame);
    if (line) lines.push(line);
    if (st && diskIsSame && e.type === 'dir') actions.push(...dirActions(e, st));
    // mksquashfs copies on-disk xattrs itself, but pseudo files cannot add the overlay's.
    const overlayXattrs = opts.overlay?.(e.path)?.xattrs;
    if (overlayXattrs && Object.keys(overlayXattrs).length > 0) {
      opts.onWarning?.(`mksquashfs pseudo files cannot carry xattrs: dropped on ${e.path}`);
    }
  }
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-mksquashfs-'));
  try {
    const pf = path.join(tmp, 'pseudo');
    const ef = path.join(tmp, 'exclude');
    await fsp.writeFile(pf, lines.join('\n') + '\n');
    const af = path.join(tmp, 'actions');
    await fsp.writeFile(ef, [...walker.excludedPaths, ...replaced].join('\n') + '\n');
    await fsp.writeFile(af, actions.join('\n') + '\n');
    await runTool(
      bin,
      [
        path.resolve(root),
        output,
        // SOURCE_DATE_EPOCH (env) clamps the directory times that pseudo files cannot set.
        ...mksquashfsCommon(p.comp, p.blockSize, p.jobs, p.info, p.times.mkfs),
        ...p.times.args,
        '-pf',
        pf,
        '-ef',
        ef,
        ...(actions.length > 0 ? ['-action-file', af] : []),
      ],
      { env: p.times.env },
    );
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
  return entries;
}
