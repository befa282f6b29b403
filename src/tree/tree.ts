/**
 * The packages-tree loader: walks a luet-format tree, reads definitions and collections, renders
 * build specs and finalizers with the package's values (plus `--values` files), and checks the
 * whole tree, collecting every problem in one run.
 */
// Synchronous calls only: a tree is hundreds of small reads and stats, for which a thread-pool
// round trip each costs more than the call (and node:fs/promises is ≈ 3 ms to load).
import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CpmError } from '../errors.js';
import { throwFs } from '../util/fs-errors.js';
import { mergeValues, readBuildSpec, readFinalize, renderFile, type BuildSpec } from './build.js';
import type { FinalizeSpec } from '../package/finalize.js';
import { packageValues, readPackage, realFieldValues, type FieldCtx } from './definition.js';
import { familyKey, packageId, type Dep, type PackageSpec } from '../package/package.js';
import { formatProblem, Report, type Problem } from './problems.js';
import { TemplateSet } from './template/exec.js';
import { PackageUniverse } from '../package/universe.js';
import { describeSelector } from '../package/version.js';
import {
  DEFAULT_YAML_LIMITS,
  lineOf,
  loadYamlFile,
  type LoadedYaml,
  type YamlLimits,
} from './yaml.js';
import { collate } from '../util/collate.js';

export interface RenderedFile<S> {
  /** Display path of the source file. */
  file: string;
  raw: string;
  /** null when rendering failed (see problems). */
  rendered: string | null;
  spec: S | null;
}

export interface LoadedPackage extends PackageSpec {
  /** Absolute package directory (the build context). */
  dir: string;
  /** Display path of definition.yaml or collection.yaml. */
  definitionFile: string;
  kind: 'definition' | 'collection';
  /** Template values the build spec was rendered with (own fields, overridden by --values). */
  values: Record<string, unknown>;
  /** Absolute directory whose files form the package (build.yaml `payload:`, else `root/`). */
  payloadDir?: string;
  /** The tree the payload must stay inside (checked again at use: see treeDirAtUse). */
  payloadTree?: string;
  build: RenderedFile<BuildSpec> | null;
  finalize: RenderedFile<FinalizeSpec> | null;
  /** The problems found while reading, rendering and checking this package (also in the tree's). */
  problems: Problem[];
  /** For a luet subpackage: the id of the package whose build it is cut from. */
  subpackageOf?: string;
  /** build.yaml `includes:`/`excludes:` (regexes on "/path"), applied to the payload's files. */
  filter?: PayloadFilter;
}

export interface PayloadFilter {
  includes: string[];
  excludes: string[];
}

/** A stanza that could not be read as a package, and why. */
export interface SkippedStanza {
  file: string;
  line: number;
  path: string;
  problems: Problem[];
}

export interface TreeStats {
  packages: number;
  categories: number;
  definitions: number;
  collections: number;
  buildSpecs: number;
  finalizers: number;
}

export interface LoadedTree {
  /** Absolute tree directory (the first one when several were merged). */
  dir: string;
  /** Every tree directory, in the order given (the first tree's package of an id wins). */
  dirs: string[];
  packages: LoadedPackage[];
  /** Every problem of the tree, sorted; each formats as `file:line: path: message`. */
  problems: Problem[];
  warnings: Problem[];
  universe: PackageUniverse<LoadedPackage>;
  stats: TreeStats;
  /** Stanzas that are not packages (their problems are in `problems`). */
  skipped: SkippedStanza[];
}

export interface LoadTreeOptions {
  /** Values files (later ones win), overriding each package's own fields in templates. */
  values?: string[];
  limits?: Partial<YamlLimits>;
  /** Most directory entries walked before giving up (hostile trees). */
  maxEntries?: number;
  /** Follow luet where cpm refuses by default (differing duplicates: keep the first). */
  lenient?: boolean;
}

interface PackageDir {
  abs: string;
  files: Set<string>;
  /** `root/` of the directory if it is one (asked once: a collection's packages share it). */
  rootDir?: { dir?: string; escape?: PayloadEscape };
}

const TREE_FILES = ['definition.yaml', 'collection.yaml', 'build.yaml', 'finalize.yaml'];

/**
 * `name` (one path segment: no separator, not `.` or `..`) inside `dir` (absolute, normalized):
 * join() without its normalizing, which walks the whole path character by character (hundreds of
 * calls per tree, all before the JIT warms up).
 */
function inDir(dir: string, name: string): string {
  return dir.endsWith(sep) ? dir + name : dir + sep + name;
}

/** Walks the tree, following directory symlinks but never into a loop. */
async function walk(
  root: string,
  report: Report,
  display: (p: string) => string,
  maxEntries: number,
): Promise<PackageDir[]> {
  const out: PackageDir[] = [];
  const visited = new Map<string, string>(); // real path → first path it was seen at
  let entries = 0;
  const rootReal = realpathSync.native(root);

  // `known`: the real path when the caller knows it (a directory entry that is not a symlink, in a
  // directory whose real path is known, is that path plus its name); else it is asked for (a
  // realpath walks every component of the path: hundreds of system calls per tree)
  const visit = async (
    dir: string,
    known: string | undefined,
    ancestors: Set<string>,
  ): Promise<void> => {
    const real = known ?? realpathSync.native(dir);
    if (ancestors.has(real)) {
      report.error({
        code: 'E_TREE',
        file: display(dir),
        path: '',
        message: `symlink loop: this directory is ${display(visited.get(real) ?? real)} again`,
      });
      return;
    }
    const first = visited.get(real);
    if (first !== undefined) {
      report.warn({
        code: 'E_TREE',
        file: display(dir),
        path: '',
        message: `same directory as ${display(first)}; skipped`,
      });
      return;
    }
    visited.set(real, dir);
    const inner = new Set(ancestors).add(real);
    const list = readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
    entries += list.length;
    if (entries > maxEntries) {
      throw new CpmError(
        'E_TREE',
        `${display(root)}: more than ${maxEntries} directory entries; not a packages tree?`,
        {
          context: { path: root },
        },
      );
    }
    const files = new Set<string>();
    const subdirs: Array<{ dir: string; real: string | undefined }> = [];
    for (const e of list) {
      if (e.name.startsWith('.')) continue; // .git and friends
      // `dir` is normalized, an entry name is one segment
      const p = inDir(dir, e.name);
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      const link = e.isSymbolicLink();
      if (link) {
        try {
          const st = statSync(p);
          isDir = st.isDirectory();
          isFile = st.isFile();
        } catch {
          report.warn({
            code: 'E_TREE',
            file: display(p),
            path: '',
            message: 'dangling symlink; skipped',
          });
          continue;
        }
      }
      if (isFile && TREE_FILES.includes(e.name)) files.add(e.name);
      // The top-level templates/ directory holds shared template blocks, not packages.
      if (isDir && !(real === rootReal && e.name === 'templates'))
        subdirs.push({ dir: p, real: link ? undefined : inDir(real, e.name) });
    }
    if (files.has('definition.yaml') || files.has('collection.yaml')) out.push({ abs: dir, files });
    else if (files.has('build.yaml')) {
      report.warn({
        code: 'E_TREE',
        file: display(inDir(dir, 'build.yaml')),
        path: '',
        message: 'build.yaml without definition.yaml or collection.yaml; ignored',
      });
    }
    for (const s of subdirs) await visit(s.dir, s.real, inner);
  };
  await visit(root, rootReal, new Set());
  return out;
}

/** Repeated keys and the like: accepted as luet does, reported as warnings at file:line. */
function yamlWarnings(y: LoadedYaml, report: Report, path = ''): void {
  for (const w of y.warnings)
    report.warn({ code: 'E_YAML', file: y.file, line: w.line, path, message: w.message });
}

function errorToProblem(e: unknown, file: string): Problem {
  if (e instanceof CpmError) {
    const line = typeof e.context.line === 'number' ? e.context.line : undefined;
    const msg = e.message.startsWith(file)
      ? e.message.slice(file.length).replace(/^(:\d+)?: /, '')
      : e.message;
    return { code: e.code, file, line, path: '', message: msg };
  }
  const err = e as NodeJS.ErrnoException;
  return {
    code: 'E_IO',
    file,
    path: '',
    message: err.code ? `${err.code}: ${err.message}` : String(err?.message ?? e),
  };
}

/**
 * A tree file, size-capped. Tree files are read synchronously: a CLI command waits for the whole
 * tree anyway, and a promise round trip through the thread pool per file cost more CPU than the
 * reads themselves (hundreds of small files).
 */
function readCapped(path: string, file: string, limits: YamlLimits): string {
  const st = statSync(path);
  if (st.size > limits.maxBytes) {
    throw new CpmError(
      'E_YAML',
      `${file}: file is ${st.size} bytes, above the ${limits.maxBytes}-byte limit for tree files`,
      { context: { file } },
    );
  }
  return readFileSync(path, 'utf8');
}

/** Loads and checks a packages tree. Never throws for tree content: problems are returned. */
/** The deepest directory holding every path (for display names across several trees). */
function commonDir(paths: string[]): string {
  let parts = paths[0]!.split(sep);
  for (const p of paths.slice(1)) {
    const q = p.split(sep);
    let i = 0;
    while (i < parts.length && i < q.length && parts[i] === q[i]) i++;
    parts = parts.slice(0, i);
  }
  return parts.join(sep) || sep;
}

/** A segment that path.relative would rewrite: empty, `.` or `..`. */
const ODD_SEGMENT = /(?:^|\/)\.{0,2}(?:\/|$)/;

/**
 * How a path is shown: relative to `base` (normalized, absolute), with `/`; the name of `base`
 * itself. A path below it that needs no normalizing is sliced, not given to path.relative, which
 * normalizes both sides each time (≈ 1000 calls for a tree, run before the JIT warms up).
 */
export function displayFrom(base: string): (p: string) => string {
  const prefix = base.endsWith(sep) ? base : base + sep;
  return (p) => {
    if (sep === '/' && p.startsWith(prefix) && !ODD_SEGMENT.test(p.slice(prefix.length)))
      return p.slice(prefix.length);
    return relative(base, p).split(sep).join('/') || basename(p);
  };
}

/**
 * Loads and checks a packages tree, or several merged as luet's repeated `--tree` does: each tree
 * with its own templates/, all into one set of packages where the first tree's package of an id
 * wins. Never throws for tree content: problems are returned.
 */
export async function loadTree(
  dir: string | readonly string[],
  opts: LoadTreeOptions = {},
): Promise<LoadedTree> {
  const given = typeof dir === 'string' ? [dir] : [...dir];
  if (given.length === 0) throw new CpmError('E_USAGE', 'no packages tree given');
  const roots = given.map((d) => resolve(d));
  const limits: YamlLimits = { ...DEFAULT_YAML_LIMITS, ...opts.limits };
  // One tree: paths shown from its parent (packages/...). Several: from their common directory.
  const base = roots.length === 1 ? dirname(roots[0]!) : commonDir(roots.map((r) => dirname(r)));
  const display = displayFrom(base);
  const report = new Report();

  for (const [i, root] of roots.entries()) {
    let rootStat;
    try {
      rootStat = statSync(root);
    } catch {
      throw new CpmError('E_NOT_FOUND', `packages tree ${given[i]} does not exist`, {
        context: { path: root },
      });
    }
    if (!rootStat.isDirectory()) {
      throw new CpmError('E_TREE', `packages tree ${given[i]} is not a directory`, {
        context: { path: root },
      });
    }
  }

  // --values files: merged in order, later wins.
  let overrides: Record<string, unknown> = {};
  for (const v of opts.values ?? []) {
    try {
      const y = await loadYamlFile(resolve(v), v, limits);
      yamlWarnings(y, report);
      if (y.value === null) continue;
      if (typeof y.value !== 'object' || Array.isArray(y.value)) {
        report.error({
          code: 'E_TREE',
          file: v,
          line: 1,
          path: '',
          message: 'a values file must be a map',
        });
        continue;
      }
      overrides = mergeValues(overrides, y.value as Record<string, unknown>);
    } catch (e) {
      report.error(errorToProblem(e, v));
    }
  }

  const packages: LoadedPackage[] = [];
  const skipped: SkippedStanza[] = [];
  const treeOf = new Map<LoadedPackage, number>();
  const stats: TreeStats = {
    packages: 0,
    categories: 0,
    definitions: 0,
    collections: 0,
    buildSpecs: 0,
    finalizers: 0,
  };
  for (const [i, root] of roots.entries()) {
    const templates = await loadTemplates(root, display, limits, report);
    const dirs = await walk(root, report, display, opts.maxEntries ?? 200_000);
    for (const pd of dirs) {
      const loaded = await loadPackageDir(pd, {
        root,
        display,
        templates,
        overrides,
        limits,
        report,
        stats,
        lenient: opts.lenient ?? false,
        skipped,
      });
      for (const p of loaded) treeOf.set(p, i);
      packages.push(...loaded);
    }
  }

  const kept = dropDuplicates(packages, report, opts.lenient ?? false, treeOf);
  const universe = new PackageUniverse(kept);
  checkBuildCycles(kept, universe, report);
  checkUnresolved(kept, universe, report);

  stats.packages = kept.length;
  stats.categories = new Set(kept.map((p) => p.category)).size;
  const { problems, warnings } = report.sorted();
  return {
    dir: roots[0]!,
    dirs: roots,
    packages: universe.all(),
    problems,
    warnings,
    universe,
    stats,
    skipped,
  };
}

/** Shared template blocks: templates/*.yaml (and .yml, .tpl) at the top of a tree. */
async function loadTemplates(
  root: string,
  display: (p: string) => string,
  limits: YamlLimits,
  report: Report,
): Promise<TemplateSet> {
  const templates = new TemplateSet();
  const tdir = inDir(root, 'templates');
  try {
    const names = readdirSync(tdir)
      .filter((n) => n.endsWith('.yaml') || n.endsWith('.yml') || n.endsWith('.tpl'))
      .sort();
    for (const n of names) {
      const f = display(inDir(tdir, n));
      try {
        templates.addDefinitions(readCapped(inDir(tdir, n), f, limits), f);
      } catch (e) {
        report.error(errorToProblem(e, f));
      }
    }
  } catch (e) {
    if (
      (e as NodeJS.ErrnoException).code !== 'ENOENT' &&
      (e as NodeJS.ErrnoException).code !== 'ENOTDIR'
    )
      throw e;
  }
  return templates;
}

/** What loading one package directory needs from the tree being loaded. */
interface DirContext {
  root: string;
  display: (p: string) => string;
  templates: TemplateSet;
  overrides: Record<string, unknown>;
  limits: YamlLimits;
  report: Report;
  stats: TreeStats;
  lenient: boolean;
  skipped: SkippedStanza[];
}

async function loadPackageDir(pd: PackageDir, ctx: DirContext): Promise<LoadedPackage[]> {
  const { display, limits, report, stats } = ctx;
  if (pd.files.has('collection.yaml') && pd.files.has('definition.yaml')) {
    report.warn({
      code: 'E_TREE',
      file: display(inDir(pd.abs, 'definition.yaml')),
      path: '',
      message:
        'definition.yaml and collection.yaml in one directory: both are read, collection.yaml first, as luet does (they share build.yaml)',
    });
  }
  // build.yaml and finalize.yaml: read once per directory, shared by every package in it
  const readOptional = (name: string): string | null => {
    if (!pd.files.has(name)) return null;
    const file = inDir(pd.abs, name);
    try {
      return readCapped(file, display(file), limits);
    } catch (e) {
      report.error(errorToProblem(e, display(file)));
      return null;
    }
  };
  if (pd.files.has('build.yaml')) stats.buildSpecs++;
  if (pd.files.has('finalize.yaml')) stats.finalizers++;
  const buildRaw = readOptional('build.yaml');
  const finalizeRaw = readOptional('finalize.yaml');
  const out: LoadedPackage[] = [];
  // luet walks a directory's files in name order: collection.yaml before definition.yaml.
  for (const isCollection of [true, false]) {
    if (!pd.files.has(isCollection ? 'collection.yaml' : 'definition.yaml')) continue;
    const raws = { buildRaw, finalizeRaw };
    out.push(...(await loadDefinitionFile(pd, isCollection, raws, ctx)));
  }
  return out;
}

async function loadDefinitionFile(
  pd: PackageDir,
  isCollection: boolean,
  { buildRaw, finalizeRaw }: { buildRaw: string | null; finalizeRaw: string | null },
  ctx: DirContext,
): Promise<LoadedPackage[]> {
  const { root, display, templates, overrides, limits, report, stats, lenient, skipped } = ctx;
  const defPath = inDir(pd.abs, isCollection ? 'collection.yaml' : 'definition.yaml');
  const defFile = display(defPath);
  let y: LoadedYaml;
  try {
    y = await loadYamlFile(defPath, defFile, limits);
  } catch (e) {
    // The whole file is unreadable: whatever packages it holds are left out (skipped).
    const p = errorToProblem(e, defFile);
    report.error(p);
    skipped.push({ file: defFile, line: p.line ?? 1, path: '', problems: [p] });
    return [];
  }
  yamlWarnings(y, report);
  if (isCollection) stats.collections++;
  else stats.definitions++;

  // A collection is one YAML document (anchors and merge keys cross stanzas), split afterwards.
  const stanzas: Array<{ value: unknown; path: string }> = [];
  if (isCollection) {
    const v = y.value as Record<string, unknown> | null;
    if (!v || typeof v !== 'object' || Array.isArray(v) || !Array.isArray(v.packages)) {
      report.error({
        code: 'E_TREE',
        file: defFile,
        line: lineOf(y, v) ?? 1,
        path: 'packages',
        message: 'a collection needs a "packages:" list',
      });
      return [];
    }
    v.packages.forEach((p, i) => stanzas.push({ value: p, path: `packages[${i}]` }));
  } else {
    stanzas.push({ value: y.value, path: '' });
  }

  const out: LoadedPackage[] = [];
  for (const st of stanzas) {
    const before = report.problems.length;
    const ctx: FieldCtx = { y, file: defFile, path: st.path, report, lenient };
    const spec = readPackage(ctx, st.value);
    if (!spec) {
      skipped.push({
        file: defFile,
        line: lineOf(y, st.value) ?? 1,
        path: st.path,
        problems: report.problems.slice(before),
      });
      continue;
    }
    const raw = st.value as Record<string, unknown>;
    const values = mergeValues(packageValues(raw, spec), overrides);
    const id = packageId(spec);
    const pkg: LoadedPackage = {
      ...spec,
      dir: pd.abs,
      definitionFile: defFile,
      kind: isCollection ? 'collection' : 'definition',
      values,
      build: null,
      finalize: null,
      problems: [],
    };
    if (buildRaw !== null) {
      const file = display(inDir(pd.abs, 'build.yaml'));
      const rendered = renderFile(
        templates,
        buildRaw,
        file,
        values,
        report,
        isCollection ? `for ${id}` : '',
      );
      const shown = `${file} (rendered${isCollection ? ` for ${id}` : ''})`;
      const spec = rendered === null ? null : readBuildSpec(rendered, shown, report, '');
      pkg.build = { file, raw: buildRaw, rendered, spec };
    }
    if (finalizeRaw !== null) {
      const file = display(inDir(pd.abs, 'finalize.yaml'));
      // luet gives finalize.yaml only the real package fields, not extra keys.
      const fvalues = mergeValues(realFieldValues(raw, spec), overrides);
      const rendered = renderFile(
        templates,
        finalizeRaw,
        file,
        fvalues,
        report,
        isCollection ? `for ${id}` : '',
      );
      const shown = `${file} (rendered${isCollection ? ` for ${id}` : ''})`;
      const fspec = rendered === null ? null : readFinalize(rendered, shown, report);
      pkg.finalize = { file, raw: finalizeRaw, rendered, spec: fspec };
    }
    const payloadDir = await resolvePayload(pkg, root, display, report, pd);
    if (payloadDir) {
      pkg.payloadDir = payloadDir;
      pkg.payloadTree = root;
    }
    pkg.problems = report.problems.slice(before);
    const bs = pkg.build?.spec;
    if (bs && (bs.includes.length > 0 || bs.excludes.length > 0))
      pkg.filter = { includes: bs.includes, excludes: bs.excludes };
    out.push(pkg);
    // luet `subpackages:`: more packages whose files are a filtered part of this one's.
    for (const sub of bs?.subpackages ?? []) {
      out.push({
        ...sub.spec,
        dir: pd.abs,
        definitionFile: pkg.build!.file,
        kind: pkg.kind,
        values: {},
        build: null,
        finalize: null,
        problems: [],
        subpackageOf: id,
        ...(pkg.payloadDir ? { payloadDir: pkg.payloadDir, payloadTree: root } : {}),
        filter: { includes: sub.includes, excludes: sub.excludes },
      });
    }
  }
  return out;
}

/** How a payload directory leads out of its tree: where it really is, and the symlink that does it. */
export interface PayloadEscape {
  /** The payload directory as given. */
  dir: string;
  real: string;
  /** The first symlink on the way whose target is outside the tree (none: `..` in the path). */
  link?: string;
  /** Where that link leads (resolved). */
  target?: string;
}

/**
 * Whether `dir` (below `tree`, symlinks resolved) lies outside the tree: undefined when inside,
 * and then `inside(real)` has been told where it really is.
 */
function escapeOf(
  dir: string,
  tree: string,
  inside?: (real: string) => void,
): PayloadEscape | undefined {
  const realTree = realpathSync.native(tree);
  const real = realpathSync.native(dir);
  if (real === realTree || real.startsWith(realTree + sep)) {
    inside?.(real);
    return undefined;
  }
  const rel = relative(tree, dir);
  if (rel.startsWith('..')) return { dir, real };
  let at = tree;
  for (const part of rel.split(sep)) {
    at = join(at, part);
    if (!lstatSync(at).isSymbolicLink()) continue;
    const target = realpathSync.native(at);
    if (target !== realTree && !target.startsWith(realTree + sep))
      return { dir, real, link: at, target };
  }
  return { dir, real };
}

function escapeMessage(what: string, e: PayloadEscape, display: (p: string) => string): string {
  if (!e.link) return `${what} is outside the tree`;
  if (e.link === e.dir) return `${what} is a symlink to ${e.target}, outside the tree`;
  return `${what} leads outside the tree: ${display(e.link)} is a symlink to ${e.target}`;
}

/**
 * A directory of the tree cpm is about to read (a package's payload, or its directory as the
 * build context) as it is now, resolved (the path to read); refused when it leads outside the tree
 * it is in (the first of `trees` it lies below): the loader checked it, but a symlink swapped
 * since, or a package directory reached through a link out of the tree, must not bring host files
 * into a package or a build. `definitionFile` is the file it belongs to, for the message.
 */
export async function treeDirAtUse(
  dir: string,
  trees: readonly string[],
  what: 'payload' | 'build context',
  definitionFile: string,
  pkgId: string,
): Promise<string> {
  const tree = trees.find((t) => dir === t || dir.startsWith(t + sep)) ?? trees[0]!;
  let escape: PayloadEscape | undefined;
  let real = dir;
  try {
    escape = escapeOf(dir, tree, (r) => (real = r));
  } catch (e) {
    throwFs(e, {
      doing: `${pkgId}: reading the ${what} of ${definitionFile}`,
      path: dir,
      where: 'input',
      context: { package: pkgId, file: definitionFile },
    });
  }
  if (escape)
    throw new CpmError(
      'E_UNSAFE_ENTRY',
      `${definitionFile}: ${pkgId}: ${escapeMessage(`${what} ${dir}`, escape, (p) => p)}`,
      {
        hint: `a package's files must stay inside the packages tree; copy them into it`,
        context: { package: pkgId, file: definitionFile, path: escape.link ?? dir },
      },
    );
  // the path that was checked, not a second resolution (a link swapped in between)
  return real;
}

/** build.yaml `payload:` (relative to the package dir, inside the tree), else `root/` if present. */
async function resolvePayload(
  pkg: LoadedPackage,
  root: string,
  display: (p: string) => string,
  report: Report,
  pd: PackageDir,
): Promise<string | undefined> {
  const declared = pkg.build?.spec?.payload;
  if (declared === undefined) {
    const dir = inDir(pd.abs, 'root');
    // statSync: most package directories have no root/, and a thread-pool round trip per
    // directory to learn that was most of the loader's waiting. Without throwing for the usual
    // ENOENT: an error object and its stack per directory cost more than the call.
    pd.rootDir ??= (() => {
      let st;
      try {
        st = statSync(dir, { throwIfNoEntry: false });
      } catch {
        return {};
      }
      if (!st?.isDirectory()) return {};
      const escape = escapeOf(dir, root);
      return escape ? { escape } : { dir };
    })();
    const found = pd.rootDir;
    if (found.escape) {
      report.error({
        code: 'E_TREE',
        file: pkg.definitionFile,
        ...(pkg.source?.line ? { line: pkg.source.line } : {}),
        path: 'root/',
        message: escapeMessage(`payload directory ${display(dir)}`, found.escape, display),
      });
    }
    return found.dir;
  }
  const candidate = resolve(pkg.dir, declared);
  let st;
  try {
    st = statSync(candidate);
  } catch {
    st = null;
  }
  const where = { code: 'E_TREE' as const, file: pkg.build!.file, path: 'payload' };
  if (!st || !st.isDirectory()) {
    report.error({
      ...where,
      message: `payload directory "${declared}" (${display(candidate)}) does not exist`,
    });
    return undefined;
  }
  const escape = escapeOf(candidate, root);
  if (escape) {
    report.error({
      ...where,
      message: escapeMessage(`payload directory "${declared}"`, escape, display),
    });
    return undefined;
  }
  return candidate;
}

/** The runtime metadata of a package as text with sorted keys, to tell identical stanzas apart. */
function canonical(p: LoadedPackage): string {
  const dep = (d: Dep): unknown => [d.category, d.name, d.version];
  const sortKeys = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sortKeys);
    if (v === null || typeof v !== 'object') return v;
    const o = v as Record<string, unknown>;
    return Object.fromEntries(
      Object.keys(o)
        .sort()
        .map((k) => [k, sortKeys(o[k])]),
    );
  };
  return JSON.stringify(
    sortKeys({
      ...p.values,
      requires: p.requires.map(dep),
      conflicts: p.conflicts.map(dep),
      provides: p.provides.map(dep),
    }),
  );
}

/**
 * luet keeps the first package of an id and drops later ones silently. An identical repeat is
 * harmless (warned); a repeat that differs is refused unless `lenient`, since which one wins
 * depends on file order.
 */
function dropDuplicates(
  packages: LoadedPackage[],
  report: Report,
  lenient: boolean,
  treeOf: Map<LoadedPackage, number>,
): LoadedPackage[] {
  const seen = new Map<string, LoadedPackage>();
  const kept: LoadedPackage[] = [];
  for (const p of packages) {
    const id = packageId(p);
    const first = seen.get(id);
    if (!first) {
      seen.set(id, p);
      kept.push(p);
      continue;
    }
    const at = (x: LoadedPackage): string =>
      `${x.source?.file}${x.source?.line ? ':' + x.source.line : ''}`;
    const where = {
      code: 'E_TREE' as const,
      file: p.source?.file ?? p.definitionFile,
      line: p.source?.line,
      path: '',
    };
    if (treeOf.get(p) !== treeOf.get(first)) {
      // Trees given later add to earlier ones and never replace their packages (luet's --tree).
      report.warn({
        ...where,
        message: `${id} is also in an earlier tree (${at(first)}); the earlier tree's is kept (as luet)`,
      });
    } else if (canonical(p) === canonical(first)) {
      report.warn({
        ...where,
        message: `repeats ${id} from ${at(first)} identically; the first is kept (as luet)`,
      });
    } else if (lenient) {
      report.warn({
        ...where,
        message: `duplicate definition of ${id} (first at ${at(first)}), different from the first; the first is kept (--lenient, as luet)`,
      });
    } else {
      report.error({
        ...where,
        message: `duplicate definition of ${id}: defined at ${at(first)} and at ${at(p)}, differently (luet silently keeps the first; --lenient does too)`,
      });
    }
  }
  return kept;
}

/** Build-time edges: build.yaml requires and copy-from-package (both need the other built first). */
export function buildDeps(p: LoadedPackage): Dep[] {
  const spec = p.build?.spec;
  if (!spec) return [];
  return [...spec.requires, ...spec.copy.flatMap((c) => (c.package ? [c.package] : []))];
}

function checkBuildCycles(
  packages: LoadedPackage[],
  universe: PackageUniverse<LoadedPackage>,
  report: Report,
): void {
  const edges = new Map<LoadedPackage, Array<{ to: LoadedPackage; dep: Dep }>>();
  for (const p of packages) {
    const list: Array<{ to: LoadedPackage; dep: Dep }> = [];
    for (const d of buildDeps(p)) {
      const r = universe.resolve(d);
      if (r) list.push({ to: r.pkg, dep: d });
    }
    edges.set(p, list);
  }
  // Tarjan's strongly connected components, iteration order fixed by package id. A package with
  // no build edge is a component of its own that is never a cycle: only the others start a walk.
  const order = packages
    .filter((p) => edges.get(p)!.length > 0)
    .sort((a, b) => collate(packageId(a), packageId(b)));
  const index = new Map<LoadedPackage, number>();
  const low = new Map<LoadedPackage, number>();
  const onStack = new Set<LoadedPackage>();
  const stack: LoadedPackage[] = [];
  const sccs: LoadedPackage[][] = [];
  let counter = 0;
  const strong = (v: LoadedPackage): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const { to } of edges.get(v) ?? []) {
      if (!index.has(to)) {
        strong(to);
        low.set(v, Math.min(low.get(v)!, low.get(to)!));
      } else if (onStack.has(to)) {
        low.set(v, Math.min(low.get(v)!, index.get(to)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const comp: LoadedPackage[] = [];
      let w: LoadedPackage;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      sccs.push(comp);
    }
  };
  for (const p of order) if (!index.has(p)) strong(p);

  for (const comp of sccs) {
    const inComp = new Set(comp);
    const start = comp.sort((a, b) => collate(packageId(a), packageId(b)))[0]!;
    const selfLoop = (edges.get(start) ?? []).find((e) => e.to === start);
    if (comp.length === 1 && !selfLoop) continue;
    // Walk inside the component back to the start to name one concrete cycle.
    const path: Array<{ from: LoadedPackage; dep: Dep }> = [];
    const seen = new Set<LoadedPackage>();
    const find = (v: LoadedPackage): boolean => {
      seen.add(v);
      for (const e of edges.get(v) ?? []) {
        if (!inComp.has(e.to)) continue;
        path.push({ from: v, dep: e.dep });
        if (e.to === start) return true;
        if (!seen.has(e.to) && find(e.to)) return true;
        path.pop();
      }
      return false;
    };
    find(start);
    const names = [...path.map((s) => packageId(s.from)), packageId(start)].join(' -> ');
    const first = path[0];
    report.error({
      code: 'E_TREE',
      file: first?.dep.source?.file ?? start.build?.file ?? start.definitionFile,
      line: first?.dep.source?.line,
      path: 'requires',
      message: `build-time requires cycle: ${names} (build images chain by FROM, so a cycle cannot be built)`,
    });
  }
}

function checkUnresolved(
  packages: LoadedPackage[],
  universe: PackageUniverse<LoadedPackage>,
  report: Report,
): void {
  for (const p of packages) {
    const check = (d: Dep, what: string): void => {
      if (universe.resolve(d)) return;
      const known = universe.versions(familyKey(d)).length > 0;
      report.warn({
        code: 'E_TREE',
        file: d.source?.file ?? p.definitionFile,
        line: d.source?.line,
        path: what,
        message: known
          ? `${packageId(p)} requires ${familyKey(d)} ${describeSelector(d.selector)}, but no version in the tree matches`
          : `${packageId(p)} requires ${familyKey(d)}, which is not in the tree`,
      });
    };
    for (const d of p.requires) check(d, 'requires');
    for (const d of buildDeps(p)) check(d, 'build requires');
  }
}

/**
 * The problems that belong to no single package (a values file, a build cycle, a differing
 * duplicate): leaving the packages with problems out cannot get past these.
 */
export function treeWideProblems(tree: LoadedTree): Problem[] {
  const own = new Set<Problem>([
    ...tree.packages.flatMap((p) => p.problems),
    ...tree.skipped.flatMap((s) => s.problems),
  ]);
  return tree.problems.filter((p) => !own.has(p));
}

export { formatProblem };

/**
 * cpm's own `packages-tree/`, found next to the installed cpm (the directory holding cpm's
 * package.json), so the default works from any working directory.
 */
export function projectTreeDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'cpm')
          return join(dir, 'packages-tree');
      } catch {
        // not ours; keep walking up
      }
    }
    const up = dirname(dir);
    if (up === dir) {
      throw new CpmError('E_USAGE', "no --tree given and cpm's packages-tree/ was not found", {
        hint: 'pass --tree DIR',
      });
    }
    dir = up;
  }
}
