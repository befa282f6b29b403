/** `cpm pack`, `cpm pull`, `cpm push`, `cpm login|logout` — flags in, one library call, render. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { loadConfig } from '../../config.js';
import { CpmError } from '../../errors.js';
import { createSpec, type Dep, type PackageSpec } from '../../package/package.js';
import { parseRef } from '../../package/ref.js';
import { parsePlatform } from '../../oci/platform.js';
import type { EndpointOptions } from '../../oci/endpoint.js';
import type { FinalizeSpec } from '../../package/finalize.js';
import type { Reporter } from '../../util/progress.js';
import { printJson } from '../output.js';
import { collect } from '../command-table.js';

// Libraries load when a command runs, so `cpm help` and the other commands do not pay for them.
const actions = (): Promise<typeof import('../../oci/actions.js')> =>
  import('../../oci/actions.js');

interface RegistryFlags {
  plainHttp?: boolean;
  tlsVerify?: boolean;
  caFile?: string;
  authfile?: string;
  platform?: string;
  json?: boolean;
}

function registryFlags(cmd: Command): Command {
  return cmd
    .option('--plain-http', 'talk plain http to a non-loopback registry')
    .option('--no-plain-http', 'talk https even to a loopback registry')
    .option('--no-tls-verify', 'do not verify the registry TLS certificate')
    .option('--ca-file <pem>', 'extra CA certificate(s) to trust')
    .option('--authfile <file>', 'auth file to read credentials from')
    .option('--json', 'machine-readable output');
}

function endpointOptions(f: RegistryFlags): EndpointOptions {
  const o: EndpointOptions = {};
  // Three states: --plain-http, --no-plain-http, or neither (http only for loopback hosts).
  if (f.plainHttp !== undefined) o.plainHttp = f.plainHttp;
  if (f.tlsVerify === false) o.tlsVerify = false;
  if (f.caFile) o.ca = readFileSync(f.caFile);
  if (f.authfile) o.authFiles = [f.authfile];
  return o;
}

/** Progress on stderr (bars on a terminal, lines otherwise, JSON lines with --json). */
async function reporterFor(f: { json?: boolean; quiet?: boolean }): Promise<Reporter> {
  // loaded when a command runs: the progress module is not part of every command's start-up
  return (await import('../../util/progress.js')).reporterForFlags(f);
}

async function cacheDir(cmd: Command): Promise<string> {
  return (await loadConfig(cmd.optsWithGlobals<{ config?: string }>().config)).cache_dir;
}

function deps(list: string[]): Dep[] {
  return list.map((s) => {
    const r = parseRef(s);
    return { category: r.category, name: r.name, version: r.version, selector: r.selector };
  });
}

function keyValues(list: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new CpmError('E_USAGE', `${flag} expects KEY=VALUE, got "${kv}"`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

interface PackFlags extends RegistryFlags {
  name: string;
  output: string;
  requires: string[];
  conflicts: string[];
  provides: string[];
  label: string[];
  annotation: string[];
  description?: string;
  license?: string;
  uri: string[];
  hidden?: boolean;
  finalize: string[];
  compression: string;
  sourceDateEpoch?: string;
  quiet?: boolean;
}

export function registerOci(program: Command): void {
  registryFlags(
    program
      .command('pack')
      .description('build a package image from a directory (reproducible: same input, same digest)')
      .addHelpText(
        'after',
        `\nExamples:\n  cpm pack ./payload --name utils/hello@1.0 -o oci:out/hello:1.0\n  SOURCE_DATE_EPOCH=0 cpm pack ./payload --name utils/hello@1.0 --requires system/base -o 127.0.0.1:5000/cpm/hello:1.0`,
      )
      .argument('<dir>', 'directory holding the package files')
      .requiredOption('--name <category/name@version>', 'the package')
      .requiredOption('-o, --output <ref>', 'oci:LAYOUT[:TAG] or HOST/REPO:TAG')
      .option(
        '--requires <pkg>',
        'runtime dependency, e.g. system/base@>=1.0 (repeatable)',
        collect,
        [],
      )
      .option('--conflicts <pkg>', 'conflicting package (repeatable)', collect, [])
      .option('--provides <pkg>', 'provided package (repeatable)', collect, [])
      .option('--label <k=v>', 'package label (repeatable)', collect, [])
      .option('--annotation <k=v>', 'package annotation (repeatable)', collect, [])
      .option('--description <text>', 'description')
      .option('--license <spdx>', 'license')
      .option('--uri <uri>', 'homepage (repeatable)', collect, [])
      .option('--hidden', 'hide from search')
      .option('--finalize <cmd>', 'finalizer command run after install (repeatable)', collect, [])
      .option('--compression <c>', 'gzip or zstd', 'gzip')
      .option('--source-date-epoch <secs>', 'entry mtimes (default $SOURCE_DATE_EPOCH or 0)')
      .option('--platform <os/arch>', 'platform recorded in the image config')
      .option('-q, --quiet', 'no progress output'),
  ).action(async (dir: string, f: PackFlags, cmd: Command) => {
    const ref = parseRef(f.name);
    if (!ref.version || !ref.selector.constraints.every((c) => c.op === '=')) {
      throw new CpmError(
        'E_USAGE',
        `--name needs an exact version: category/name@1.0, got "${f.name}"`,
      );
    }
    if (f.compression !== 'gzip' && f.compression !== 'zstd') {
      throw new CpmError('E_USAGE', `--compression must be gzip or zstd, got "${f.compression}"`);
    }
    const spec: PackageSpec = createSpec({
      category: ref.category,
      name: ref.name,
      version: ref.version,
      requires: deps(f.requires),
      conflicts: deps(f.conflicts),
      provides: deps(f.provides),
      labels: keyValues(f.label, '--label'),
      annotations: keyValues(f.annotation, '--annotation'),
      uri: f.uri,
      hidden: f.hidden === true,
      ...(f.description !== undefined ? { description: f.description } : {}),
      ...(f.license !== undefined ? { license: f.license } : {}),
    });
    const finalize: FinalizeSpec | undefined = f.finalize.length
      ? { install: f.finalize }
      : undefined;
    let epoch: number | undefined;
    if (f.sourceDateEpoch !== undefined) {
      epoch = Number(f.sourceDateEpoch);
      if (!Number.isInteger(epoch) || epoch < 0)
        throw new CpmError('E_USAGE', '--source-date-epoch must be a non-negative integer');
    }
    const r = await (
      await actions()
    ).packTo(spec, dir, f.output, {
      ...endpointOptions(f),
      cacheDir: await cacheDir(cmd),
      reporter: await reporterFor(f),
      compression: f.compression,
      ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
      ...(finalize ? { finalize } : {}),
      ...(f.platform ? { platform: parsePlatform(f.platform) } : {}),
    });
    if (f.json) {
      printJson({
        output: r.output,
        digest: r.digest,
        layer: r.image.layer,
        config: r.image.manifest.config.digest,
      });
    } else {
      process.stdout.write(`${r.output}@${r.digest}\n`);
    }
  });

  registryFlags(
    program
      .command('pull')
      .description('pull an image into the cache (and into an OCI layout with --output)')
      .addHelpText(
        'after',
        `\nExamples:\n  cpm pull 127.0.0.1:5000/cpm/hello:1.0\n  cpm pull registry.example.com/cos/system:1.0 -o oci:out/system --platform linux/arm64`,
      )
      .argument('<ref>', 'HOST/REPO[:TAG|@DIGEST] or oci:DIR[:TAG]')
      .option('-o, --output <oci:DIR[:TAG]>', 'also write the image to this OCI layout')
      .option(
        '--platform <os/arch[/variant]>',
        'platform to pick from an index (default linux/host arch)',
      )
      .option('--concurrency <n>', 'parallel blob downloads', '4')
      .option('-q, --quiet', 'no progress output'),
  ).action(
    async (
      refText: string,
      f: RegistryFlags & { output?: string; concurrency: string; quiet?: boolean },
      cmd: Command,
    ) => {
      const r = await (
        await actions()
      ).pull(refText, {
        ...endpointOptions(f),
        reporter: await reporterFor(f),
        cacheDir: await cacheDir(cmd),
        concurrency: Number(f.concurrency) || 4,
        ...(f.output ? { output: f.output } : {}),
        ...(f.platform ? { platform: parsePlatform(f.platform) } : {}),
      });
      if (f.json) {
        printJson({
          ref: r.ref,
          root: r.pulled.root,
          manifest: r.pulled.manifestDescriptor,
          layers: r.pulled.manifest.layers,
        });
      } else {
        process.stdout.write(`${r.ref}@${r.pulled.manifestDescriptor.digest}\n`);
      }
    },
  );

  registryFlags(
    program
      .command('push')
      .description('copy an image (e.g. from an OCI layout) to a registry')
      .addHelpText(
        'after',
        `\nExamples:\n  cpm push oci:out/hello:1.0 127.0.0.1:5000/cpm/hello:1.0\n  cpm push oci:out/system registry.example.com/cos/system:1.0 --mount-from cos/base`,
      )
      .argument('<source>', 'oci:DIR[:TAG] or HOST/REPO:TAG')
      .argument('<dest>', 'HOST/REPO:TAG or oci:DIR[:TAG]')
      .option('--platform <os/arch[/variant]>', 'platform to pick from an index')
      .option('--mount-from <repo>', 'try cross-repository blob mounts from this repository')
      .option('--chunk-size <bytes>', 'upload blobs in chunks of this size')
      .option('--concurrency <n>', 'parallel blob uploads', '4'),
  ).action(
    async (
      source: string,
      dest: string,
      f: RegistryFlags & { mountFrom?: string; chunkSize?: string; concurrency: string },
      cmd: Command,
    ) => {
      const digest = await (
        await actions()
      ).push(source, dest, {
        ...endpointOptions(f),
        cacheDir: await cacheDir(cmd),
        concurrency: Number(f.concurrency) || 4,
        ...(f.chunkSize ? { chunkSize: Number(f.chunkSize) } : {}),
        ...(f.mountFrom ? { mountFrom: f.mountFrom } : {}),
        ...(f.platform ? { platform: parsePlatform(f.platform) } : {}),
      });
      if (f.json) printJson({ dest, digest });
      else process.stdout.write(`${dest}@${digest}\n`);
    },
  );

  registryFlags(
    program
      .command('login')
      .description('check credentials against a registry and store them in the auth file')
      .addHelpText(
        'after',
        `\nExamples:\n  cpm login registry.example.com -u ci --password-stdin < token.txt\n  cpm login 127.0.0.1:5000 -u alice -p s3cret --json`,
      )
      .argument('<registry>', 'HOST[:PORT]')
      .requiredOption('-u, --username <user>', 'user name')
      .option('-p, --password <password>', 'password (prefer --password-stdin)')
      .option('--password-stdin', 'read the password from stdin'),
  ).action(
    async (
      registry: string,
      f: RegistryFlags & { username: string; password?: string; passwordStdin?: boolean },
    ) => {
      let password = f.password;
      if (f.passwordStdin) password = readFileSync(0, 'utf8').replace(/\r?\n$/, '');
      if (password === undefined)
        throw new CpmError('E_USAGE', 'give --password-stdin (or --password)');
      const file = await (
        await actions()
      ).login(
        registry,
        { username: f.username, password },
        {
          ...endpointOptions(f),
          ...(f.authfile ? { authFile: f.authfile } : {}),
        },
      );
      if (f.json) printJson({ registry, authfile: file });
      else process.stdout.write(`Login succeeded; credentials stored in ${file}\n`);
    },
  );

  program
    .command('logout')
    .description('remove stored credentials for a registry')
    .addHelpText('after', `\nExamples:\n  cpm logout registry.example.com`)
    .argument('<registry>', 'HOST[:PORT]')
    .option('--authfile <file>', 'auth file to edit')
    .action(async (registry: string, f: { authfile?: string }) => {
      const removed = await (
        await actions()
      ).logout(registry, f.authfile ? { authFile: f.authfile } : {});
      process.stdout.write(
        removed ? `Removed credentials for ${registry}\n` : `Not logged in to ${registry}\n`,
      );
    });
}
