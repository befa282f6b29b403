/**
 * Build roots as kernel overlays instead of copies (run as root only). The base — an unpacked
 * image, the kept root of a chained build, or a fresh root of final images — is the read-only
 * lower layer and is never copied; the context, `copy:` results and the prelude go to a first
 * upper layer, the steps to a second one stacked on it. The package's delta is then the second
 * upper directory — a walk of what the steps touched, not of the whole root twice — compared
 * entry by entry with the layers below (copy-up of an unchanged file is not a change).
 *
 * The mounts live in a private mount namespace held by one waiting process for the run, so
 * nothing is mounted on the host and a crash leaves no mount behind (the namespace dies with
 * its holder). cpm reaches the merged trees through /proc/<holder>/root; bwrap enters the
 * namespace through nsenter. bwrap 0.8 (Debian bookworm's) has no --overlay of its own.
 */
import { spawn } from 'node:child_process';
import { promises as fsp, type BigIntStats } from 'node:fs';
import path from 'node:path';
import type { Entry } from './delta.js';
import { NamespaceHolder } from './ns-holder.js';

/** A private mount namespace (root only) where build roots are mounted as overlays. */
export class MountNamespace {
  private constructor(private readonly holder: NamespaceHolder) {}

  get pid(): number {
    return this.holder.pid!;
  }

  /** The namespace file nsenter takes (`--mount=`). */
  get nsFile(): string {
    return `/proc/${this.pid}/ns/mnt`;
  }

  /** Where cpm reads and writes `p` (an absolute path inside the namespace). */
  view(p: string): string {
    return `/proc/${this.pid}/root${p}`;
  }

  /**
   * Opens the namespace and proves an overlay mounts there (a probe under `scratch`). Undefined
   * when not root, when `unshare`/`nsenter` are missing, or when the kernel or the filesystem
   * of `scratch` refuses overlays (e.g. a cache on overlayfs or tmpfs without xattrs): the
   * caller falls back to copies and walks. `why` receives the reason.
   */
  static async open(
    scratch: string,
    why: (r: string) => void,
  ): Promise<MountNamespace | undefined> {
    if (process.getuid?.() !== 0) {
      why('not root (rootless builds copy the root and walk it)');
      return undefined;
    }
    // The namespace with its mounts goes away with cpm (ns-holder.ts).
    const holder = await NamespaceHolder.start(['--mount', '--propagation', 'private'], 'mnt');
    if (!holder) {
      why('unshare is not available');
      return undefined;
    }
    holder.detach();
    const mns = new MountNamespace(holder);
    if (!holder.entered) {
      // Still in cpm's own namespace (unshare refused or slow): a mount there would be on the host.
      why('unshare did not enter a new mount namespace');
      mns.close();
      return undefined;
    }
    const probe = await fsp.mkdtemp(path.join(scratch, 'overlay-probe-'));
    try {
      const d = (n: string): string => path.join(probe, n);
      await Promise.all(['l', 'u', 'w', 'm'].map((n) => fsp.mkdir(d(n))));
      await fsp.writeFile(d('l/f'), 'x');
      await mns.mount([d('l')], d('u'), d('w'), d('m'));
      const seen = await fsp.readFile(mns.view(d('m/f')), 'utf8').catch(() => '');
      await mns.unmount(d('m'));
      if (seen !== 'x') throw new Error('the merged tree does not show the lower layer');
      return mns;
    } catch (e) {
      why((e as Error).message);
      mns.close();
      return undefined;
    } finally {
      await fsp.rm(probe, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /** Mounts an overlay at `merged`: `lowers` top first; without `upper`, read-only. */
  async mount(
    lowers: string[],
    upper: string | undefined,
    work: string | undefined,
    merged: string,
  ): Promise<void> {
    for (const p of [...lowers, upper ?? '', work ?? '', merged])
      if (/[,:\\\n]/.test(p)) throw new Error(`path ${p} cannot be an overlay option`);
    let o = `lowerdir=${lowers.join(':')}`;
    if (upper && work) o += `,upperdir=${upper},workdir=${work}`;
    await this.nsenter(['mount', '-t', 'overlay', 'overlay', '-o', o, merged]);
  }

  async unmount(merged: string): Promise<void> {
    await this.nsenter(['umount', merged]);
  }

  /** The argv prefix that runs a command inside the namespace. */
  prefix(): string[] {
    return ['nsenter', `--mount=${this.nsFile}`];
  }

  private nsenter(args: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = spawn('nsenter', [`--mount=${this.nsFile}`, '--', ...args], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      child.once('error', (e) => reject(e));
      child.once('close', (code) =>
        code === 0
          ? resolve()
          : reject(new Error(`${args.join(' ')}: ${err.trim() || `exit ${code}`}`)),
      );
    });
  }

  close(): void {
    this.holder.close();
  }
}

function kindOf(st: BigIntStats): Entry['kind'] {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

/** An overlay whiteout (a 0:0 character device): a deletion, not an entry. */
function isWhiteout(st: BigIntStats): boolean {
  return st.isCharacterDevice() && st.rdev === 0n;
}

/** What the walk compares, without the inode (a copy-up gives a file a new one). */
async function sigOf(abs: string, st: BigIntStats): Promise<string> {
  const kind = kindOf(st);
  let sig = `${kind}:${st.mode}:${st.uid}:${st.gid}`;
  if (kind === 'file') sig += `:${st.size}:${st.mtimeNs}`;
  else if (kind === 'symlink') sig += `:${await fsp.readlink(abs)}`;
  else if (kind === 'other') sig += `:${st.rdev}`;
  return sig;
}

/**
 * The steps' delta: entries of the upper directory `upper` that are new or differ from the same
 * path in `before` (the merged tree below it, read through the namespace view). Whiteouts
 * (deletions) are not represented, as with the walk. `skip` holds top-level names not descended.
 */
export async function upperDelta(
  upper: string,
  before: string,
  skip: ReadonlySet<string>,
): Promise<Entry[]> {
  const out: Entry[] = [];
  const visit = async (rel: string): Promise<void> => {
    const dirents = await fsp.readdir(rel ? path.join(upper, rel) : upper);
    await Promise.all(
      dirents.map(async (name) => {
        const r = rel ? `${rel}/${name}` : name;
        const abs = path.join(upper, r);
        const st = await fsp.lstat(abs, { bigint: true });
        if (isWhiteout(st)) return;
        const sig = await sigOf(abs, st);
        const prevAbs = path.join(before, r);
        const prev = await fsp.lstat(prevAbs, { bigint: true }).catch(() => undefined);
        const prevSig = prev ? await sigOf(prevAbs, prev) : undefined;
        const kind = kindOf(st);
        if (prevSig !== sig) out.push({ rel: r, kind, sig });
        if (kind === 'dir' && !(rel === '' && skip.has(name))) await visit(r);
      }),
    );
  };
  await visit('');
  return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

/**
 * Where `rel` (relative to the merged tree) really is: the topmost of `layers` (top first) that
 * has it. Used for entries found by walking the merged tree, so the path exists in one of them;
 * hard links are made from there (a link from the merged tree would cross the mount).
 */
export async function layerOf(layers: readonly string[], rel: string): Promise<string> {
  for (const l of layers) {
    const p = path.join(l, rel);
    const st = await fsp.lstat(p, { bigint: true }).catch(() => undefined);
    if (st && !isWhiteout(st)) return p;
  }
  throw new Error(`${rel} is in none of the overlay's layers`);
}
