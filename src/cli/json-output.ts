/**
 * The documented top level of every command's `--json` document: always an object, so a key can
 * be added later without breaking a script that reads the others. docs/cli.md renders these
 * tables (reference.ts); test/cli/json.test.ts runs every command through the real CLI and checks
 * its keys against them, and test/cli/docs.test.ts that every command with --json has a table.
 * A key may be added; a key is never renamed, removed or given another meaning.
 */

export interface JsonKey {
  key: string;
  about: string;
  /** Present only then (absent otherwise); keys without it are always present. */
  when?: string;
}

const k = (key: string, about: string, when?: string): JsonKey =>
  when === undefined ? { key, about } : { key, about, when };

const PLAN: JsonKey[] = [
  k('satisfiable', 'boolean: a set of packages satisfies the request'),
  k('install', 'ids (`category/name@version`) to install, in order'),
  k('remove', 'ids to remove'),
  k('final', 'ids installed afterwards'),
  k('problems', 'why the request cannot be met: `{code, message, package?, …}` each'),
];

const CHANGE: JsonKey[] = [
  ...PLAN,
  k('installed', 'ids installed by the transaction', 'not --dry-run'),
  k('removed', 'ids removed', 'not --dry-run'),
  k('unchanged', 'ids installed before and after', 'not --dry-run'),
  k('forcedConflicts', '`{path, claimants}` taken over with --force', 'not --dry-run'),
  k(
    'cpmnew',
    'changed config files kept; the new version is beside them as .cpmnew',
    'not --dry-run',
  ),
  k('cpmsave', 'changed config files saved as .cpmsave', 'not --dry-run'),
  k('markedExplicit', 'ids now recorded as explicitly installed', 'not --dry-run'),
  k('finalizerErrors', 'failed finalizers, as `error` objects (exit 11)', 'not --dry-run'),
  k('images', 'image references to install, as given', '--dry-run with image references'),
  k('base', 'the base image reference (--base)', '--dry-run with --base'),
];

const PROBLEMS = k('problems', 'repositories that could not be read, as `error` objects');

export const JSON_OUTPUT: Readonly<Record<string, readonly JsonKey[]>> = {
  'tree validate': [
    k('ok', 'boolean: no problem'),
    k('dir', 'the tree directory (the first of several --tree)'),
    k('stats', '`{packages, categories, definitions, collections, buildSpecs, finalizers}`'),
    k('problems', '`{code, message, file, line}` each'),
    k('warnings', 'as problems'),
  ],
  'tree list': [
    k(
      'packages',
      '`{id, category, name, version, hidden, description, file, line}` each, newest version first per family',
    ),
  ],
  'tree deps': [
    k('package', 'the id asked about'),
    k('root', 'the dependency tree: `{id, selector, resolved, children: [node…]}`'),
    k('closure', 'ids of the runtime closure'),
    k('unresolved', 'requirements nothing in the tree satisfies'),
  ],
  'tree graph': [
    k('nodes', 'package ids (`--format json`)'),
    k('edges', '`{from, to, selector, resolved}` each'),
  ],
  plan: PLAN,
  pack: [
    k('output', 'where the image went'),
    k('digest', 'manifest digest'),
    k('layer', 'the layer descriptor'),
    k('config', 'config digest'),
  ],
  pull: [
    k('ref', 'the reference pulled'),
    k('root', 'descriptor of the index or manifest the reference named'),
    k('manifest', 'descriptor of the platform manifest'),
    k('layers', 'layer descriptors'),
  ],
  push: [k('dest', 'the destination reference'), k('digest', 'manifest digest')],
  login: [k('registry', 'host[:port]'), k('authfile', 'the auth file written')],
  'repo create': [
    k('url', 'the repository'),
    k('name', 'repository name in the index'),
    k('revision', 'index revision'),
    k('timestamp', 'index time (seconds)'),
    k('indexDigest', 'digest of the index'),
    k('indexManifestDigest', 'manifest digest of the index artifact (oci://), else null'),
    k('packages', 'number of packages in the index'),
    k('packed', 'ids packed by this run'),
    k('reused', 'ids whose image was already there'),
    k('metaOnly', 'ids without payload'),
    k('needsBuild', 'ids left out: built from build.yaml steps (cpm build)'),
    k('skipped', 'packages left out for their problems'),
    k('uploads', 'number of blobs uploaded'),
    k('changed', 'boolean: the index changed'),
    k('pushed', 'boolean: uploaded (--push)'),
  ],
  'repo list': [
    k('repositories', 'configs `{name, type, urls, priority, enabled, …, cached}` each'),
    k('problems', 'config files that could not be read, as `error` objects'),
  ],
  'repo update': [
    k(
      'results',
      '`{name, type, url, status, revision, packages, ageHours, stale, staleReasons, error?}` each',
    ),
    PROBLEMS,
  ],
  search: [
    k('results', '`{id, category, name, version, repo, hidden, payload, description?, …}` each'),
    PROBLEMS,
  ],
  info: [
    k('id', 'the package chosen'),
    k('repo', 'its repository'),
    k('alsoIn', 'lower-priority repositories that have it too'),
    k('versions', '`{version, repo}` each, newest first'),
    k('package', 'its index entry (metadata, requires, finalize, …)'),
    k('imageRef', 'its image reference, null for a metadata-only package'),
    k('layers', 'layer descriptors'),
  ],
  build: [
    k(
      'packages',
      '`{id, hash, outcome, reason, image?, files?, seconds?, error?, …}` each, in build order',
    ),
    k('failed', 'number of failed builds'),
    k('missing', 'number of packages neither the output nor the cache has (--no-build)'),
    k('warnings', 'messages'),
    k('repository', '`{url, revision, indexDigest, pushed}`', 'an index was written'),
  ],
  list: [
    k('root', 'the root'),
    k(
      'packages',
      '`{id, category, name, version, reason, origin, imageDigest, files, base?}` each (`files`: a count)',
    ),
  ],
  files: [
    k('package', 'the installed id'),
    k('files', '`{path, type, mode, uid, gid, size?, sha256?, target?, config?, …}` each'),
  ],
  owns: [k('path', 'the path asked about'), k('owners', 'ids owning it (empty: exit 1)')],
  verify: [
    k('checked', 'number of entries checked'),
    k('problems', '`{kind, path, package, expected?, actual?}` each (any: exit 1)'),
    k('changedConfig', 'config files changed and kept: `{path, package}`'),
    k('foreign', '`{checked, reason?}`: whether unowned files were looked for'),
    k('notes', 'remarks'),
  ],
  recover: [
    k('result', '`clean`, `rolled-back` or `rolled-forward`'),
    k('did', 'what was done, one line each'),
  ],
  install: CHANGE,
  upgrade: CHANGE,
  reinstall: CHANGE,
  uninstall: CHANGE,
  reclaim: [
    k('adopted', 'ids adopted (or that would be, --dry-run)'),
    k('partial', '`{id, matched, total}`: packages only partly present, not adopted'),
    k('checked', 'number of packages compared'),
  ],
  cleanup: [
    k('cacheDir', 'the cache'),
    k('pruned', 'parts pruned'),
    k('files', 'number of files removed'),
    k('bytesFreed', 'bytes'),
  ],
  'image tar': [
    k('output', 'the file written'),
    k('compression', '`none`, `gzip` or `zstd`'),
    k('entries', 'number of entries'),
    k('bytes', 'tar bytes (uncompressed)'),
  ],
  'image squashfs': [
    k('backend', 'the writer used'),
    k('output', 'the file written'),
    k('bytes', 'image size'),
    k('entries', 'number of entries'),
    k('skipped', 'why a faster backend was passed over', 'a faster backend was passed over'),
  ],
  'image oci': [
    k('digest', 'manifest digest'),
    k('written', 'references written (layout, registry)'),
    k('layers', '`{digest, size, kind, package?}` each, bottom first'),
  ],
  'rootfs init': [
    k('base', 'the base id'),
    k('imageDigest', 'manifest digest of the base image'),
    k('installed', 'ids installed'),
    k('removed', 'ids removed (a replaced base)'),
    k('unchanged', 'ids already there'),
    k('forcedConflicts', 'number of files taken over (--force)'),
  ],
  demo: [
    k('repository', 'the dir:// repository'),
    k('root', 'the root'),
    k('dbDir', 'its DB'),
    k('image', 'the image written (squashfs, or tar without a squashfs tool)'),
    k('repo', '`{packages, packed, reused, metaOnly, changed}`'),
    k('base', 'the base id (--base)', '--base'),
    k('installed', 'ids installed'),
    k('finalizers', '`ran`, or `skipped: …` with the reason'),
    k('finalizerErrors', 'messages'),
    k('verify', '`{checked, problems}`'),
    k('squashfs', 'as `cpm image squashfs --json`; null without a squashfs tool'),
    k('tar', '`{output, entries, bytes}` when a tar was written instead, else null'),
    k('skipped', '`{step, reason, hint}` for each step left out for a missing tool'),
  ],
};

/** The one document every command prints on failure with --json. */
export const JSON_ERROR: readonly JsonKey[] = [
  k('error', '`{code, message, hint?, context?}`: the error code of the exit-code table'),
];
