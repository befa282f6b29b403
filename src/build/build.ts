/**
 * `cpm build`: builds a luet tree's packages from their build.yaml without a container daemon.
 * Plan (plan.ts) → build hash per package (hash.ts) → skip what the target repository or the
 * cache already has → build the rest in parallel, dependants after their dependencies: root
 * (root.ts), prelude and steps under bwrap (sandbox.ts), delta (delta.ts), package image packed
 * into the target's store → one `repo create` pass that publishes the images and the index.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CpmError } from '../errors.js';
import type { LayerCompression } from '../oci/layer.js';
import { buildPackageImage } from '../oci/package-image.js';
import { cacheStore } from '../oci/actions.js';
import { openSource } from '../oci/endpoint.js';
import { pullImage } from '../oci/image.js';
import { hostPlatform } from '../oci/platform.js';
import { parseImageRef } from '../oci/reference.js';
import type { RegistryOptions } from '../oci/registry.js';
import { packageId } from '../package/package.js';
import {
  builtContentKey,
  createInputOf,
  createRepository,
  indexEntryOf,
  layerEpochOf,
  openRepoTarget,
  type CreateInput,
  type CreateResult,
} from '../repo/create.js';
import { canonicalJson, type IndexImage, type IndexPackage } from '../repo/repo-index.js';
import { indexImageOf } from '../repo/create.js';
import { RegistryTarget, type RepoTarget } from '../repo/targets.js';
import { fileLayer } from '../rootfs/index.js';
import { applyTransaction } from '../rootfs/transaction.js';
import {
  formatProblem,
  loadTree,
  treeDirAtUse,
  treeWideProblems,
  type LoadedPackage,
} from '../tree/tree.js';
import { BuildCache, explainChange, type HashParts } from './cache.js';
import {
  allEntries,
  compileFilter,
  diff,
  isEmptyFilter,
  keeps,
  layoutPayload,
  snapshot,
  type Entry,
  type Snapshot,
} from './delta.js';
import { MountNamespace, layerOf, upperDelta } from './overlay.js';
import { buildHash, contextDigest } from './hash.js';
import { retrieveDigest, retrieveInto } from './retrieve.js';
import { cutSubpackage, subpackageHash, subpackagesOf } from './subpackages.js';
import { planBuild, type BuildNode, type BuildPlan, type LeftOut } from './plan.js';
import { RemoteCache } from './remote-cache.js';
import { shardOf, type Shard } from './shard.js';
import {
  copyIntoRoot,
  copyTree,
  hasResultRoot,
  keepResultRoot,
  pathInRoot,
  prepareRoot,
  resolveImage,
  resultRootDir,
  unpackImage,
} from './root.js';
import {
  CONTEXT_DIR,
  DEFAULT_PATH,
  UserNamespace,
  openLog,
  runInSandbox,
  type SandboxOptions,
} from './sandbox.js';

export interface BuildOptions {
  /** Packages tree directory, or several merged as luet's repeated `--tree` merges them. */
  tree: string | readonly string[];
  /** Template values files (later win). */
  values?: string[];
  /** Follow luet where cpm refuses by default (the tree loader's `lenient`). */
  lenient?: boolean;
  /**
   * Refuse the whole tree on any problem. Default: with no packages named, the packages with
   * problems (and those whose build reaches one) are left out and the rest is built.
   */
  strict?: boolean;
  /** Package refs to build (with their build dependencies); empty = every package. */
  packages?: string[];
  /** dir://PATH or oci://HOST/NS: where package images and the index go. */
  output: string;
  /** oci:// output: upload (without it nothing is pushed). */
  push?: boolean;
  /** cpm's cache dir: blob store, unpacked images, result roots, results by build hash. */
  cacheDir: string;
  /** Packages built at once (default: the number of cores). */
  jobs?: number;
  /** Network inside the sandbox (default true, as luet and docker build). */
  network?: boolean;
  /** Keep the build root of a failed package for inspection. */
  keepFailed?: boolean;
  /** Stop starting builds after the first failure. */
  failFast?: boolean;
  /** Only plan: what would be built and why. */
  dryRun?: boolean;
  /** Build even when the target or the cache has the build hash. */
  rebuild?: boolean;
  /** Per-package logs (default: <output dir>/build-logs for dir://, else <cache>/build/logs). */
  logDir?: string;
  compression?: LayerCompression;
  sourceDateEpoch?: number;
  registry?: RegistryOptions;
  /** oci://REG/NS: shared build cache (remote-cache.ts); its faults are warnings, not failures. */
  cache?: string;
  /** Build only this shard of the plan (shard.ts), for a CI matrix; implies `noIndex`. */
  shard?: Shard;
  /** Publish package images (and cache results) but write no index: a matrix runner's job. */
  noIndex?: boolean;
  /** Build nothing: take each package from the output or the cache, write the index (merge). */
  noBuild?: boolean;
  /**
   * How a package's files are found: `auto` (default) mounts build roots as kernel overlays
   * when run as root and the kernel allows it, else copies and walks; `walk` always copies and
   * walks. The environment's CPM_BUILD_DELTA=walk sets `walk` too.
   */
  delta?: 'auto' | 'walk';
  /** Progress lines ("build system/foo@1.0", "done …"). */
  log?: (line: string) => void;
  /** Warnings (an unusable cache); they are also in the result. Default: `log`. */
  warn?: (line: string) => void;
}

export type Outcome = 'built' | 'cached' | 'up-to-date' | 'failed' | 'skipped' | 'would-build';

export interface StepFailure {
  phase: 'prelude' | 'steps';
  /** 1-based index within the phase. */
  index: number;
  command: string;
  exitCode: number;
  /** Last lines of the command's output. */
  tail: string;
}

export interface PackageOutcome {
  id: string;
  hash: string;
  outcome: Outcome;
  /** Why it was (or would be) built, or why not. */
  reason: string;
  log?: string;
  failure?: StepFailure;
  /** --keep-failed: where the failed build root is. */
  keptRoot?: string;
  error?: string;
  image?: string;
  /** Files in the package. */
  files?: number;
  seconds?: number;
}

export interface BuildResult {
  /** In build order. */
  packages: PackageOutcome[];
  repo?: CreateResult;
  failed: number;
  /** --no-build: packages neither the output nor the cache has (left out or kept as before). */
  missing: number;
  /** Warnings: build spec fields cpm does not act on (file:line: text), cache faults. */
  warnings: string[];
}

/** A luet subpackage: cut from its parent's build, decided and built with it. */
interface SubState {
  pkg: LoadedPackage;
  hash: string;
  key: string;
  entry: IndexPackage;
  outcome: PackageOutcome;
  image?: IndexImage;
  /** The result came from the registry cache: its layers are fetched when needed. */
  remote?: boolean;
}

interface NodeState {
  node: BuildNode;
  /** Its subpackages (empty for most packages). */
  subs: SubState[];
  parts: HashParts;
  key: string;
  entry: IndexPackage;
  outcome: PackageOutcome;
  /** Needs its result root kept (a package chains on it or copies from it). */
  provider: boolean;
  /** Cannot be built at all (an image that does not resolve, or such a dependency). */
  blocked?: boolean;
  image?: IndexImage;
  /** The result came from the registry cache: its layers are fetched when needed. */
  remote?: boolean;
  /** Its build root is not kept here but in the registry cache: unpacked when needed. */
  remoteRoot?: boolean;
}

function sha(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

function failureText(id: string, f: StepFailure): string {
  return `${id}: ${f.phase} step ${f.index} (${f.command}) exited with code ${f.exitCode}`;
}

/** build.yaml fields the tree loader warns about because cpm build does not act on them. */
const IGNORED_FIELDS = new Set(['build_options']);

/** Loads the tree and plans; throws E_TREE when the tree has problems. */
export async function loadPlan(opts: BuildOptions): Promise<{
  plan: BuildPlan;
  packages: LoadedPackage[];
  treeDir: string;
  /** Every tree directory (retrieve: globs must stay inside one of them). */
  treeDirs: string[];
  /** The directory the loader's paths are relative to, when there is one tree. */
  displayRoot: string | undefined;
  warnings: string[];
  /** Ids of packages some package of the tree chains on or copies from (their roots are kept). */
  providers: Set<string>;
  /** Packages left out for their problems (no packages named, not --strict). */
  leftOut: LeftOut[];
}> {
  const tree = await loadTree(opts.tree, {
    ...(opts.values ? { values: opts.values } : {}),
    ...(opts.lenient ? { lenient: true } : {}),
  });
  const names = opts.packages ?? [];
  // As repo create: with no packages named, a package's own problems leave it out, not the tree.
  const leaveOut = !opts.strict && names.length === 0;
  const blocking = leaveOut ? treeWideProblems(tree) : tree.problems;
  if (blocking.length > 0) {
    const shown = blocking.slice(0, 10).map(formatProblem);
    const more = blocking.length > 10 ? `\n… and ${blocking.length - 10} more` : '';
    throw new CpmError(
      'E_TREE',
      `the tree has ${blocking.length} problem(s)${leaveOut ? ' that no single package can be left out for' : ''}:\n${shown.join('\n')}${more}`,
      { hint: 'cpm tree validate shows them all', context: { path: tree.dir } },
    );
  }
  const leftOut: LeftOut[] = [];
  const plan = planBuild(tree, names, leaveOut ? leftOut : undefined);
  // Packages with problems and nothing to build (metadata only) are left out of the index too.
  const noted = new Set(leftOut.map((l) => l.id));
  for (const p of tree.packages)
    if (leaveOut && p.problems.length > 0 && !noted.has(packageId(p)))
      leftOut.push({ id: packageId(p), reason: formatProblem(p.problems[0]!) });
  // Stanzas that did not make a package at all (named by where they are), as repo create lists them.
  if (leaveOut)
    for (const sk of tree.skipped)
      leftOut.push({
        id: `${sk.file}:${sk.line}${sk.path ? ` (${sk.path})` : ''}`,
        reason: sk.problems[0] ? formatProblem(sk.problems[0]) : 'not a package',
      });
  if (leaveOut && plan.order.length === 0 && leftOut.length > 0)
    throw new CpmError(
      'E_TREE',
      `every package of the tree has problems; nothing is left to build:\n${leftOut
        .slice(0, 10)
        .map((l) => `${l.id}: ${l.reason}`)
        .join('\n')}`,
      { hint: 'cpm tree validate shows them all', context: { path: tree.dir } },
    );
  const files = new Set(plan.order.map((n) => n.pkg.build?.file));
  const warnings = tree.warnings
    .filter((w) => IGNORED_FIELDS.has(w.path.split(/[.[]/)[0]!))
    .filter((w) => [...files].some((f) => f !== undefined && w.file.startsWith(f)))
    .map(formatProblem);
  let whole = plan;
  try {
    if ((opts.packages ?? []).length > 0) whole = planBuild(tree, []);
  } catch {
    // A package this run does not build cannot be planned: providers within the plan only.
  }
  const providers = new Set<string>();
  for (const n of whole.order) {
    if (n.source === 'chain' && n.chain.length > 0) providers.add(n.chain[n.chain.length - 1]!.id);
    for (const c of n.copies) if (typeof c.from !== 'string') providers.add(c.from.id);
  }
  return {
    plan,
    providers,
    packages: tree.packages,
    treeDir: tree.dir,
    treeDirs: tree.dirs,
    displayRoot: tree.dirs.length === 1 ? path.dirname(tree.dir) : undefined,
    warnings,
    leftOut,
  };
}

export async function build(opts: BuildOptions): Promise<BuildResult> {
  const log = opts.log ?? (() => undefined);
  const warnings: string[] = [];
  const warn = (line: string): void => {
    warnings.push(line);
    (opts.warn ?? log)(line);
  };
  const loaded = await loadPlan(opts);
  const { plan, packages, treeDir, treeDirs, displayRoot, providers } = loaded;
  for (const w of loaded.warnings) warn(w);
  for (const l of loaded.leftOut) warn(`left out ${l.id}: ${l.reason}`);
  if (opts.shard) plan.order = shardOf(plan, opts.shard);
  const compression = opts.compression ?? 'gzip';
  const epoch = layerEpochOf(opts);
  const platform = hostPlatform();
  const cacheDir = path.resolve(opts.cacheDir);
  const target = await openRepoTarget({
    output: opts.output,
    cacheDir,
    ...(opts.push ? { push: true } : {}),
    ...(opts.registry ? { registry: opts.registry } : {}),
  });
  const cache = new BuildCache(cacheDir, target.store);
  const states = new Map<BuildNode, NodeState>();
  let userns: UserNamespace | undefined;
  let mns: MountNamespace | undefined;
  let remote: RemoteCache | undefined;
  try {
    if (opts.cache) remote = await RemoteCache.open(opts.cache, opts.registry ?? {}, warn);
    const prev = await target.previousIndex();
    const prevById = new Map((prev?.packages ?? []).map((p) => [packageId(p), p]));

    // Hashes, dependencies first.
    const imageDigests = new Map<string, Promise<string>>();
    const digestOf = (ref: string): Promise<string> => {
      let d = imageDigests.get(ref);
      if (!d) {
        d = resolveImage(ref, opts.registry ?? {}).then((i) => i.digest);
        imageDigests.set(ref, d);
      }
      return d;
    };
    for (const node of plan.order) {
      const input = createInputOf(node.pkg, displayRoot);
      const entry = indexEntryOf(input, treeDir);
      const images: Record<string, string> = {};
      // An image that cannot be resolved fails this package (and skips its dependants) only.
      let blocked: PackageOutcome | undefined;
      const block = (reason: string): PackageOutcome => ({
        id: node.id,
        hash: '',
        outcome: 'failed',
        reason,
        error: `${node.id}: ${reason}`,
      });
      for (const ref of [node.image, ...node.copies.map((c) => c.from)]) {
        if (typeof ref !== 'string' || blocked) continue;
        try {
          images[ref] = await digestOf(ref);
        } catch (e) {
          blocked = block(`image ${ref}: ${(e as Error).message}`);
        }
      }
      // The package directory is the build context: it must lie inside the tree (a directory
      // symlink out of the tree would copy host files into the build).
      if (!blocked)
        try {
          await treeDirAtUse(
            node.pkg.dir,
            treeDirs,
            'build context',
            node.pkg.definitionFile,
            node.id,
          );
        } catch (e) {
          blocked = block((e as Error).message.replace(`${node.id}: `, ''));
        }
      // Local retrieve globs must match inside the tree: checked (and hashed) before anything runs.
      let retrieved = '';
      if (!blocked)
        try {
          retrieved = await retrieveDigest(retrievesOf(node), node.pkg.dir, treeDirs, node.id);
        } catch (e) {
          blocked = block((e as Error).message.replace(`${node.id}: `, ''));
        }
      const badDep = node.deps.find((d) => states.get(d)!.blocked);
      if (!blocked && badDep)
        blocked = {
          id: node.id,
          hash: '',
          outcome: 'skipped',
          reason: `build dependency ${badDep.id} cannot be built`,
        };
      if (blocked) {
        const subs = subpackagesOf(packages, node.id).map((pkg) => ({
          pkg,
          hash: '',
          key: '',
          entry: indexEntryOf(createInputOf(pkg, displayRoot), treeDir),
          outcome: {
            ...blocked!,
            id: packageId(pkg),
            outcome: 'skipped' as const,
            reason: `its parent ${node.id} cannot be built`,
            error: undefined,
          },
        }));
        states.set(node, {
          node,
          subs,
          parts: { hash: '', meta: '', spec: '', context: '', images, deps: {} },
          key: '',
          entry,
          provider: false,
          blocked: true,
          outcome: blocked,
        });
        continue;
      }
      const deps: Record<string, string> = {};
      for (const d of node.deps) deps[d.id] = states.get(d)!.parts.hash;
      const meta = sha(canonicalJson({ ...entry, contentKey: undefined, source: undefined }));
      const spec = sha(node.rendered);
      const context = await contextDigest(node.pkg.dir);
      const hash = buildHash({
        meta,
        renderedSpec: spec,
        context,
        images,
        deps: node.deps.map((d) => states.get(d)!.parts.hash),
        // Only when there are retrieves, so the hashes of other packages stay as they were.
        ...(retrieved ? { extra: { retrieve: retrieved } } : {}),
      });
      const parts: HashParts = {
        hash,
        meta,
        spec,
        context,
        images,
        deps,
        ...(retrieved ? { retrieve: retrieved } : {}),
      };
      const key = builtContentKey(entry, hash, compression, epoch, platform);
      const subs = subpackagesOf(packages, node.id).map((pkg): SubState => {
        const subEntry = indexEntryOf(createInputOf(pkg, displayRoot), treeDir);
        const subMeta = sha(
          canonicalJson({ ...subEntry, contentKey: undefined, source: undefined }),
        );
        const subHash = subpackageHash(hash, pkg, subMeta);
        return {
          pkg,
          hash: subHash,
          key: builtContentKey(subEntry, subHash, compression, epoch, platform),
          entry: subEntry,
          outcome: { id: packageId(pkg), hash: subHash, outcome: 'up-to-date', reason: '' },
        };
      });
      states.set(node, {
        node,
        subs,
        parts,
        key,
        entry,
        provider: providers.has(node.id),
        outcome: { id: node.id, hash, outcome: 'up-to-date', reason: '' },
      });
    }

    // What to build: not in the target, not in the cache (or --rebuild). A package and its
    // subpackages come from one build: it is built when any of them is in neither.
    const found = async (
      pkg: LoadedPackage,
      key: string,
      hash: string,
    ): Promise<{ image: IndexImage; where: 'target' | 'cache' | 'remote' } | undefined> => {
      if (opts.rebuild) return undefined;
      const old = prevById.get(packageId(pkg));
      if (old?.image && old.contentKey === key && (await target.hasImage(old.image)))
        return { image: old.image, where: 'target' };
      const cached = await cache.result(hash);
      if (cached) return { image: cached, where: 'cache' };
      // A dry run leaves the output as it is: the manifest and config go to cpm's blob cache.
      const hit = await remote?.lookup(
        pkg,
        hash,
        opts.dryRun ? cacheStore(cacheDir) : target.store,
      );
      return hit ? { image: hit, where: 'remote' } : undefined;
    };
    const settle = (
      x: { outcome: PackageOutcome; image?: IndexImage; remote?: boolean },
      f: { image: IndexImage; where: 'target' | 'cache' | 'remote' },
    ): void => {
      x.image = f.image;
      if (f.where === 'target') {
        x.outcome.reason = `build hash in ${target.url}`;
        return;
      }
      x.outcome.outcome = 'cached';
      x.outcome.reason =
        f.where === 'cache' ? 'build hash in the cache' : `build hash in the cache ${remote!.url}`;
      if (f.where === 'remote') x.remote = true;
    };
    for (const node of plan.order) {
      const st = states.get(node)!;
      if (st.blocked) continue;
      const own = await found(node.pkg, st.key, st.parts.hash);
      const subsFound = await Promise.all(st.subs.map((s) => found(s.pkg, s.key, s.hash)));
      const missingSub = st.subs.find((_s, i) => !subsFound[i]);
      if (own && !missingSub) {
        settle(st, own);
        st.subs.forEach((s, i) => settle(s, subsFound[i]!));
        continue;
      }
      if (opts.noBuild) {
        const reason = `not in ${target.url}${remote ? ` nor in the cache ${remote.url}` : ''} (--no-build)`;
        for (const x of [st, ...st.subs]) {
          x.outcome.outcome = 'skipped';
          x.outcome.reason = reason;
        }
        continue;
      }
      const old = prevById.get(node.id);
      const why = explainChange(await cache.lastParts(node.id), st.parts);
      markBuild(
        st,
        opts.rebuild
          ? '--rebuild'
          : own
            ? `its subpackage ${missingSub!.outcome.id} is not in ${target.url} nor in a cache`
            : old
              ? `build hash not in ${target.url} (${why})`
              : `not in ${target.url}${why === 'not built before' ? '' : ` (${why})`}`,
      );
    }
    // A package to build needs the result roots of what it chains on or copies from: one that is
    // not kept any more is built again (same inputs, same package).
    for (const node of [...plan.order].reverse()) {
      const st = states.get(node)!;
      const providers = [
        ...(node.source === 'chain' ? node.chain.slice(-1) : []),
        ...node.copies.flatMap((c) => (typeof c.from === 'string' ? [] : [c.from])),
      ];
      for (const p of providers) {
        const ps = states.get(p)!;
        if (ps.blocked) continue;
        ps.provider = true;
        if (st.outcome.outcome !== 'would-build' || ps.outcome.outcome === 'would-build') continue;
        if (await hasResultRoot(cacheDir, sha(ps.parts.hash))) continue;
        if (ps.remoteRoot || (await remote?.hasRoot(p.pkg, ps.parts.hash))) {
          ps.remoteRoot = true;
          continue;
        }
        markBuild(ps, `its build root is needed by ${node.id} and is not in the cache`);
      }
    }

    const summary = (): Omit<BuildResult, 'repo'> => {
      const outcomes = [
        ...outcomesOf(plan, states),
        // left out for their problems: listed (skipped, with the problem) so --json shows them
        ...loaded.leftOut.map((l): PackageOutcome => ({
          id: l.id,
          hash: '',
          outcome: 'skipped',
          reason: l.reason,
        })),
      ];
      return {
        packages: outcomes,
        failed: outcomes.filter((o) => o.outcome === 'failed').length,
        missing: opts.noBuild ? outcomes.filter((o) => o.outcome === 'skipped').length : 0,
        warnings,
      };
    };
    if (opts.dryRun) return summary();

    const logDir =
      opts.logDir ??
      (target.url.startsWith('dir://')
        ? path.join(target.url.slice('dir://'.length), 'build-logs')
        : path.join(cacheDir, 'build', 'logs'));
    await fsp.mkdir(logDir, { recursive: true });
    const workBase = path.join(cacheDir, 'build', 'work');
    await fsp.mkdir(workBase, { recursive: true });
    if (plan.order.some((n) => states.get(n)!.outcome.outcome === 'would-build')) {
      userns = await UserNamespace.open();
      const delta = opts.delta ?? (process.env.CPM_BUILD_DELTA === 'walk' ? 'walk' : 'auto');
      if (delta === 'auto')
        mns = await MountNamespace.open(workBase, (why) =>
          log(`build roots are copies and deltas walks: no overlay (${why})`),
        );
    }

    // Scheduler: each package waits for its dependencies; at most `jobs` build at once.
    const jobs = Math.max(1, opts.jobs ?? os.cpus().length);
    let running = 0;
    const waiting: Array<() => void> = [];
    const slot = async (): Promise<void> => {
      if (running < jobs) {
        running++;
        return;
      }
      await new Promise<void>((r) => waiting.push(r));
    };
    const release = (): void => {
      const next = waiting.shift();
      if (next) next();
      else running--;
    };
    let stop = false;
    const done = new Map<BuildNode, Promise<boolean>>();
    const ctx: RunCtx = {
      opts,
      cache,
      cacheDir,
      target,
      states,
      logDir,
      workBase,
      epoch,
      compression,
      platform,
      log,
      userns,
      remote,
      treeDirs,
      rootFetches: new Map(),
      background: [],
      mns,
    };
    const runNode = (node: BuildNode): Promise<boolean> => {
      let p = done.get(node);
      if (p) return p;
      p = (async () => {
        const st = states.get(node)!;
        const depsOk = await Promise.all(node.deps.map(runNode));
        if (st.blocked) return false;
        if (st.outcome.outcome !== 'would-build') {
          if (st.outcome.outcome === 'skipped') return false;
          for (const x of [st, ...st.subs]) {
            if (x.outcome.outcome !== 'cached') continue;
            const pkg = x === st ? node.pkg : (x as SubState).pkg;
            const hash = x === st ? st.parts.hash : (x as SubState).hash;
            if (x.remote) {
              // Into the target's store (to publish) and the local cache (next runs); layers an
              // oci output already has (a matrix runner pushed them) are not downloaded.
              const img = x.image!;
              const inOutput =
                target instanceof RegistryTarget
                  ? async (digest: string): Promise<boolean> =>
                      (await target.client.hasBlob(
                        `${target.namespace}/${img.repository}`,
                        digest,
                      )) !== undefined
                  : undefined;
              try {
                if (await remote!.fetchLayers(pkg, img, target.store, inOutput))
                  await cache.putResult(hash, img, target.store);
              } catch (e) {
                if (e instanceof CpmError && e.code === 'E_INTERRUPTED') throw e;
                x.outcome.outcome = 'failed';
                x.outcome.reason = `fetching its layers from the cache ${remote!.url} failed: ${(e as Error).message}`;
                x.outcome.error = `${x.outcome.id}: ${x.outcome.reason}`;
                log(`FAILED ${x.outcome.error}`);
                if (x === st) return false;
              }
            } else {
              await cache.exportResult(x.image!, target.store);
              await remote?.put(pkg, hash, x.image!, target.store);
            }
          }
          return true;
        }
        const bad = node.deps.filter((_d, i) => !depsOk[i]);
        if (bad.length > 0 || stop) {
          st.outcome.outcome = 'skipped';
          st.outcome.reason =
            bad.length > 0
              ? `build dependency failed: ${bad.map((d) => d.id).join(', ')}`
              : '--fail-fast: an earlier build failed';
          log(`skip ${node.id}: ${st.outcome.reason}`);
          settleSubs(st);
          return false;
        }
        await slot();
        try {
          if (stop) {
            st.outcome.outcome = 'skipped';
            st.outcome.reason = '--fail-fast: an earlier build failed';
            settleSubs(st);
            return false;
          }
          const ok = await buildOne(ctx, st);
          settleSubs(st);
          if (!ok && opts.failFast) stop = true;
          return ok;
        } finally {
          release();
        }
      })();
      done.set(node, p);
      return p;
    };
    await Promise.all(plan.order.map(runNode));
    await Promise.all(ctx.background);

    // A shard's index would hold only its own share: runners racing on it lose entries.
    if (opts.noIndex || opts.shard) {
      // A matrix runner: images go out (oci --push), the index is written once by the merge job.
      if (opts.push)
        for (const st of plan.order.map((n) => states.get(n)!))
          for (const x of [st, ...st.subs])
            if (x.image && (x.outcome.outcome === 'built' || x.outcome.outcome === 'cached'))
              await target.publishImage(x.image);
      return summary();
    }

    // One repo-create pass: built images published, unchanged ones reused, the index written.
    const planned = new Map<
      string,
      { outcome: PackageOutcome; hash: string; image?: IndexImage }
    >();
    for (const n of plan.order) {
      const st = states.get(n)!;
      planned.set(n.id, {
        outcome: st.outcome,
        hash: st.parts.hash,
        ...(st.image ? { image: st.image } : {}),
      });
      for (const s of st.subs)
        planned.set(s.outcome.id, {
          outcome: s.outcome,
          hash: s.hash,
          ...(s.image ? { image: s.image } : {}),
        });
    }
    const inputs: CreateInput[] = [];
    const leftOutIds = new Set(loaded.leftOut.map((l) => l.id));
    for (const p of packages) {
      const input = createInputOf(p, displayRoot);
      const st = planned.get(packageId(p));
      // left out for its problems: as a failed build, the entry published before stays, if any
      if (leftOutIds.has(packageId(p))) inputs.push({ ...input, keepPrevious: true });
      else if (st) {
        if (st.outcome.outcome === 'failed' || st.outcome.outcome === 'skipped')
          inputs.push({ ...input, keepPrevious: true });
        else {
          const fresh = st.outcome.outcome === 'built' || st.outcome.outcome === 'cached';
          inputs.push({
            ...input,
            buildHash: st.hash,
            ...(fresh ? { prebuilt: st.image } : {}),
          });
        }
      } else if (
        (p.build?.spec && p.build.spec.payload === undefined) ||
        // Subpackages of a built package not planned in this run: their earlier entry, if any.
        (p.subpackageOf !== undefined && !p.payloadDir)
      ) {
        inputs.push({ ...input, keepPrevious: true });
      } else inputs.push(input);
    }
    await target.close();
    const repo = await createRepository(inputs, {
      output: opts.output,
      treeRoot: treeDir,
      cacheDir,
      compression,
      sourceDateEpoch: epoch,
      ...(opts.push ? { push: true } : {}),
      ...(opts.registry ? { registry: opts.registry } : {}),
      log,
    });
    return { ...summary(), repo };
  } finally {
    userns?.close();
    mns?.close();
    await remote?.close().catch(() => undefined);
    await target.close().catch(() => undefined);
  }
}

/** Build order, each package followed by its subpackages. */
function outcomesOf(plan: BuildPlan, states: Map<BuildNode, NodeState>): PackageOutcome[] {
  return plan.order.flatMap((n) => {
    const st = states.get(n)!;
    return [st.outcome, ...st.subs.map((s) => s.outcome)];
  });
}

/** The package is to be built, and with it every one of its subpackages. */
function markBuild(st: NodeState, reason: string): void {
  st.outcome.outcome = 'would-build';
  st.outcome.reason = reason;
  for (const s of st.subs) {
    s.outcome.outcome = 'would-build';
    s.outcome.reason = `cut from the build of ${st.node.id}`;
  }
}

/** After its parent's build ended without making them: the subpackages are skipped. */
function settleSubs(st: NodeState): void {
  for (const s of st.subs) {
    if (s.outcome.outcome !== 'would-build') continue;
    s.outcome.outcome = 'skipped';
    s.outcome.reason = `its parent ${st.node.id} was not built (${st.outcome.outcome})`;
  }
}

interface RunCtx {
  opts: BuildOptions;
  cache: BuildCache;
  cacheDir: string;
  target: RepoTarget;
  states: Map<BuildNode, NodeState>;
  logDir: string;
  workBase: string;
  epoch: number;
  compression: LayerCompression;
  platform: ReturnType<typeof hostPlatform>;
  log: (line: string) => void;
  userns: UserNamespace | undefined;
  remote: RemoteCache | undefined;
  treeDirs: string[];
  /** Build roots being unpacked from the registry cache, by key (one fetch per root). */
  rootFetches: Map<string, Promise<void>>;
  /** Pushes of build roots, awaited before the run ends (dependants need not wait for them). */
  background: Array<Promise<void>>;
  /** Overlay roots (overlay.ts); undefined: roots are copies and deltas walks. */
  mns: MountNamespace | undefined;
}

/**
 * The kept build root of `st` (for packages chained on it or copying from it): local, or unpacked
 * once from the registry cache into the same place.
 */
async function resultRootOf(ctx: RunCtx, st: NodeState): Promise<string> {
  const key = sha(st.parts.hash);
  const dir = resultRootDir(ctx.cacheDir, key);
  if (!st.remoteRoot || !ctx.remote || (await hasResultRoot(ctx.cacheDir, key))) return dir;
  let p = ctx.rootFetches.get(key);
  if (!p) {
    const remote = ctx.remote;
    p = (async () => {
      ctx.log(`fetch the build root of ${st.node.id} from ${remote.url}`);
      const env = await remote.fetchRoot(st.node.pkg, st.parts.hash, dir, cacheStore(ctx.cacheDir));
      await fsp.writeFile(path.join(dir, 'env.json'), JSON.stringify(env));
      await fsp.writeFile(path.join(dir, '.cpm-complete'), '');
    })();
    ctx.rootFetches.set(key, p);
  }
  await p;
  return dir;
}

/** build.yaml `retrieve:` as a list of strings. */
function retrievesOf(node: BuildNode): string[] {
  const r = node.spec.fields.retrieve;
  if (typeof r === 'string') return r ? [r] : [];
  return Array.isArray(r) ? r.filter((x): x is string => typeof x === 'string' && x !== '') : [];
}

function safeId(id: string): string {
  return id.replace(/[^A-Za-z0-9._+-]/g, '_');
}

/** Environment of the sandbox: PATH and HOME, the image's Env, luet's PACKAGE_*, the spec's env. */
function envFor(node: BuildNode, imageEnv: string[]): Record<string, string> {
  const env: Record<string, string> = { PATH: DEFAULT_PATH, HOME: '/root' };
  const set = (kv: string): void => {
    const eq = kv.indexOf('=');
    if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
  };
  imageEnv.forEach(set);
  env.PACKAGE_NAME = node.pkg.name;
  env.PACKAGE_VERSION = node.pkg.version;
  env.PACKAGE_CATEGORY = node.pkg.category;
  node.spec.env.forEach(set);
  return env;
}

/**
 * The image of a package as installable layers in the target's store: built in this run, or
 * already in a dir output, it is there; published earlier to an oci output, it is pulled once.
 */
async function imageOfState(ctx: RunCtx, st: NodeState): Promise<IndexImage> {
  const img = st.image;
  if (!img) throw new CpmError('E_REPO', `${st.node.id} has no image to install`);
  const store = ctx.target.store;
  const missing = [];
  for (const l of img.layers) if ((await store.size(l.digest)) !== l.size) missing.push(l);
  if (missing.length > 0 && ctx.target.url.startsWith('oci://')) {
    const ref = `${ctx.target.url.slice('oci://'.length)}/${img.repository}@${img.manifestDigest}`;
    const src = await openSource(parseImageRef(ref), ctx.opts.registry ?? {});
    try {
      await pullImage(src, store);
    } finally {
      await src.close();
    }
  }
  return img;
}

/** Assembles the root of `node` in `root`; returns the image Env that applies. */
async function assembleRoot(
  ctx: RunCtx,
  node: BuildNode,
  root: string,
  work: string,
): Promise<string[]> {
  if (node.source === 'image') {
    const img = await unpackImage(node.image!, ctx.cacheDir, ctx.opts.registry ?? {});
    await copyTree(img.dir, root);
    return img.env;
  }
  if (node.source === 'chain') {
    const last = node.chain[node.chain.length - 1]!;
    const dir = await resultRootOf(ctx, ctx.states.get(last)!);
    await copyTree(path.join(dir, 'root'), root);
    return JSON.parse(
      await fsp.readFile(path.join(dir, 'env.json'), 'utf8').catch(() => '[]'),
    ) as string[];
  }
  await fsp.mkdir(root, { recursive: true });
  if (node.source === 'final') {
    const steps = [];
    for (const f of node.finals) {
      const img = await imageOfState(ctx, ctx.states.get(f)!);
      const layers = img.layers.map((l) =>
        fileLayer(ctx.target.store.path(l.digest), l.mediaType, l.digest),
      );
      steps.push({
        spec: f.pkg,
        layers,
        origin: ctx.target.url,
        imageDigest: img.manifestDigest,
        reason: 'explicit' as const,
      });
    }
    await applyTransaction(
      root,
      { install: steps, remove: [] },
      { dbDir: path.join(work, 'db'), noFinalizers: true },
    );
  }
  return [];
}

/**
 * The overlay's lower layer for `node`, used in place (never written): the unpacked image, the
 * kept root of the last package of its chain, or a fresh root of final images made under `work`.
 */
async function baseLayer(
  ctx: RunCtx,
  node: BuildNode,
  work: string,
): Promise<{ lower: string; env: string[] }> {
  if (node.source === 'image') {
    const img = await unpackImage(node.image!, ctx.cacheDir, ctx.opts.registry ?? {});
    return { lower: img.dir, env: img.env };
  }
  if (node.source === 'chain') {
    const last = node.chain[node.chain.length - 1]!;
    const dir = await resultRootOf(ctx, ctx.states.get(last)!);
    const env = JSON.parse(
      await fsp.readFile(path.join(dir, 'env.json'), 'utf8').catch(() => '[]'),
    ) as string[];
    return { lower: path.join(dir, 'root'), env };
  }
  const lower = path.join(work, 'lower');
  return { lower, env: await assembleRoot(ctx, node, lower, work) };
}

/** luet's `copy:` (docker COPY --from): a directory's contents, or a file, into the root. */
async function copyFrom(ctx: RunCtx, node: BuildNode, root: string): Promise<void> {
  for (const c of node.copies) {
    const srcRoot =
      typeof c.from === 'string'
        ? (await unpackImage(c.from, ctx.cacheDir, ctx.opts.registry ?? {})).dir
        : path.join(await resultRootOf(ctx, ctx.states.get(c.from)!), 'root');
    const from = typeof c.from === 'string' ? c.from : c.from.id;
    const src = pathInRoot(srcRoot, c.source, `${node.id}: copy source`);
    const st = await fsp.lstat(src).catch(() => undefined);
    if (!st)
      throw new CpmError(
        'E_NOT_FOUND',
        `${node.id}: copy source ${c.source} does not exist in ${from}`,
        {
          context: { package: node.id },
        },
      );
    const dest = path.posix.normalize(`/${c.destination}`);
    if (st.isDirectory()) {
      for (const n of (await fsp.readdir(src)).sort())
        await copyIntoRoot(root, path.join(src, n), `${dest}/${n}`, `${node.id}: copy destination`);
    } else {
      const to = c.destination.endsWith('/') ? `${dest}/${path.basename(src)}` : dest;
      await copyIntoRoot(root, src, to, `${node.id}: copy destination`);
    }
  }
}

async function runPhase(
  ctx: RunCtx,
  sb: SandboxOptions,
  phase: 'prelude' | 'steps',
  commands: string[],
): Promise<StepFailure | undefined> {
  for (let i = 0; i < commands.length; i++) {
    const command = commands[i]!;
    sb.log.write(`\n### ${phase} ${i + 1}: ${command}\n`);
    const r = await runInSandbox(sb, command, ctx.userns);
    if (r.code !== 0) return { phase, index: i + 1, command, exitCode: r.code, tail: r.tail };
  }
  return undefined;
}

/** Builds one package; records the outcome in its state. False when it failed. */
async function buildOne(ctx: RunCtx, st: NodeState): Promise<boolean> {
  const { node, outcome } = st;
  const started = Date.now();
  const logFile = path.join(ctx.logDir, `${safeId(node.id)}.log`);
  outcome.log = logFile;
  await fsp.rm(logFile, { force: true });
  const logStream = openLog(logFile);
  const work = await fsp.mkdtemp(path.join(ctx.workBase, `${safeId(node.id)}-`));
  const root = path.join(work, 'root');
  let keep = false;
  /** Overlay mount points in the namespace, unmounted (last first) when the build ends. */
  const mounted: string[] = [];
  /** Set when this build's root is an overlay. */
  let mns: MountNamespace | undefined;
  ctx.log(`build ${node.id}: ${outcome.reason}`);
  try {
    const payload = path.join(work, 'payload');
    await fsp.mkdir(payload);
    const needRoot = !node.empty || st.provider;
    let entries: Entry[] = [];
    let env: string[] = [];
    let t = Date.now();
    const mark = (what: string): void => {
      const now = Date.now();
      logStream.write(`cpm: ${what} in ${((now - t) / 1000).toFixed(2)} s\n`);
      t = now;
    };
    if (needRoot) {
      // Overlay (overlay.ts) for a plain delta whose root nobody keeps; else a copy and walks.
      mns = ctx.mns && !node.empty && !ctx.opts.keepFailed ? ctx.mns : undefined;
      let lower = '';
      if (mns) {
        ({ lower, env } = await baseLayer(ctx, node, work));
        for (const d of ['u1', 'w1', 'u2', 'w2', 'before', 'root'])
          await fsp.mkdir(path.join(work, d === 'root' ? d : `ov-${d}`));
        await mns.mount([lower], path.join(work, 'ov-u1'), path.join(work, 'ov-w1'), root);
        mounted.push(root);
      } else env = await assembleRoot(ctx, node, root, work);
      // What cpm writes into the root goes through the namespace's view of the overlay.
      const hostRoot = mns ? mns.view(root) : root;
      // resolved again where it is read: a link swapped since the plan must not lead out
      const context = await treeDirAtUse(
        node.pkg.dir,
        ctx.treeDirs,
        'build context',
        node.pkg.definitionFile,
        node.id,
      );
      await prepareRoot(hostRoot, context);
      const retrieves = retrievesOf(node);
      if (retrieves.length > 0) {
        const placed = await retrieveInto(hostRoot, retrieves, node.pkg.dir, ctx.treeDirs, node.id);
        logStream.write(`cpm: retrieved ${placed.join(' ')}\n`);
      }
      await copyFrom(ctx, node, hostRoot);
      mark(`build root (${node.source}${mns ? ', overlay' : ''}) ready`);
      const tmp = path.join(work, 'tmp');
      await fsp.mkdir(tmp, { mode: 0o1777 });
      await fsp.chmod(tmp, 0o1777);
      const sb: SandboxOptions = {
        root,
        tmp,
        cwd: CONTEXT_DIR,
        env: envFor(node, env),
        network: ctx.opts.network ?? true,
        log: logStream,
        ...(mns ? { mountNs: mns } : {}),
      };
      const skip = new Set(['proc', 'dev', 'tmp']);
      let failure = await runPhase(ctx, sb, 'prelude', node.spec.prelude);
      mark('prelude');
      let before: Snapshot | undefined;
      if (mns && !failure) {
        // The prelude's layer goes below: the steps write into a fresh upper of their own.
        const lowers = [path.join(work, 'ov-u1'), lower];
        await mns.unmount(root);
        mounted.pop();
        await mns.mount(lowers, path.join(work, 'ov-u2'), path.join(work, 'ov-w2'), root);
        mounted.push(root);
        await mns.mount(lowers, undefined, undefined, path.join(work, 'ov-before'));
        mounted.push(path.join(work, 'ov-before'));
        mark('overlay for the steps');
      } else if (!failure && !node.empty) {
        before = await snapshot(root, skip);
        mark('snapshot');
      }
      if (!failure) failure = await runPhase(ctx, sb, 'steps', node.spec.steps);
      mark('steps');
      if (failure) {
        outcome.outcome = 'failed';
        outcome.failure = failure;
        outcome.error = failureText(node.id, failure);
        outcome.reason = outcome.error.slice(node.id.length + 2);
        if (ctx.opts.keepFailed) {
          keep = true;
          outcome.keptRoot = root;
        }
        ctx.log(`FAILED ${outcome.error}; log ${logFile}`);
        return false;
      }
      if (!node.empty) {
        const filter = compileFilter(node.spec.includes, node.spec.excludes, node.id);
        let base = mns ? mns.view(root) : root;
        let sourceOf: ((rel: string) => Promise<string>) | undefined;
        if (node.unpack || node.packageDir) {
          if (node.packageDir) {
            base = pathInRoot(base, node.packageDir, `${node.id}: package_dir`);
            if (!(await fsp.stat(base).catch(() => undefined))?.isDirectory())
              throw new CpmError(
                'E_BUILD',
                `package_dir ${node.packageDir} is not a directory after the steps`,
              );
          }
          entries = await allEntries(base);
          if (!node.packageDir) entries = entries.filter((e) => !skip.has(e.rel.split('/')[0]!));
          if (mns) {
            // Walked through the merged tree; linked from the layer each entry is in.
            const inRoot = path.relative(mns.view(root), base);
            const layers = [path.join(work, 'ov-u2'), path.join(work, 'ov-u1'), lower];
            sourceOf = (rel) => layerOf(layers, path.join(inRoot, rel));
          }
        } else if (mns) {
          base = path.join(work, 'ov-u2');
          entries = await upperDelta(base, mns.view(path.join(work, 'ov-before')), skip);
        } else {
          entries = diff(before!, await snapshot(root, skip));
        }
        if (!isEmptyFilter(filter)) entries = entries.filter((e) => keeps(filter, `/${e.rel}`));
        mark('delta');
        const skipped = await layoutPayload(base, entries, payload, sourceOf);
        for (const s of skipped)
          logStream.write(`cpm: /${s} is a device, fifo or socket: not packaged\n`);
      }
    }
    const input = createInputOf(node.pkg, path.dirname(node.pkg.dir));
    const packing = {
      store: ctx.target.store,
      compression: ctx.compression,
      sourceDateEpoch: ctx.epoch,
      platform: ctx.platform,
      // Built as root, owners are real ids (the sandbox maps them 1:1); rootless, they are 0:0.
      preserveOwners: process.getuid?.() === 0,
    };
    const img = await buildPackageImage(node.pkg, payload, {
      ...packing,
      ...(input.finalize ? { finalize: input.finalize } : {}),
    });
    mark('pack');
    st.image = indexImageOf(node.pkg, img);
    // Subpackages: the parent's artifact filtered again, each packed as a package of its own.
    const subImages: Array<[SubState, IndexImage, number]> = [];
    for (const [i, sub] of st.subs.entries()) {
      const out = path.join(work, `sub-${i}`);
      const kept = await cutSubpackage(sub.pkg, sub.outcome.id, payload, entries, out);
      const simg = await buildPackageImage(sub.pkg, out, packing);
      subImages.push([sub, indexImageOf(sub.pkg, simg), kept.length]);
    }
    if (st.subs.length > 0) mark(`${st.subs.length} subpackage(s) cut and packed`);
    await ctx.cache.putResult(st.parts.hash, st.image, ctx.target.store);
    await ctx.remote?.put(node.pkg, st.parts.hash, st.image, ctx.target.store);
    for (const [sub, image, files] of subImages) {
      await ctx.cache.putResult(sub.hash, image, ctx.target.store);
      await ctx.remote?.put(sub.pkg, sub.hash, image, ctx.target.store);
      sub.image = image;
      sub.outcome.outcome = 'built';
      sub.outcome.image = image.manifestDigest;
      sub.outcome.files = files;
      ctx.log(
        `built ${sub.outcome.id} ${image.manifestDigest} (${files} entries, from ${node.id})`,
      );
    }
    await ctx.cache.putParts(node.id, st.parts);
    if (needRoot && st.provider) {
      const key = sha(st.parts.hash);
      let kept = root;
      if (mns) {
        // Others build on this root as a plain directory: the merged tree, copied once.
        kept = path.join(work, 'result');
        await copyTree(mns.view(root), kept);
      }
      await keepResultRoot(ctx.cacheDir, key, kept);
      mark(`result root kept${mns ? ' (copied from the overlay)' : ''}`);
      await fsp.writeFile(
        path.join(resultRootDir(ctx.cacheDir, key), 'env.json'),
        JSON.stringify(env),
      );
      // Shared for runners without it; dependants here go on from the local copy meanwhile.
      if (ctx.remote)
        ctx.background.push(
          ctx.remote.putRoot(
            node.pkg,
            st.parts.hash,
            path.join(resultRootDir(ctx.cacheDir, key), 'root'),
            env,
            cacheStore(ctx.cacheDir),
          ),
        );
    }
    outcome.outcome = 'built';
    outcome.image = img.descriptor.digest;
    outcome.files = entries.length;
    outcome.seconds = (Date.now() - started) / 1000;
    ctx.log(
      `built ${node.id} ${img.descriptor.digest} (${entries.length} entries, ${outcome.seconds.toFixed(1)} s)`,
    );
    return true;
  } catch (e) {
    outcome.outcome = 'failed';
    // Most messages already start with the package id: not twice.
    const msg = (e as Error).message;
    outcome.reason = msg.startsWith(`${node.id}: `) ? msg.slice(node.id.length + 2) : msg;
    outcome.error = `${node.id}: ${outcome.reason}`;
    if (ctx.opts.keepFailed) {
      keep = true;
      outcome.keptRoot = root;
    }
    ctx.log(`FAILED ${outcome.error}`);
    return false;
  } finally {
    await new Promise<void>((r) => logStream.end(r));
    for (const m of mounted.reverse()) await ctx.mns?.unmount(m).catch(() => undefined);
    if (!keep) await fsp.rm(work, { recursive: true, force: true });
  }
}
