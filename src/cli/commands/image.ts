import { Command, Option } from 'commander';
import { CpmError } from '../../errors.js';
import { sourceDateEpochFromEnv } from '../../image/meta.js';
import { writeRootfsTar } from '../../image/rootfs-tar.js';
import {
  SQUASHFS_COMPRESSORS,
  writeSquashfs,
  type SquashfsBackend,
  type SquashfsCompressor,
} from '../../image/squashfs.js';
import type { Compression } from '../../util/compress.js';
import { completionScript, SHELLS } from '../completion.js';
import { printJson } from '../output.js';

function positiveInt(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) <= 0) {
      throw new CpmError('E_USAGE', `${name} must be a positive whole number, got "${v}"`);
    }
    return Number(v);
  };
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];
const warn = (m: string): void => void process.stderr.write(`cpm: warning: ${m}\n`);

interface CommonOpts {
  root: string;
  output: string;
  exclude: string[];
  xattrs: boolean;
  json?: boolean;
}

function addCommon(cmd: Command): Command {
  return cmd
    .requiredOption('--root <dir>', 'the assembled root to pack')
    .requiredOption('-o, --output <file>', 'file to write')
    .option('--exclude <glob>', 'leave out paths (anchored at the root, repeatable)', collect, [])
    .option('--no-xattrs', 'do not read extended attributes from disk')
    .option('--json', 'print the result as JSON');
}

/** `cpm image tar|squashfs` and `cpm completion`. (`cpm image oci` and `cpm demo` come with the integration.) */
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
    .action(async (o: CommonOpts & { compression: Compression }) => {
      const stats = await writeRootfsTar(o.root, o.output, {
        compression: o.compression,
        excludes: o.exclude,
        xattrs: o.xattrs,
        sourceDateEpoch: sourceDateEpochFromEnv(),
        onWarning: warn,
      });
      if (o.json) printJson({ output: o.output, compression: o.compression, ...stats });
      else
        process.stdout.write(
          `wrote ${o.output}: ${stats.entries} entries, ${stats.bytes} tar bytes\n`,
        );
    });

  addCommon(image.command('squashfs'))
    .description('write the root as a squashfs image (tar2sqfs, or mksquashfs as fallback)')
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
        .choices(['auto', 'tar2sqfs', 'mksquashfs-tar', 'mksquashfs-pseudo'])
        .default('auto'),
    )
    .addHelpText(
      'after',
      `
Examples:
  cpm image squashfs --root /srv/root -o rootfs.squashfs --exclude '/proc/*' --exclude '/sys/*'
  SOURCE_DATE_EPOCH=1700000000 cpm image squashfs --root /srv/root -o rootfs.squashfs --comp xz`,
    )
    .action(
      async (
        o: CommonOpts & {
          comp: SquashfsCompressor;
          blockSize: number;
          jobs?: number;
          backend: SquashfsBackend | 'auto';
        },
      ) => {
        const r = await writeSquashfs(o.root, o.output, {
          comp: o.comp,
          blockSize: o.blockSize,
          jobs: o.jobs,
          backend: o.backend,
          excludes: o.exclude,
          xattrs: o.xattrs,
          sourceDateEpoch: sourceDateEpochFromEnv(),
          onWarning: warn,
        });
        if (o.json) printJson(r);
        else
          process.stdout.write(
            `wrote ${r.output} with ${r.backend}: ${r.entries} entries, ${r.bytes} bytes\n`,
          );
      },
    );

  program
    .command('completion')
    .description('print a shell completion script')
    .addArgument(new Command().createArgument('<shell>', 'bash, zsh or fish').choices([...SHELLS]))
    .addHelpText(
      'after',
      `
Examples:
  source <(cpm completion bash)
  cpm completion zsh > "\${fpath[1]}/_cpm"
  cpm completion fish > ~/.config/fish/completions/cpm.fish`,
    )
    .action((shell: string) => {
      process.stdout.write(completionScript(program, shell));
    });
}
