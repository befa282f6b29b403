/**
 * Generated from the command tree by test/cli/docs.test.ts (CPM_UPDATE_DOCS=1 npx vitest run
 * test/cli/docs.test.ts): each top-level command as `cpm help` lists it, [term, summary]. Do not
 * edit; src/cli/top-help.ts prints the top-level help from it without building the tree.
 */
export const COMMAND_SUMMARIES: ReadonlyArray<readonly [string, string]> = [
  ['tree', 'inspect and validate a packages tree'],
  [
    'plan [options] <operation> [packages...]',
    'print what install / uninstall / upgrade would do, without touching disk',
  ],
  [
    'pack [options] <dir>',
    'build a package image from a directory (reproducible: same input, same digest)',
  ],
  ['pull [options] <ref>', 'pull an image into the cache (and into an OCI layout with --output)'],
  ['push [options] <source> <dest>', 'copy an image (e.g. from an OCI layout) to a registry'],
  [
    'login [options] <registry>',
    'check credentials against a registry and store them in the auth file',
  ],
  ['logout [options] <registry>', 'remove stored credentials for a registry'],
  ['repo', 'create, configure and update package repositories'],
  ['search [options] <term>', 'search the configured repositories by name, description and labels'],
  [
    'info [options] <package>',
    'show a package of the configured repositories (newest matching version)',
  ],
  [
    'build [options] [packages...]',
    "build a luet tree's packages from build.yaml under bubblewrap (no daemon)",
  ],
  ['list [options]', 'list installed packages'],
  ['files [options] <package>', 'files owned by an installed package'],
  ['owns [options] <path>', 'which installed package owns a path'],
  [
    'verify [options] [package]',
    'check installed files against the DB (missing, modified, mode/owner, foreign); exit 1 on problems',
  ],
  ['recover [options]', 'finish or roll back an interrupted transaction'],
  [
    'install [options] <packages...>',
    'install packages (and what they need) into a root, in one transaction',
  ],
  [
    'upgrade [options] [packages...]',
    'upgrade installed packages (all of them when none are named) to the newest versions',
  ],
  [
    'reinstall [options] <packages...>',
    'install installed packages again, repairing modified or missing files',
  ],
  ['uninstall [options] <packages...>', 'remove installed packages and exactly the files they own'],
  [
    'reclaim [options]',
    'adopt files already in the root that match repository packages (by sha256), writing no file',
  ],
  ['cleanup [options]', 'prune the cache (blobs, trees built for --tree); report the bytes freed'],
  [
    'image',
    'write an assembled root as a tar or squashfs image (reproducible with SOURCE_DATE_EPOCH)',
  ],
  ['completion <shell>', 'print a shell completion script'],
  ['rootfs', 'distribution bases of a root'],
  [
    'demo [options] [packages...]',
    'build packages-tree/ into a dir:// repository, install system/cos-setup into a fresh root, verify it and write a squashfs image (a tar when no squashfs tool is installed) — no server, no root needed',
  ],
];
