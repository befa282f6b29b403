/**
 * `cpm reclaim`: adopt files already present in a root (copied in by hand, or by another tool)
 * as owned by the repository packages they match. A package is adopted when every file, symlink
 * and directory of its layers is on disk with the same sha256 / target / type; it is then
 * recorded in the DB as installed, without writing a single file under the root.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, type Stats, lstatSync, readlinkSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { CpmError } from '../errors.js';
import { satisfiesDep } from '../package/match.js';
import { packageId } from '../package/package.js';
import { InstalledDb } from '../rootfs/db.js';
import { LayerReadError, readLayer, type LayerEntry } from '../rootfs/layer-reader.js';
import {
  DiskView,
  UnsafePathError,
  entryComponents,
  resolveInRoot,
  typeOfMode,
} from '../rootfs/fs-path.js';
import type { OperationContext } from './operations.js';
import type { Reporter } from '../util/progress.js';
import { openPackageSource } from './source.js';
import { applyTransaction, configDirs } from '../rootfs/transaction.js';
import type { FileRecord, InstalledPackage } from '../rootfs/types.js';

export interface ReclaimOptions {
  /** Report what would be adopted, change nothing. */
  dryRun?: boolean;
  noWait?: boolean;
  reporter?: Reporter;
}

export interface ReclaimResult {
  /** Package ids recorded as installed (or that would be, with dryRun). */
  adopted: string[];
  /** Packages with some but not all of their files present: not adopted. */
  partial: Array<{ id: string; matched: number; total: number }>;
  /** Packages whose layers were compared. */
  checked: number;
}

function sha256File(p: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(p)
      .on('data', (c) => h.update(c))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

/** The entries of one layer as file records (regular files hashed while streaming). */
async function layerRecords(
  open: () => Promise<Readable>,
  mediaType: string,
): Promise<FileRecord[]> {
  const src = await open();
  const out: FileRecord[] = [];
  const byName = new Map<string, FileRecord>();
  let cur: { h: LayerEntry; hash: Hash; size: number } | null = null;
  const read = readLayer(
    src,
    { mediaType },
    {
      entry: (h) => void (cur = { h, hash: createHash('sha256'), size: 0 }),
      data: (c) => {
        cur!.hash.update(c);
        cur!.size += c.length;
      },
      end: () => {
        const { h, hash, size } = cur!;
        cur = null;
        const comps = entryComponents(h.name);
        const name = comps.join('/');
        const base = comps[comps.length - 1] ?? '';
        if (name === '' || base.startsWith('.wh.')) return;
        const rec: FileRecord = {
          path: name,
          type: 'f',
          mode: h.mode & 0o7777,
          uid: h.uid,
          gid: h.gid,
        };
        if (h.type === 'directory') rec.type = 'd';
        else if (h.type === 'symlink') {
          rec.type = 'l';
          rec.target = h.linkname;
        } else if (h.type === 'link') {
          const t = byName.get(entryComponents(h.linkname).join('/'));
          if (!t) throw new Error(`${h.name}: hardlink to an unknown entry`);
          Object.assign(rec, { size: t.size, sha256: t.sha256 });
        } else if (h.type === 'file' || h.type === 'contiguous-file') {
          rec.size = size;
          rec.sha256 = hash.digest('hex');
        } else return; // devices and fifos: nothing to compare
        byName.set(name, rec);
        out.push(rec);
      },
    },
  );
  await read.catch((e: unknown) => {
    throw e instanceof LayerReadError ? e.cause : e;
  });
  return out;
}

/**
 * The canonical root-relative path when the record is on disk as the package ships it (parents
 * resolved through the root's own symlinks, e.g. bin → usr/bin, as extraction records them).
 */
async function matches(root: string, view: DiskView, f: FileRecord): Promise<string | null> {
  let rel: string;
  try {
    rel = resolveInRoot(view, f.path.split('/'), false);
  } catch (e) {
    if (e instanceof UnsafePathError) return null;
    throw e;
  }
  let st: Stats;
  try {
    st = lstatSync(`${root}/${rel}`);
  } catch {
    return null;
  }
  const t = typeOfMode(st.mode);
  if (f.type === 'd') return t === 'd' ? rel : null;
  if (t !== f.type) return null;
  if (f.type === 'l') return readlinkSync(`${root}/${rel}`) === f.target ? rel : null;
  const ok = st.size === f.size && (await sha256File(`${root}/${rel}`)) === f.sha256;
  return ok ? rel : null;
}

/**
 * Reasons for adopted packages: explicit for the tops (nothing adopted requires them), dependency
 * for what they reach. A dependency cycle without a top (cos-setup ⇄ cloud-config-defaults) gets
 * as top its member requiring the most adopted packages (then the lowest id), the likeliest
 * thing a person asked for.
 */
function markReasons(adopt: InstalledPackage[]): void {
  const deps = new Map(
    adopt.map((p) => [
      p,
      adopt.filter((q) => q !== p && p.spec.requires.some((d) => satisfiesDep(q.spec, d))),
    ]),
  );
  const reached = new Set<InstalledPackage>();
  const reach = (p: InstalledPackage): void => {
    for (const q of deps.get(p)!)
      if (!reached.has(q)) {
        reached.add(q);
        reach(q);
      }
  };
  const tops = adopt.filter((p) => !adopt.some((q) => deps.get(q)!.includes(p)));
  for (const t of tops) reach(t);
  for (;;) {
    const rest = adopt.filter((p) => !tops.includes(p) && !reached.has(p));
    if (rest.length === 0) break;
    rest.sort((a, b) => deps.get(b)!.length - deps.get(a)!.length || (a.id < b.id ? -1 : 1));
    tops.push(rest[0]!);
    reach(rest[0]!);
  }
  for (const p of adopt) p.reason = tops.includes(p) ? 'explicit' : 'dependency';
}

/** Adopts matching packages of the source into the root's DB (one transaction). */
export async function reclaim(
  ctx: OperationContext,
  opts: ReclaimOptions = {},
): Promise<ReclaimResult> {
  const db = InstalledDb.load(ctx.dbDir);
  const repos = await openPackageSource(ctx.config, ctx.source, {
    ...(ctx.plainHttp !== undefined ? { plainHttp: ctx.plainHttp } : {}),
  });
  const result: ReclaimResult = { adopted: [], partial: [], checked: 0 };
  const adopt: InstalledPackage[] = [];
  const isRoot = process.getuid?.() === 0;
  try {
    const view = new DiskView(ctx.root);
    for (const fam of repos.universe.families()) {
      if (db.find(fam)) continue;
      // newest first: the first version whose files are all present wins
      for (const spec of repos.universe.versions(fam)) {
        const id = packageId(spec);
        const loc = await repos.locate(id);
        if (loc.layers.length === 0) continue; // metadata-only: nothing on disk to match
        opts.reporter?.step(`compare ${id}`);
        result.checked++;
        const files = new Map<string, FileRecord>();
        for (const l of loc.layers)
          for (const r of await layerRecords(() => loc.openLayer(l.digest), l.mediaType))
            files.set(r.path, r);
        const list = [...files.values()];
        const nonDirs = list.filter((f) => f.type !== 'd');
        if (nonDirs.length === 0) continue;
        const canonical = new Map<FileRecord, string>();
        let matched = 0;
        let dirsOk = true;
        for (const f of list) {
          const rel = await matches(ctx.root, view, f);
          if (rel === null) {
            if (f.type === 'd') dirsOk = false;
            continue;
          }
          canonical.set(f, rel);
          if (f.type !== 'd') matched++;
        }
        if (matched === nonDirs.length && dirsOk) {
          const cfg = configDirs(loc.spec.annotations);
          for (const f of list) {
            f.path = canonical.get(f)!;
            if (f.type === 'f' && cfg.some((d) => f.path.startsWith(d))) f.config = true;
          }
          adopt.push({
            id,
            spec: loc.spec,
            origin: loc.repo,
            imageDigest: loc.manifestDigest ?? '',
            reason: 'explicit',
            layers: loc.layers.map((l) => l.digest),
            ...(isRoot ? {} : { rootless: true }),
            files: list,
          });
          break;
        }
        if (matched > 0) result.partial.push({ id, matched, total: nonDirs.length });
      }
    }
  } finally {
    await repos.close();
  }
  markReasons(adopt);
  result.adopted = adopt.map((p) => p.id);
  if (opts.dryRun || adopt.length === 0) return result;
  const tx = await applyTransaction(
    ctx.root,
    { install: [], remove: [], adopt },
    {
      dbDir: ctx.dbDir,
      noWait: opts.noWait,
      ...(opts.reporter ? { reporter: opts.reporter } : {}),
    },
  );
  if (tx.installed.length !== adopt.length)
    throw new CpmError('E_DB', 'reclaim: the DB changed while comparing; run cpm reclaim again');
  return result;
}
