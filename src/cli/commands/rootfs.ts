/** `cpm rootfs init --from IMAGE --root DIR` — flags in, rootfsInit(), render. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { databaseDir, loadConfig } from '../../config.js';
import { reporterForFlags } from '../../util/progress.js';
import { parsePlatform } from '../../oci/platform.js';
import { printJson } from '../output.js';

interface InitFlags {
  from: string;
  root: string;
  force?: boolean;
  id?: string;
  platform?: string;
  plainHttp?: boolean;
  tlsVerify?: boolean;
  caFile?: string;
  authfile?: string;
  wait?: boolean;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

export function registerRootfs(program: Command): void {
  const rootfs = program.command('rootfs').description('distribution bases of a root');
  rootfs
    .command('init')
    .description('unpack a distribution base image (all layers, whiteouts applied) as a new root')
    .requiredOption('--from <image>', 'base image: HOST[:PORT]/REPO[:TAG|@DIGEST] or oci:DIR[:TAG]')
    .requiredOption('--root <dir>', 'target root (must be empty unless --force)')
    .option('--force', 'unpack over a non-empty root, taking over files already there')
    .option('--id <category/name@version>', 'identity to record instead of images/NAME@TAG')
    .option(
      '--platform <os/arch[/variant]>',
      'platform to pick from an index (default linux/host arch)',
    )
    .option('--plain-http', 'talk plain http to a non-loopback registry')
    .option('--no-tls-verify', 'do not verify the registry TLS certificate')
    .option('--ca-file <pem>', 'extra CA certificate(s) to trust')
    .option('--authfile <file>', 'auth file to read credentials from')
    .option('--no-wait', 'fail instead of waiting for the lock')
    .option('--json', 'machine-readable output')
    .option('-q, --quiet', 'no progress output')
    .option('-v, --verbose', 'more detail')
    .addHelpText(
      'after',
      `
Examples:
  cpm rootfs init --from 127.0.0.1:5000/base:bookworm --root /srv/root
  cpm rootfs init --from oci:./bases:fedora-41 --id bases/fedora@41 --root /mnt
  cpm rootfs init --from registry.example.com/os/base:2.0 --root /mnt --force --json

The root must be empty (lost+found aside) unless --force. See docs/bases.md.`,
    )
    .action(async (f: InitFlags, cmd: Command) => {
      const cfg = await loadConfig(cmd.optsWithGlobals<{ config?: string }>().config);
      const reporter = reporterForFlags(f);
      // absolute: a relative database_path is joined to the root once, not twice
      const root = path.resolve(f.root);
      const r = await (
        await import('../../install/image-ref.js')
      ).rootfsInit(root, f.from, {
        cacheDir: cfg.cache_dir,
        dbDir: databaseDir(cfg, root),
        reporter,
        ...(f.force ? { force: true } : {}),
        ...(f.id ? { id: f.id } : {}),
        ...(f.platform ? { platform: parsePlatform(f.platform) } : {}),
        ...(f.plainHttp ? { plainHttp: true } : {}),
        ...(f.tlsVerify === false ? { tlsVerify: false } : {}),
        ...(f.caFile ? { ca: readFileSync(f.caFile) } : {}),
        ...(f.authfile ? { authFiles: [f.authfile] } : {}),
        ...(f.wait === false ? { noWait: true } : {}),
      });
      if (f.json) {
        printJson({
          base: r.base,
          imageDigest: r.imageDigest,
          installed: r.installed,
          removed: r.removed,
          unchanged: r.unchanged,
          forcedConflicts: r.forcedConflicts.length,
        });
        return;
      }
      if (r.unchanged.length > 0) process.stdout.write(`${r.base} is already the base\n`);
      else process.stdout.write(`base ${r.base} (${r.imageDigest}) unpacked into ${f.root}\n`);
      for (const id of r.removed) process.stdout.write(`replaced base ${id}\n`);
      if (r.forcedConflicts.length > 0)
        process.stderr.write(`took over ${r.forcedConflicts.length} file(s) already in the root\n`);
    });
}
