/**
 * The embedded default, end to end, with no server and no root: packages-tree/ → dir:// repository
 * → install into a fresh root → verify → squashfs image (a tar image when no squashfs tool is
 * installed: the demo finishes with what it can make and says what it skipped). `cpm demo` (and `npm run demo`) call this;
 * every step is the same library call the individual commands make.
 */
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { databaseDir, type CpmConfig } from './config.js';
import { CpmError } from './errors.js';
import { dbOverlay, loadRootDb } from './image/db-overlay.js';
import { sourceDateEpochFromEnv } from './image/meta.js';
import { writeSquashfs, type SquashfsResult } from './image/squashfs.js';
import { findTool } from './image/tools.js';
import { rootfsInit } from './install/image-ref.js';
import { rootHasProgram } from './rootfs/finalize.js';
import { runOperation, type OperationResult } from './install/operations.js';
import { silentReporter, type Reporter } from './util/progress.js';
import { verify, type VerifyReport } from './upkeep/query.js';
import { createFromTree, type CreateResult } from './repo/create.js';

export interface DemoOptions {
  config: CpmConfig;
  /** Where the repository, root and image go (created; the root and image are made afresh). */
  outDir: string;
  /** Packages tree (default: the packages-tree/ shipped with cpm). */
  tree?: string;
  /** What to install (default system/cos-setup). */
  packages?: string[];
  /** Distribution base image to unpack first (`cpm rootfs init --from`), e.g. oci:DIR:TAG. */
  base?: string;
  reporter?: Reporter;
  log?: (line: string) => void;
}

export interface DemoResult {
  repository: string;
  root: string;
  dbDir: string;
  image: string;
  repo: Pick<CreateResult, 'packed' | 'reused' | 'metaOnly' | 'changed'> & { packages: number };
  base?: string;
  installed: string[];
  finalizers:
    | 'ran'
    | 'skipped: the root has no shell (a base from --base has one)'
    | 'skipped: bubblewrap (bwrap) is not installed';
  finalizerErrors: string[];
  verify: Pick<VerifyReport, 'checked' | 'problems'>;
  /** The squashfs image, or null when no squashfs tool is installed (`tar` was written). */
  squashfs: SquashfsResult | null;
  /** The tar image written instead of the squashfs one, else null. */
  tar: { output: string; entries: number; bytes: number } | null;
  /** Steps left out for a missing tool, with how to get it. */
  skipped: DemoSkip[];
}

export interface DemoSkip {
  step: string;
  reason: string;
  hint: string;
}

/** The squashfs writers `cpm image squashfs` can use (any one will do). */
export const SQUASHFS_TOOLS = ['gensquashfs', 'tar2sqfs', 'mksquashfs'] as const;

/** How a fresh Debian/Ubuntu machine gets every tool the demo and the tests use. */
export const SETUP_HINT =
  'or every tool cpm uses at once: scripts/setup-debian.sh in a cpm checkout';

/** packages-tree/ beside dist/ (or src/) in the cpm checkout or package. */
export function defaultTree(): string {
  return fileURLToPath(new URL('../packages-tree', import.meta.url));
}

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const log = opts.log ?? (() => undefined);
  const reporter = opts.reporter ?? silentReporter();
  const outDir = path.resolve(opts.outDir);
  const tree = path.resolve(opts.tree ?? defaultTree());
  if (!existsSync(tree))
    throw new CpmError('E_NOT_FOUND', `packages tree ${tree} does not exist`, {
      context: { path: tree },
      hint: 'pass --tree DIR',
    });
  const repoDir = path.join(outDir, 'repo');
  const root = path.join(outDir, 'root');
  // Without any squashfs tool the demo still ends with an image: a tar cpm writes itself.
  const canSquash = SQUASHFS_TOOLS.some((t) => findTool(t) !== undefined);
  const image = path.join(outDir, canSquash ? 'rootfs.squashfs' : 'rootfs.tar');
  const skipped: DemoSkip[] = [];
  await fsp.mkdir(outDir, { recursive: true });
  // The repository is kept between runs (repo create is incremental); the root is made afresh.
  await fsp.rm(root, { recursive: true, force: true });
  await fsp.rm(path.join(outDir, 'rootfs.squashfs'), { force: true });
  await fsp.rm(path.join(outDir, 'rootfs.tar'), { force: true });
  await fsp.mkdir(root);

  log(`1/4 repo create --tree ${tree} --output dir://${repoDir}`);
  const created = await createFromTree(tree, {
    output: `dir://${repoDir}`,
    name: 'demo',
    strict: true,
  });
  log(
    `    ${created.index.packages.length} packages: ${created.packed.length} packed, ` +
      `${created.reused.length} reused, ${created.metaOnly.length} metadata-only`,
  );

  const dbDir = databaseDir(opts.config, root);
  let base: string | undefined;
  if (opts.base) {
    log(`    rootfs init --from ${opts.base}`);
    const r = await rootfsInit(root, opts.base, {
      cacheDir: opts.config.cache_dir,
      dbDir,
      reporter,
    });
    base = r.base;
  }

  const packages = opts.packages ?? ['system/cos-setup'];
  const bwrap = findTool('bwrap') !== undefined;
  const shell = rootHasProgram(root, 'sh');
  const finalizers: DemoResult['finalizers'] =
    bwrap && shell
      ? 'ran'
      : !shell
        ? 'skipped: the root has no shell (a base from --base has one)'
        : 'skipped: bubblewrap (bwrap) is not installed';
  if (!bwrap && shell)
    skipped.push({
      step: 'finalizers',
      reason: 'bubblewrap (bwrap) is not installed',
      hint: `apt-get install bubblewrap (${SETUP_HINT})`,
    });
  log(`2/4 install ${packages.join(' ')} --root ${root} (finalizers ${finalizers})`);
  const op: OperationResult = await runOperation(
    {
      root,
      dbDir,
      config: opts.config,
      source: { kind: 'repo', urls: [`dir://${repoDir}`] },
    },
    'install',
    packages,
    { noFinalizers: finalizers !== 'ran', reporter },
  );
  const installed = op.transaction?.installed ?? [];
  for (const id of installed) log(`    installed ${id}`);

  log(`3/4 verify --root ${root}`);
  const report = await verify({ root, dbDir });
  log(`    ${report.checked} files checked, ${report.problems.length} problem(s)`);
  if (report.problems.length > 0)
    throw new CpmError(
      'E_DB',
      `verify found ${report.problems.length} problem(s) in ${root}: ` +
        report.problems
          .slice(0, 5)
          .map((p) => `${p.kind} ${p.path}`)
          .join(', '),
      { context: { path: root } },
    );

  // Owners and device nodes come from the DB: the install ran without root.
  const ov = dbOverlay(loadRootDb(root, dbDir).db);
  const imageOpts = {
    overlay: ov.overlay,
    overlayPaths: ov.overlayPaths,
    sourceDateEpoch: sourceDateEpochFromEnv(),
  };
  let squashfs: SquashfsResult | null = null;
  let tar: DemoResult['tar'] = null;
  if (canSquash) {
    log(`4/4 image squashfs --root ${root} -o ${image}`);
    squashfs = await writeSquashfs(root, image, imageOpts);
    log(`    ${squashfs.entries} entries, ${squashfs.bytes} bytes (${squashfs.backend})`);
  } else {
    const skip: DemoSkip = {
      step: 'image squashfs',
      reason: `none of ${SQUASHFS_TOOLS.join(', ')} is installed`,
      hint: `apt-get install squashfs-tools-ng (${SETUP_HINT})`,
    };
    skipped.push(skip);
    log(`4/4 image tar --root ${root} -o ${image} (squashfs skipped: ${skip.reason})`);
    const { writeRootfsTar } = await import('./image/rootfs-tar.js');
    const stats = await writeRootfsTar(root, image, imageOpts);
    tar = { output: image, entries: stats.entries, bytes: stats.bytes };
    log(`    ${stats.entries} entries, ${stats.bytes} bytes`);
  }

  return {
    repository: `dir://${repoDir}`,
    root,
    dbDir,
    image,
    repo: {
      packages: created.index.packages.length,
      packed: created.packed,
      reused: created.reused,
      metaOnly: created.metaOnly,
      changed: created.changed,
    },
    ...(base ? { base } : {}),
    installed,
    finalizers,
    finalizerErrors: (op.transaction?.finalizerErrors ?? []).map((e) => e.message),
    verify: { checked: report.checked, problems: report.problems },
    squashfs,
    tar,
    skipped,
  };
}
