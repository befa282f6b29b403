import type { Command } from 'commander';
import { loadConfig } from '../../config.js';
import { createReporter } from '../../util/progress.js';
import { printJson } from '../output.js';

interface DemoOpts {
  out: string;
  tree?: string;
  base?: string;
  json?: boolean;
  quiet?: boolean;
}

/** `cpm demo`: the embedded default end to end (see src/demo.ts). */
export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'build packages-tree/ into a dir:// repository, install system/cos-setup into a fresh root, verify it and write a squashfs image (a tar when no squashfs tool is installed) — no server, no root needed',
    )
    .argument('[packages...]', 'what to install (default: system/cos-setup)')
    .option('--out <dir>', 'where the repository, root and image go', 'demo-out')
    .option('--tree <dir>', "packages tree (default: cpm's own packages-tree/)")
    .option('--base <image>', 'unpack this distribution base first (oci:DIR:TAG or HOST/REPO:TAG)')
    .option('--json', 'print the result as JSON')
    .option('-q, --quiet', 'no step lines')
    .addHelpText(
      'after',
      `
Examples:
  cpm demo                                   # → demo-out/{repo,root,rootfs.squashfs or rootfs.tar}
  cpm demo --out /tmp/cos system/cos-setup@1.0.0
  cpm demo --base oci:/srv/bases/debian:bookworm   # finalizers run when the base has a shell`,
    )
    .action(async (packages: string[], o: DemoOpts, cmd: Command) => {
      const config = await loadConfig(cmd.optsWithGlobals<{ config?: string }>().config);
      const quiet = o.quiet || o.json;
      const r = await (
        await import('../../demo.js')
      ).runDemo({
        config,
        outDir: o.out,
        ...(o.tree ? { tree: o.tree } : {}),
        ...(o.base ? { base: o.base } : {}),
        ...(packages.length > 0 ? { packages } : {}),
        reporter: createReporter({ mode: quiet ? 'silent' : undefined }),
        log: quiet ? undefined : (l) => void process.stdout.write(`${l}\n`),
      });
      if (o.json) return printJson(r);
      process.stdout.write(
        `\nrepository  ${r.repository}\nroot        ${r.root}\ndatabase    ${r.dbDir}\nimage       ${r.image}\n` +
          `finalizers  ${r.finalizers}\n` +
          r.skipped
            .map((k) => `skipped     ${k.step}: ${k.reason}\n            hint: ${k.hint}\n`)
            .join('') +
          (r.finalizerErrors.length > 0
            ? `finalizer errors:\n  ${r.finalizerErrors.join('\n  ')}\n`
            : '') +
          `\nnext: cpm list --installed --root ${r.root}\n      ${r.squashfs ? 'unsquashfs -lln' : 'tar tvf'} ${r.image}\n`,
      );
      if (r.finalizerErrors.length > 0) process.exitCode = 11;
    });
}
