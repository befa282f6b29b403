/**
 * `cpm repo create`: packages → package images + one index, into a dir or oci repository.
 * Deterministic (no clock: timestamps from SOURCE_DATE_EPOCH or the tree, sorted output) and
 * incremental (a package whose content key matches the previous index and whose image is still
 * published is neither re-packed nor re-pushed).
 */
import os from 'node:os';
import path from 'node:path';
import { promises as fsp } from 'node:fs';
import { CpmError } from '../errors.js';
import { fsError, type Where } from '../util/fs-errors.js';
import { BlobStore } from '../oci/blobstore.js';
import type { Descriptor, ImageManifest } from '../oci/types.js';
import { mapLimit } from '../oci/image.js';
import type { LayerCompression } from '../oci/layer.js';
import { specToJson } from '../package/codec.js';
import type { FinalizeSpec } from '../package/finalize.js';
import { buildPackageImage } from '../oci/package-image.js';
import { hostPlatform } from '../oci/platform.js';
import type { RegistryOptions } from '../oci/registry.js';
import { packageId, type PackageSpec } from '../package/package.js';
import {
  formatProblem,
  loadTree,
  treeDirAtUse,
  treeWideProblems,
  type LoadedPackage,
  type PayloadFilter,
} from '../tree/tree.js';
import type { Compression } from '../util/compress.js';
import { contentKey, payloadDigest } from './content-key.js';
import { buildIndexArtifact } from './index-artifact.js';
import {
  INDEX_SCHEMA_VERSION,
  canonicalJson,
  compactIndexPackage,
  serializeIndex,
  type IndexImage,
  type IndexPackage,
  type RepoIndex,
} from './repo-index.js';
import { DirTarget, IndexChangedError, RegistryTarget, type RepoTarget } from './targets.js';
import { encodeTag, packageRepository } from './tags.js';

/** A package to publish: its spec plus the tree's extras (what loadTree gives per package). */
export type CreateInput = PackageSpec & {
  /** Absolute payload directory; undefined → a metadata-only package (no image). */
  payloadDir?: string | undefined;
  /**
   * From a tree: the tree the payload must stay inside and the file that names it; the payload
   * is resolved when it is read and refused if a symlink leads it out (treeDirAtUse).
   */
  payloadGuard?: { tree: string; file: string } | undefined;
  /** Only these payload files (luet includes/excludes: regexes matched against "/path"). */
  filter?: PayloadFilter | undefined;
  finalize?: FinalizeSpec | undefined;
  /**
   * Set for packages built from build.yaml (src/build): the content key derives from this hash
   * instead of the payload, so an unchanged build is recognised before it runs.
   */
  buildHash?: string | undefined;
  /** The image `cpm build` already packed into the target's store for this run. */
  prebuilt?: IndexImage | undefined;
  /** Not built in this run: keep the previous index entry as it is, or leave the package out. */
  keepPrevious?: boolean | undefined;
};

export interface CreateOptions {
  /** dir://PATH (or a plain path) | oci://HOST[:PORT]/NS */
  output: string;
  /** Repository name in the index (default: last path component of the output). */
  name?: string;
  description?: string;
  /** Tree root: definition paths in the index are made relative to it. */
  treeRoot?: string;
  /** Layer compression (default gzip). */
  compression?: LayerCompression;
  /** Index compression (default gzip). */
  indexCompression?: Compression;
  /** oci output: upload; without it nothing is pushed (a dry run that still packs). */
  push?: boolean;
  /** Entry mtimes and index timestamp; default $SOURCE_DATE_EPOCH, else the newest tree file. */
  sourceDateEpoch?: number;
  /** Where oci output packs before pushing (default <cacheDir>/). */
  cacheDir?: string;
  registry?: RegistryOptions;
  concurrency?: number;
  log?: (line: string) => void;
}

export interface CreateResult {
  url: string;
  index: RepoIndex;
  indexDigest: string;
  indexManifestDigest: string;
  /** Package ids packed in this run. */
  packed: string[];
  /** Package ids whose image from the last run was reused. */
  reused: string[];
  /** Package ids indexed without an image (no payload). */
  metaOnly: string[];
  /**
   * createFromTree: packages built from build.yaml steps that the output does not have yet (left
   * out of the index; `cpm build` builds them). Those it has keep their entry.
   */
  needsBuild?: string[];
  /** Digests of the blobs and manifests uploaded (oci only), sorted. */
  uploads: string[];
  /** True when the index differs from the previous one (revision bumped). */
  changed: boolean;
  pushed: boolean;
}

function envEpoch(): number | undefined {
  const v = process.env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0)
    throw new CpmError('E_USAGE', `SOURCE_DATE_EPOCH="${v}" is not a non-negative integer`);
  return n;
}

/** Whether the package's files come from build steps (`cpm build`) rather than a payload dir. */
function builtBySteps(p: LoadedPackage): boolean {
  const b = p.build?.spec;
  return (
    !!b &&
    b.payload === undefined &&
    (b.steps.length > 0 || b.unpack || typeof b.fields.package_dir === 'string')
  );
}

/**
 * The one mapping from a loaded tree package to what `createRepository` packs: the tree-only
 * fields dropped, the finalizer's spec taken, the source file made absolute for display.
 */
export function createInputOf(p: LoadedPackage, displayRoot: string | undefined): CreateInput {
  const {
    dir: _dir,
    definitionFile,
    kind: _k,
    values: _v,
    build: _b,
    finalize,
    payloadDir,
    payloadTree,
    problems: _p,
    subpackageOf: _s,
    filter,
    ...spec
  } = p;
  const input: CreateInput = { ...spec, payloadDir, finalize: finalize?.spec ?? undefined };
  if (filter) input.filter = filter;
  if (payloadDir && payloadTree) input.payloadGuard = { tree: payloadTree, file: definitionFile };
  if (spec.source?.file && displayRoot)
    input.source = { ...spec.source, file: path.resolve(displayRoot, spec.source.file) };
  return input;
}

function entryOf(p: CreateInput, treeRoot: string | undefined): IndexPackage {
  // canonicalJson sorts the keys again: the layout does not change the index bytes
  const { extra, ...fields } = specToJson(p, 'db');
  const e: IndexPackage = { ...fields, extra: extra ?? {}, contentKey: '' };
  if (p.finalize !== undefined) e.finalize = JSON.parse(JSON.stringify(p.finalize)) as unknown;
  if (p.source?.file) {
    const f =
      treeRoot && path.isAbsolute(p.source.file)
        ? path.relative(treeRoot, p.source.file)
        : p.source.file;
    e.source = {
      file: f.split(path.sep).join('/'),
      ...(p.source.line ? { line: p.source.line } : {}),
    };
  }
  return e;
}

async function mtimeOf(file: string | undefined): Promise<number> {
  if (!file) return 0;
  try {
    return Math.floor((await fsp.stat(file)).mtimeMs / 1000);
  } catch {
    return 0;
  }
}

/** mtimeOf once per file: a collection's packages share one (65k stats → 58 for Debian). */
function mtimeCache(): (file: string | undefined) => Promise<number> {
  const seen = new Map<string, Promise<number>>();
  return (file) => {
    if (!file) return Promise.resolve(0);
    let m = seen.get(file);
    if (!m) seen.set(file, (m = mtimeOf(file)));
    return m;
  };
}

/**
 * The content key of a package built from build.yaml: its index metadata (what the package image
 * labels carry), the build hash and the packing parameters.
 */
export function builtContentKey(
  entry: IndexPackage,
  buildHash: string,
  compression: LayerCompression,
  layerEpoch: number,
  platform: ReturnType<typeof hostPlatform>,
): string {
  const meta = { ...entry, contentKey: undefined, source: undefined, image: undefined };
  return contentKey({ meta, build: buildHash, compression, layerEpoch, platform });
}

/** The index entry `repo create` writes for `p` (contentKey and image not set yet). */
export function indexEntryOf(p: CreateInput, treeRoot: string | undefined): IndexPackage {
  return entryOf(p, treeRoot);
}

/** The layer epoch `repo create` packs with: the option, else $SOURCE_DATE_EPOCH, else 0. */
export function layerEpochOf(opts: Pick<CreateOptions, 'sourceDateEpoch'>): number {
  return opts.sourceDateEpoch ?? envEpoch() ?? 0;
}

/** Which entries of `dir` a luet include/exclude filter keeps ("rel/path" → kept). */
async function filteredEntries(dir: string, filter: PayloadFilter): Promise<Set<string>> {
  const compile = (list: string[], what: string): RegExp[] =>
    list.map((r) => {
      try {
        return new RegExp(r);
      } catch (e) {
        throw new CpmError(
          'E_TREE',
          `build.yaml ${what}: "${r}" is not a regular expression: ${(e as Error).message}`,
        );
      }
    });
  const inc = compile(filter.includes, 'includes');
  const exc = compile(filter.excludes, 'excludes');
  const kept = new Set<string>();
  // luet matches each path as "/rel"; includes keep matches only, excludes drop matches.
  const visit = async (rel: string): Promise<boolean> => {
    let any = false;
    for (const e of await fsp.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const abs = `/${r}`;
      let keep =
        (inc.length === 0 || inc.some((x) => x.test(abs))) && !exc.some((x) => x.test(abs));
      // A directory stays when something below it is kept (its files need it).
      if (e.isDirectory() && !exc.some((x) => x.test(abs)) && (await visit(r))) keep = true;
      if (keep) {
        kept.add(r);
        any = true;
      }
    }
    return any;
  };
  await visit('');
  return kept;
}

/**
 * A fault while packing `id`, named with the package: a system error mapped (ENOSPC, EACCES, …),
 * one mapped below (the blob store's) mapped again with the package and whose storage it is
 * (`where`: the output for dir://, the cache an oci:// output packs into). Others are returned.
 */
function packFault(e: unknown, id: string, payload: string, where: Where): unknown {
  const doing = `${id}: packing: writing`;
  const context = { package: id };
  if (!(e instanceof CpmError)) return fsError(e, { doing, path: payload, where, context });
  if (e.context.package !== undefined) return e;
  if (e.context.errno !== undefined && e.cause !== undefined) {
    const path = typeof e.context.path === 'string' ? e.context.path : payload;
    return fsError(e.cause, { doing, path, where, context: { ...e.context, ...context } });
  }
  if (e.code !== 'E_IO') return e;
  // a payload that cannot be read (walk, digest): the message has the path, add the package
  return new CpmError(e.code, `${id}: packing: ${e.message}`, {
    ...(e.hint ? { hint: e.hint } : {}),
    context: { ...e.context, ...context },
    cause: e,
  });
}

/**
 * The index's record of a package image: one just built by buildPackageImage, or one read back
 * (its manifest's descriptor and layers).
 */
export function indexImageOf(
  pkg: PackageSpec,
  img: { descriptor: Descriptor; manifest: Pick<ImageManifest, 'layers'> },
): IndexImage {
  return {
    repository: packageRepository(pkg),
    tag: encodeTag(pkg.version),
    manifestDigest: img.descriptor.digest,
    manifestMediaType: img.descriptor.mediaType,
    manifestSize: img.descriptor.size,
    layers: img.manifest.layers.map((l) => ({
      digest: l.digest,
      mediaType: l.mediaType,
      size: l.size,
    })),
  };
}

export async function openRepoTarget(opts: CreateOptions): Promise<RepoTarget> {
  const out = opts.output;
  if (out.startsWith('oci://')) {
    const cache = opts.cacheDir ?? path.join(os.tmpdir(), 'cpm-repo-create');
    return new RegistryTarget(out, new BlobStore(cache), opts.registry ?? {}, !opts.push);
  }
  if (/^[a-z]+:\/\//.test(out) && !out.startsWith('dir://')) {
    throw new CpmError('E_USAGE', `--output ${out}: expected dir://PATH or oci://HOST/NS`);
  }
  if (opts.push) throw new CpmError('E_USAGE', '--push applies to oci:// outputs only');
  return DirTarget.open(out.startsWith('dir://') ? out.slice('dir://'.length) : out);
}

/**
 * Publishes `inputs` and writes the index. When another writer replaced a registry index while
 * this run worked (IndexChangedError), it starts over from the new index (the packages marked
 * keepPrevious keep that writer's entries; the index is otherwise this run's inputs) up to 5
 * times; images already pushed are not uploaded again.
 */
export async function createRepository(
  inputs: readonly CreateInput[],
  opts: CreateOptions,
): Promise<CreateResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await createOnce(inputs, opts);
    } catch (e) {
      if (!(e instanceof IndexChangedError) || attempt >= 5) throw e;
      opts.log?.(`${e.message}; starting over from the new index (attempt ${attempt + 1})`);
    }
  }
}

async function createOnce(
  inputs: readonly CreateInput[],
  opts: CreateOptions,
): Promise<CreateResult> {
  const log = opts.log ?? (() => undefined);
  const compression = opts.compression ?? 'gzip';
  const epochFromEnv = opts.sourceDateEpoch ?? envEpoch();
  const layerEpoch = epochFromEnv ?? 0;
  const platform = hostPlatform();
  const seen = new Set<string>();
  for (const p of inputs) {
    const id = packageId(p);
    if (seen.has(id))
      throw new CpmError('E_TREE', `package ${id} is defined twice`, { context: { package: id } });
    seen.add(id);
  }

  const target = await openRepoTarget(opts);
  try {
    const prev = await target.previousIndex();
    const prevById = new Map((prev?.packages ?? []).map((p) => [packageId(p), p]));
    let newest = 0;
    const packed: string[] = [];
    const reused: string[] = [];
    const metaOnly: string[] = [];
    const toPublish: IndexImage[] = [];
    const definitionMtime = mtimeCache();

    const kept: IndexPackage[] = [];
    const current = inputs.filter((p) => {
      if (!p.keepPrevious) return true;
      const old = prevById.get(packageId(p));
      if (old) {
        kept.push(old);
        reused.push(packageId(p));
      }
      return false;
    });
    /** Takes the last run's image when its content key is this one's and it is still there. */
    const reuse = async (id: string, entry: IndexPackage): Promise<boolean> => {
      const old = prevById.get(id);
      if (!old?.image || old.contentKey !== entry.contentKey) return false;
      if (!(await target.hasImage(old.image))) return false;
      entry.image = old.image;
      reused.push(id);
      return true;
    };
    const fresh = await mapLimit(
      current,
      opts.concurrency ?? Math.min(4, os.cpus().length),
      async (p) => {
        const id = packageId(p);
        const entry = entryOf(p, opts.treeRoot);
        // Read before assigning: `newest = Math.max(newest, await …)` would lose concurrent updates.
        const defMtime = await definitionMtime(p.source?.file);
        newest = Math.max(newest, defMtime);
        const meta = { ...entry, contentKey: undefined, source: undefined };
        if (p.buildHash !== undefined) {
          entry.contentKey = builtContentKey(entry, p.buildHash, compression, layerEpoch, platform);
          if (await reuse(id, entry)) return entry;
          if (!p.prebuilt)
            throw new CpmError(
              'E_REPO',
              `${id} is built from build.yaml and its image is not in ${target.url}`,
              {
                context: { package: id },
                hint: 'run cpm build for it',
              },
            );
          entry.image = p.prebuilt;
          packed.push(id);
          toPublish.push(entry.image);
          return entry;
        }
        if (!p.payloadDir) {
          entry.contentKey = contentKey({ meta });
          metaOnly.push(id);
          return entry;
        }
        const source = p.payloadGuard
          ? await treeDirAtUse(
              p.payloadDir,
              [p.payloadGuard.tree],
              'payload',
              p.payloadGuard.file,
              id,
            )
          : p.payloadDir;
        let img: Awaited<ReturnType<typeof buildPackageImage>>;
        try {
          // A filter is applied while reading the payload: no filtered copy is made.
          const keptFiles = p.filter ? await filteredEntries(source, p.filter) : undefined;
          const keep = keptFiles ? (rel: string) => keptFiles.has(rel) : undefined;
          const payload = await payloadDigest(source, keep);
          newest = Math.max(newest, payload.newestMtime);
          entry.contentKey = contentKey({
            meta,
            payload: payload.digest,
            compression,
            layerEpoch,
            platform,
          });
          if (await reuse(id, entry)) return entry;
          log(`pack ${id}`);
          img = await buildPackageImage(p, source, {
            store: target.store,
            compression,
            sourceDateEpoch: layerEpoch,
            platform,
            ...(keep ? { keep } : {}),
            ...(p.finalize ? { finalize: p.finalize } : {}),
          });
        } catch (e) {
          throw packFault(e, id, source, target instanceof DirTarget ? 'output' : 'cache');
        }
        entry.image = indexImageOf(p, img);
        packed.push(id);
        toPublish.push(entry.image);
        return entry;
      },
    );

    const entries = [...fresh, ...kept];
    // Images are independent (each image's manifest still goes after its own blobs); pushing a
    // few at once hides registry round trips, which dominate for many small packages.
    await mapLimit(toPublish, opts.concurrency ?? 4, async (img) => {
      if (target instanceof RegistryTarget && opts.push) log(`push ${img.repository}:${img.tag}`);
      await target.publishImage(img);
    });

    // Both sides in the compact form, so an older-schema index compares equal (no previous
    // index: nothing to compare, and a 65k-package tree spares a second serialisation).
    const canonicalPackages = (list: IndexPackage[]): string =>
      canonicalJson(
        list.map(compactIndexPackage).sort((a, b) => (packageId(a) < packageId(b) ? -1 : 1)),
      );
    const packagesJson = prev ? canonicalPackages(entries) : undefined;
    const prevJson = prev ? canonicalPackages(prev.packages) : undefined;
    const name = opts.name ?? (path.basename(opts.output.replace(/\/+$/, '')) || 'cpm');
    const changed =
      packagesJson !== prevJson ||
      prev?.repository.name !== name ||
      (prev?.repository.description ?? '') !== (opts.description ?? '');
    const index: RepoIndex = {
      schemaVersion: INDEX_SCHEMA_VERSION,
      repository: {
        name,
        ...(opts.description ? { description: opts.description } : {}),
        revision: prev ? (changed ? prev.repository.revision + 1 : prev.repository.revision) : 1,
        timestamp: !changed && prev ? prev.repository.timestamp : (epochFromEnv ?? newest),
      },
      packages: entries,
    };
    const serialized = await serializeIndex(index, opts.indexCompression ?? 'gzip');
    const artifact = buildIndexArtifact(index.repository, serialized);
    const allImages = entries.map((e) => e.image).filter((i): i is IndexImage => i !== undefined);
    await target.publishIndex(artifact, allImages);
    return {
      url: target.url,
      index,
      indexDigest: serialized.digest,
      indexManifestDigest: artifact.manifestDigest,
      packed: packed.sort(),
      reused: reused.sort(),
      metaOnly: metaOnly.sort(),
      uploads: target instanceof RegistryTarget ? [...target.uploads].sort() : [],
      changed,
      pushed: target instanceof RegistryTarget ? !!opts.push : true,
    };
  } finally {
    await target.close();
  }
}

/** Loads a packages tree (refusing one with problems) and publishes it. */
export interface FromTreeOptions extends CreateOptions {
  /** Values files for the templates (later wins), as `cpm tree --values`. */
  values?: string[];
  /** Follow luet where cpm refuses by default (see docs/tree-format.md). */
  lenient?: boolean;
  /** Refuse the whole tree on any problem (default: leave out the packages with problems). */
  strict?: boolean;
}

export interface FromTreeResult extends CreateResult {
  /** Packages (or stanzas) left out because of their problems, each with the first problem. */
  skipped: Array<{ what: string; problem: string }>;
  /** One line per thing a user must hear about (packages left out, and why), already worded. */
  warnings: string[];
}

/**
 * Packs a tree (or several, merged as luet's repeated --tree). A package with problems is left out
 * and named, the rest is published, unless `strict`; problems that belong to no one package (a
 * values file, a build cycle, a differing duplicate) refuse the whole tree.
 */
export async function createFromTree(
  treeDir: string | readonly string[],
  opts: FromTreeOptions,
): Promise<FromTreeResult> {
  // The loaded tree (template values, raw YAML) is garbage once the inputs are made: a large
  // tree's packing runs with half the heap (65k packages: ≈ 300 MB less to keep and scan).
  const { inputs, skipped, treeRoot } = await inputsFromTree(treeDir, opts);
  const r = await createRepository(inputs, { ...opts, treeRoot });
  const indexed = new Set(r.index.packages.map((p) => packageId(p)));
  r.needsBuild = inputs
    .filter((i) => i.keepPrevious && !indexed.has(packageId(i)))
    .map((i) => packageId(i))
    .sort();
  const warnings = [
    ...skipped.map((s) => `left out ${s.what}: ${s.problem}`),
    ...r.needsBuild.map(
      (id) =>
        `left out ${id}: it is made by build.yaml steps, which repo create does not run, and no cpm build output was found`,
    ),
  ];
  return { ...r, skipped, warnings };
}

/** Loads and checks the tree; what createRepository packs, and what was left out. */
async function inputsFromTree(
  treeDir: string | readonly string[],
  opts: FromTreeOptions,
): Promise<{ inputs: CreateInput[]; skipped: FromTreeResult['skipped']; treeRoot: string }> {
  const tree = await loadTree(treeDir, {
    ...(opts.values ? { values: opts.values } : {}),
    ...(opts.lenient ? { lenient: true } : {}),
  });
  const general = treeWideProblems(tree);
  // Nothing left to publish once the packages with problems are out: refuse, as --strict would.
  const nothingLeft = tree.problems.length > 0 && tree.packages.every((p) => p.problems.length > 0);
  const blocking = opts.strict || nothingLeft ? tree.problems : general;
  if (blocking.length > 0) {
    const shown = blocking.slice(0, 10).map(formatProblem);
    const more = blocking.length > 10 ? `\n… and ${blocking.length - 10} more` : '';
    throw new CpmError(
      'E_TREE',
      `the tree has ${blocking.length} problem(s)${opts.strict || nothingLeft ? '' : ' that no single package can be left out for'}:\n${shown.join('\n')}${more}`,
      {
        hint: 'cpm tree validate shows them all',
        context: { path: tree.dir },
      },
    );
  }
  const skipped: FromTreeResult['skipped'] = [];
  for (const s of tree.skipped) {
    const first = s.problems[0];
    skipped.push({
      what: `${s.file}:${s.line}${s.path ? ` (${s.path})` : ''}`,
      problem: first ? formatProblem(first) : 'not a package',
    });
  }
  const bad = new Set(tree.packages.filter((p) => p.problems.length > 0).map(packageId));
  for (const p of tree.packages) {
    if (p.problems.length > 0)
      skipped.push({ what: packageId(p), problem: formatProblem(p.problems[0]!) });
    else if (p.subpackageOf && bad.has(p.subpackageOf))
      skipped.push({ what: packageId(p), problem: `its parent ${p.subpackageOf} has problems` });
  }
  const skippedIds = new Set(skipped.map((s) => s.what));
  const good = tree.packages.filter((p) => !skippedIds.has(packageId(p)));
  const displayRoot = tree.dirs.length === 1 ? path.dirname(tree.dir) : undefined;
  // Packages whose files come from build steps: their subpackages are cut from that build too.
  const stepsBuilt = new Set(good.filter(builtBySteps).map(packageId));
  const inputs: CreateInput[] = good.map((p) => {
    const input = createInputOf(p, displayRoot);
    // Files made by build steps: `cpm build` makes the image; here the entry it wrote is kept.
    const parent = p.subpackageOf;
    if (builtBySteps(p) || (parent !== undefined && !p.payloadDir && stepsBuilt.has(parent)))
      input.keepPrevious = true;
    return input;
  });
  return { inputs, skipped, treeRoot: tree.dir };
}
