import { Command, Option } from 'commander';
import path from 'node:path';
import { databaseDir, loadConfig } from '../../config.js';
import { CpmError } from '../../errors.js';
import type { DbOverlay } from '../../image/db-overlay.js';
import { sourceDateEpochFromEnv } from '../../image/meta.js';
import { parsePlatform } from '../../oci/platform.js';
import {
  SQUASHFS_BACKENDS,
  SQUASHFS_COMPRESSORS,
  type SquashfsBackend,
  type SquashfsCompressor,
} from '../../image/squashfs-options.js';
import type { Compression } from '../../util/compress.js';
import { printJson } from '../output.js';
import { collect } from '../command-table.js';

function positiveInt(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) <= 0) {
      throw new CpmError('E_USAGE', `${name} must be a positive whole number, got "${v}"`);
    }
    return Number(v);
  };
}

const warn = (m: string): void => void process.stderr.write(`cpm: warning: ${m}\n`);

interface CommonOpts {
  root: string;
  output: string;
  exclude: string[];
  xattrs: boolean;
  dbDir?: string;
  json?: boolean;
}

function addCommon(cmd: Command, output = true): Command {
  if (output) cmd.requiredOption('-o, --output <file>', 'file to write');
  return (
    cmd
      // absolute from here on: a relative DB dir would otherwise be taken as inside the root
      .requiredOption('--root <dir>', 'the assembled root to pack', absPath('--root'))
      .option(
        '--db-dir <dir>',
        'installer DB (default: system.database_path from config)',
        absPath('--db-dir'),
      )
      .option('--exclude <glob>', 'leave out paths (anchored at the root, repeatable)', collect, [])
      .option('--no-xattrs', 'do not read extended attributes from disk')
      .option('--json', 'print the result as JSON')
  );
}

/** An option parser making a path absolute; an empty one (an unset variable) is refused. */
function absPath(flag: string): (v: string) => string {
  return (v) => {
    if (v === '')
      throw new CpmError('E_USAGE', `${flag} is empty`, {
        hint: `give ${flag} a value (an unset shell variable?); for the current directory say ${flag} .`,
      });
    return path.resolve(v);
  };
}

/** The DB dir of a root: --db-dir, else the config's database_path inside the root. */
async function dbDirOf(o: CommonOpts, cmd: Command): Promise<string> {
  if (o.dbDir) return o.dbDir;
  return databaseDir(await loadConfig(cmd.optsWithGlobals<{ config?: string }>().config), o.root);
}

/** Owners, modes and device nodes from the DB for packages installed without root. */
async function overlayOf(o: CommonOpts, cmd: Command): Promise<DbOverlay> {
  // the writers load when an image command runs, not for help or other commands
  const { dbOverlay, loadRootDb } = await import('../../image/db-overlay.js');
  return dbOverlay(loadRootDb(o.root, await dbDirOf(o, cmd)).db);
}

/** What the tar and squashfs writers both take: DB overlay, excludes, xattrs, the epoch. */
async function writerOptions(o: CommonOpts, cmd: Command) {
  const ov = await overlayOf(o, cmd);
  return {
    overlay: ov.overlay,
    overlayPaths: ov.overlayPaths,
    excludes: o.exclude,
    xattrs: o.xattrs,
    sourceDateEpoch: sourceDateEpochFromEnv(),
    onWarning: warn,
  };
}

/** `cpm image tar|squashfs|oci`. */
export function registerImage(program: Command): void {
  const image = program
    .command('image')
    .description(
      'write an assembled root as a tar or squashfs image (reproducible with SOURCE_DATE_EPOCH)',
    );

  addCommon(image.command('tar'))
    .description('write the root as a sorted, reproducible tar')
    .addOption(
      new Option('--compression <kind>', 'compress the tar')
        .choices(['gzip', 'zstd', 'none'])
        .default('none'),
    )
    .addHelpText(
      'after',
      `
Examples:
  cpm image tar --root /srv/root -o root.tar.zst --compression zstd --exclude '/proc/*'
  SOURCE_DATE_EPOCH=1700000000 cpm image tar --root /srv/root -o root.tar`,
    )
    .action(async (o: CommonOpts & { compression: Compression }, cmd: Command) => {
      const common = await writerOptions(o, cmd);
      const stats = await (
        await import('../../image/rootfs-tar.js')
      ).writeRootfsTar(o.root, o.output, { ...common, compression: o.compression });
      if (o.json) printJson({ output: o.output, compression: o.compression, ...stats });
      else
        process.stdout.write(
          `wrote ${o.output}: ${stats.entries} entries, ${stats.bytes} tar bytes\n`,
        );
    });

  addCommon(image.command('squashfs'))
    .description(
      'write the root as a squashfs image (mksquashfs or squashfs-tools-ng, whichever can be exact)',
    )
    .addOption(
      new Option('--comp <compressor>', 'squashfs compressor')
        .choices([...SQUASHFS_COMPRESSORS])
        .default('zstd'),
    )
    .option(
      '--block-size <bytes>',
      'data block size (power of two, 4096..1048576)',
      positiveInt('--block-size'),
      131072,
    )
    .option('-j, --jobs <n>', 'compressor threads (default: all CPUs)', positiveInt('--jobs'))
    .addOption(
      new Option('--backend <tool>', 'which squashfs tool to drive')
        .choices(['auto', ...SQUASHFS_BACKENDS])
        .default('auto'),
    )
    .option(
      '--fixed-mtime',
      'give every entry the mtime SOURCE_DATE_EPOCH (0 if unset) instead of its own, clamped one',
    )
    .addHelpText(
      'after',
      `
Examples:
  cpm image squashfs --root /srv/root -o rootfs.squashfs --exclude '/proc/*' --exclude '/sys/*'
  SOURCE_DATE_EPOCH=1700000000 cpm image squashfs --root /srv/root -o rootfs.squashfs --comp xz
  SOURCE_DATE_EPOCH=1700000000 cpm image squashfs --root /srv/root -o rootfs.squashfs --fixed-mtime

'auto' uses gensquashfs (files read by the tool itself, fastest) when its pack file describes
the root exactly: one mtime for all entries (--fixed-mtime) and no xattrs; else tar2sqfs.`,
    )
    .action(
      async (
        o: CommonOpts & {
          comp: SquashfsCompressor;
          blockSize: number;
          jobs?: number;
          backend: SquashfsBackend | 'auto';
          fixedMtime?: boolean;
        },
        cmd: Command,
      ) => {
        const common = await writerOptions(o, cmd);
        const r = await (
          await import('../../image/squashfs.js')
        ).writeSquashfs(o.root, o.output, {
          ...common,
          comp: o.comp,
          blockSize: o.blockSize,
          jobs: o.jobs,
          backend: o.backend,
          ...(o.fixedMtime ? { fixedMtime: common.sourceDateEpoch ?? 0 } : {}),
        });
        if (o.json) printJson(r);
        else
          process.stdout.write(
            `wrote ${r.output} with ${r.backend}: ${r.entries} entries, ${r.bytes} bytes\n`,
          );
      },
    );

  addCommon(image.command('oci'), false)
    .description(
      'write the root as an OCI image: one layer per installed package, base layers first',
    )
    .requiredOption('--tag <ref>', 'image name: REGISTRY/REPO[:TAG] or oci:DIR[:TAG]')
    .option('--push', 'push to the registry named by --tag')
    .option('--output <layout>', 'also write an OCI layout (oci:DIR[:TAG])')
    .addOption(
      new Option('--compression <kind>', 'layer compression')
        .choices(['gzip', 'zstd'])
        .default('gzip'),
    )
    .option('--platform <os/arch>', 'platform recorded in the config (default: this machine)')
    .option('--plain-http', 'talk plain http to a non-loopback registry')
    .option('--no-tls-verify', 'do not verify the registry TLS certificate')
    .option('--authfile <file>', 'auth file to read credentials from')
    .addHelpText(
      'after',
      `
Layers, bottom to top: the base package (cpm rootfs init --from), files no package owns, one
layer per installed package, the installer DB. An upgrade of one package changes one package
layer (and the DB layer). Same root and SOURCE_DATE_EPOCH, same digests.

Examples:
  cpm image oci --root /srv/root --tag oci:out/image:1.0
  SOURCE_DATE_EPOCH=1700000000 cpm image oci --root /srv/root --tag registry.example.com/cos/system:1.0 --push
  cpm image oci --root /srv/root --tag 127.0.0.1:5000/cos/system:dev --push --output oci:out/image`,
    )
    .action(
      async (
        o: CommonOpts & {
          tag: string;
          push?: boolean;
          output?: string;
          compression: 'gzip' | 'zstd';
          platform?: string;
          plainHttp?: boolean;
          tlsVerify: boolean;
          authfile?: string;
        },
        cmd: Command,
      ) => {
        const cfg = await loadConfig(cmd.optsWithGlobals<{ config?: string }>().config);
        // Loaded here: the registry client is not needed by tar and squashfs (start-up time).
        const { writeOciImage } = await import('../../image/oci.js');
        const r = await writeOciImage(o.root, {
          tag: o.tag,
          dbDir: o.dbDir ?? databaseDir(cfg, o.root),
          cacheDir: cfg.cache_dir,
          compression: o.compression,
          excludes: o.exclude,
          xattrs: o.xattrs,
          onWarning: warn,
          ...(o.push ? { push: true } : {}),
          ...(o.output ? { output: o.output } : {}),
          ...(o.platform ? { platform: parsePlatform(o.platform) } : {}),
          ...(o.plainHttp ? { plainHttp: true } : {}),
          ...(o.tlsVerify === false ? { tlsVerify: false } : {}),
          ...(o.authfile ? { authFiles: [o.authfile] } : {}),
        });
        if (o.json) {
          printJson({ digest: r.digest, written: r.written, layers: r.layers });
          return;
        }
        for (const l of r.layers) {
          process.stdout.write(
            `${l.digest.slice(0, 19)}  ${String(l.size).padStart(10)}  ${l.kind}${l.package ? ` ${l.package}` : ''}\n`,
          );
        }
        for (const w of r.written) process.stdout.write(`wrote ${w}@${r.digest}\n`);
      },
    );
}
