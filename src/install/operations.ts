/**
 * Install operations: the glue from a package source through the resolver to one transaction.
 *
 *   source (repos / --repo / --tree) + installed state (DB) → resolve → Plan (plain value)
 *     → locate each package → LayerSource per layer → InstallStep → applyTransaction
 *
 * planOperation touches nothing under the root; applyOperation executes a plan (install and
 * remove in ONE transaction); runOperation does both. `cpm install|upgrade|reinstall|uninstall`
 * and `cpm demo` call these.
 */
import type { CpmConfig } from '../config.js';
import { CpmError } from '../errors.js';
import type { OpenedRepositories } from '../repo/open.js';
import { planToJson, resolve, type Plan, type Request } from '../resolver/index.js';
import { formatPlan, makeRequest, planErrorCode, type Operation } from '../resolver/request.js';
import { finalizeFromJson } from '../package/finalize.js';
import { familyKey, packageId, type InstalledSpec } from '../package/package.js';
import { PackageUniverse } from '../package/universe.js';
import { parseRef } from '../package/ref.js';
import { satisfies } from '../package/version.js';
import { InstalledDb } from '../rootfs/db.js';
import type { Reporter, TransferProgress } from '../util/progress.js';
import { interruptible } from '../util/signals.js';
import { similar } from '../util/similar.js';
import { openPackageSource, type PackageSource } from './source.js';
import type { TransactionResult } from '../rootfs/transaction.js';
import type { InstallStep, InstalledPackage, LayerSource } from '../rootfs/types.js';

export interface OperationContext {
  /** Absolute target root. */
  root: string;
  /** Absolute DB directory (config.databaseDir(cfg, root)). */
  dbDir: string;
  config: CpmConfig;
  source: PackageSource;
  plainHttp?: boolean;
  /** Fetch every configured repository's index now, whatever its age (dnf --refresh, apk -U). */
  refresh?: boolean;
  /** Extra environment for finalizers (config finalizer_envs). */
  finalizerEnv?: Record<string, string>;
}

export interface OperationOptions {
  /** install/upgrade/reinstall: take over conflicting files; uninstall: even when required. */
  force?: boolean;
  /** uninstall: also remove dependencies nothing else needs. */
  full?: boolean;
  noFinalizers?: boolean;
  noWait?: boolean;
  reporter?: Reporter;
  /** Lines about building a --tree source. */
  log?: (line: string) => void;
  /** install: a distribution base image to unpack first, in the same transaction (`--base`). */
  base?: string;
}

export type PlanJson = ReturnType<typeof planToJson>;

export interface PlannedOperation {
  op: Operation;
  refs: string[];
  request: Request;
  plan: Plan;
  /** Exactly what `cpm plan --json` prints for the same request and state. */
  json: PlanJson;
  /**
   * Image references among the arguments (`oci:DIR[:TAG]`, `HOST/REPO:TAG`): installed as they
   * are, with ownership tracking, outside the resolver (like `apk add ./pkg.apk`).
   */
  images: string[];
  /** `--base` image reference, unpacked below the packages as the root's base. */
  base?: string;
  /** Ids of installed packages that image references among the arguments name as they are now. */
  current: string[];
  /** Nothing to do (a satisfiable plan without steps). */
  noop: boolean;
  /** The opened source (install/upgrade/reinstall with steps); closed by applyOperation. */
  repos?: OpenedRepositories;
  /**
   * The DB the plan was made from, which applyOperation reads as it was planned against instead
   * of reading a root's megabytes again (the transaction reads it again under the root's lock).
   */
  db?: InstalledDb;
  /** Unknown requested packages → the closest known ones ("did you mean"). */
  suggestions?: Record<string, string[]>;
  /** Repositories answered from the index cache, with when each index was fetched. */
  cachedIndexes?: Array<{ repo: string; fetchedAt: string }>;
}

export interface OperationResult {
  planned: PlannedOperation;
  /** null for a no-op. */
  transaction: TransactionResult | null;
}

/** The DB's packages as the resolver's installed state. */
export function installedState(db: InstalledDb): InstalledSpec[] {
  return db.list().map((p) => ({ spec: p.spec, reason: p.reason }));
}

/**
 * Cheap test that an install request is already satisfied by the DB: every requested family is
 * installed and matches its selector. Used only to skip opening repositories when every
 * requested package is pinned to the installed version (`cat/name@1.2.3`), which the resolver
 * would keep; a bare `cat/name` still goes through the resolver (it may pick a newer version).
 */
function pinnedAndInstalled(db: InstalledDb, refs: readonly string[]): boolean {
  if (refs.length === 0) return false;
  for (const r of refs) {
    const t = parseRef(r);
    const p = db.find(familyKey(t));
    if (!p) return false;
    const exact = t.version !== '' && t.selector.constraints.every((c) => c.op === '=');
    if (!exact || !satisfies(p.spec.version, t.selector)) return false;
  }
  return true;
}

/**
 * The arguments that are image references. image-ref.ts (and the OCI client behind it) is only
 * loaded when an argument could be one: a plain `cat/name@ver` has no ":" and no host.
 */
async function imageRefs(refs: readonly string[]): Promise<string[]> {
  const maybe = refs.some((r) => r.includes(':') || /^(localhost|\[|[^/@]*\.)/.test(r));
  if (!maybe) return [];
  const { looksLikeImageRef } = await import('./image-ref.js');
  return refs.filter((r) => looksLikeImageRef(r));
}

/** Resolves `op refs` against the source and the root's DB. Writes nothing under the root. */
export async function planOperation(
  ctx: OperationContext,
  op: Operation,
  refs: readonly string[],
  opts: OperationOptions = {},
): Promise<PlannedOperation> {
  const imageArgs = op === 'install' ? await imageRefs(refs) : [];
  const base = op === 'install' ? opts.base : undefined;
  const pkgRefs = refs.filter((r) => !imageArgs.includes(r));
  const request: Request =
    imageArgs.length > 0 && pkgRefs.length === 0
      ? { op: 'install', targets: [] }
      : makeRequest(op, pkgRefs, { force: opts.force, full: opts.full });
  const db = InstalledDb.load(ctx.dbDir);
  // an image installed at the digest its reference names now is a no-op without pulling (a tag
  // costs one request to learn its digest; a digest none)
  const images: string[] = [];
  const current: string[] = [];
  if (imageArgs.length > 0) {
    const { installedImage } = await import('./image-ref.js');
    const endpoint = ctx.plainHttp !== undefined ? { plainHttp: ctx.plainHttp } : {};
    for (const ref of imageArgs) {
      const p = await installedImage(ref, db, endpoint);
      if (p) current.push(p.id);
      else images.push(ref);
    }
  }
  const installed = installedState(db);
  const cachedIndexes: NonNullable<PlannedOperation['cachedIndexes']> = [];
  const suggestions: Record<string, string[]> = {};
  const done = (plan: Plan, repos?: OpenedRepositories): PlannedOperation => ({
    ...(cachedIndexes.length > 0 ? { cachedIndexes } : {}),
    ...(Object.keys(suggestions).length > 0 ? { suggestions } : {}),
    op,
    refs: [...refs],
    request,
    plan,
    json: planToJson(plan),
    images,
    current,
    ...(base ? { base } : {}),
    // a --base is always looked at: the same image again is a no-op in the transaction
    noop: plan.satisfiable && plan.steps.length === 0 && images.length === 0 && !base,
    ...(repos ? { repos } : {}),
    db,
  });

  // uninstall needs no repository; a pinned install of what is installed needs none either
  if (
    op === 'uninstall' ||
    (op === 'install' && pkgRefs.length === 0) ||
    (op === 'install' && pinnedAndInstalled(db, pkgRefs))
  ) {
    const universe = new PackageUniverse(installed.map((i) => i.spec));
    return done(resolve(universe, installed, request));
  }
  const repos = await openPackageSource(ctx.config, ctx.source, {
    ...(ctx.plainHttp !== undefined ? { plainHttp: ctx.plainHttp } : {}),
    ...(ctx.refresh ? { refresh: true } : {}),
    ...(opts.log ? { log: opts.log } : {}),
  });
  for (const r of repos.repos)
    if (r.fromCache) cachedIndexes.push({ repo: r.config.name, fetchedAt: r.state.fetchedAt });
  let plan: Plan;
  try {
    plan = resolve(repos.universe, installed, request);
  } catch (e) {
    await repos.close();
    throw e;
  }
  for (const p of plan.problems)
    if (p.code === 'E_NOT_FOUND' && p.package) {
      const near = similar(p.package, repos.universe.families());
      if (near.length > 0) suggestions[p.package] = near;
    }
  if (!plan.satisfiable || plan.steps.length === 0) {
    await repos.close();
    return done(plan);
  }
  return done(plan, repos);
}

/** The error a failed plan becomes: unknown package (5), unsatisfiable (6), required by (6). */
export function planError(plan: Plan, suggestions: Record<string, string[]> = {}): CpmError {
  const code = planErrorCode(plan) ?? 'E_UNSAT';
  const text = formatPlan(plan).trimEnd();
  const meant = Object.values(suggestions).flat();
  return new CpmError(code, text, {
    context: { problems: plan.problems, ...(meant.length > 0 ? { suggestions } : {}) },
    ...(code === 'E_NOT_FOUND'
      ? {
          hint:
            meant.length > 0
              ? `did you mean ${meant.join(' or ')}?`
              : 'cpm search WORD lists what the repositories offer',
        }
      : code === 'E_REQUIRED_BY'
        ? { hint: 'uninstall those too, or use --force' }
        : {}),
  });
}

/** Executes a plan from planOperation in one transaction; throws planError when unsatisfiable. */
export async function applyOperation(
  ctx: OperationContext,
  planned: PlannedOperation,
  opts: OperationOptions = {},
): Promise<OperationResult> {
  // a signal before the transaction (locating, pulling) ends the operation with a clear line too
  return interruptible(() => applyPlanned(ctx, planned, opts));
}

async function applyPlanned(
  ctx: OperationContext,
  planned: PlannedOperation,
  opts: OperationOptions,
): Promise<OperationResult> {
  const { plan, repos } = planned;
  try {
    if (!plan.satisfiable) throw planError(plan, planned.suggestions);
    const requested = new Set(planned.request.targets?.map((t) => familyKey(t)) ?? []);
    const db = planned.db ?? InstalledDb.load(ctx.dbDir);
    // `install` of what is installed as a dependency still records it as explicit (apk, dnf)
    const explicit =
      planned.op === 'install'
        ? [...requested].filter((f) => db.find(f)?.reason === 'dependency')
        : [];
    if (planned.noop && explicit.length === 0) return { planned, transaction: null };
    const install: InstallStep[] = [];
    const remove: string[] = [];
    for (const s of plan.steps) {
      const id = packageId(s.spec);
      if (s.action === 'remove') {
        remove.push(id);
        continue;
      }
      if (!repos)
        throw new CpmError('E_NOT_FOUND', `${id}: no repository is open to fetch it from`);
      const loc = await repos.locate(id);
      const fetch = loc.fetchLayer;
      const layers: LayerSource[] = loc.layers.map((l) => {
        const file = loc.layerFile?.(l.digest);
        return {
          digest: l.digest,
          mediaType: l.mediaType,
          size: l.size,
          open: () => loc.openLayer(l.digest),
          where: loc.layerWhere(l.digest),
          ...(loc.streamVerifies ? { streamVerifies: true } : {}),
          ...(file !== undefined ? { file } : {}),
          ...(loc.openLayerFile ? { openFile: () => loc.openLayerFile!(l.digest) } : {}),
          ...(fetch
            ? {
                fetch: {
                  missing: () => fetch.missing(l.digest),
                  run: (progress: TransferProgress, signal: AbortSignal) =>
                    fetch.run(l.digest, progress, signal),
                },
              }
            : {}),
          ...(loc.evictLayer ? { evict: () => loc.evictLayer!(l.digest) } : {}),
        };
      });
      const fam = familyKey(s.spec);
      const before = db.find(fam);
      const step: InstallStep = {
        spec: loc.spec,
        layers,
        origin: loc.repo,
        imageDigest: loc.manifestDigest ?? '',
        reason:
          requested.has(fam) && planned.op !== 'upgrade'
            ? 'explicit'
            : (before?.reason ?? 'dependency'),
      };
      const fin = finalizeFromJson(loc.entry.finalize);
      if (fin) step.finalize = fin;
      install.push(step);
    }
    if (planned.images.length > 0) {
      const { imageInstallStep } = await import('./image-ref.js');
      for (const ref of planned.images)
        install.push(
          await imageInstallStep(ref, {
            cacheDir: ctx.config.cache_dir,
            ...(ctx.plainHttp !== undefined ? { plainHttp: ctx.plainHttp } : {}),
            ...(opts.reporter ? { reporter: opts.reporter } : {}),
          }),
        );
    }
    if (planned.base) {
      const { baseInstallStep } = await import('./image-ref.js');
      const step = await baseInstallStep(planned.base, {
        cacheDir: ctx.config.cache_dir,
        ...(ctx.plainHttp !== undefined ? { plainHttp: ctx.plainHttp } : {}),
        ...(opts.reporter ? { reporter: opts.reporter } : {}),
      });
      install.unshift(step); // extracted first: the packages go on top of it
      for (const p of db.list())
        if (p.base && familyKey(p.spec) !== familyKey(step.spec)) remove.push(p.id);
    }
    // the extractor is loaded only when there is something to extract
    const { applyTransaction } = await import('../rootfs/transaction.js');
    const transaction = await applyTransaction(
      ctx.root,
      { install, remove, ...(explicit.length > 0 ? { explicit } : {}) },
      {
        dbDir: ctx.dbDir,
        force: planned.op === 'uninstall' ? false : opts.force,
        reinstall: planned.op === 'reinstall',
        noWait: opts.noWait,
        noFinalizers: opts.noFinalizers,
        ...(ctx.finalizerEnv ? { finalizerEnv: ctx.finalizerEnv } : {}),
        ...(opts.reporter ? { reporter: opts.reporter } : {}),
      },
    );
    return { planned, transaction };
  } finally {
    await repos?.close();
  }
}

/** planOperation + applyOperation. */
export async function runOperation(
  ctx: OperationContext,
  op: Operation,
  refs: readonly string[],
  opts: OperationOptions = {},
): Promise<OperationResult> {
  return applyOperation(ctx, await planOperation(ctx, op, refs, opts), opts);
}

/** Installed packages, for callers that render results. */
export function installedPackages(ctx: Pick<OperationContext, 'dbDir'>): InstalledPackage[] {
  return InstalledDb.load(ctx.dbDir).list();
}
