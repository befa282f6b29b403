/** What `cpm image squashfs` can be asked for: apart from the writer, so the CLI lists them without loading it. */
export type SquashfsCompressor = 'zstd' | 'gzip' | 'xz' | 'lz4';
export type SquashfsBackend =
  'gensquashfs' | 'mksquashfs-dir' | 'tar2sqfs' | 'mksquashfs-tar' | 'mksquashfs-pseudo';
export const SQUASHFS_BACKENDS: readonly SquashfsBackend[] = [
  'gensquashfs',
  'mksquashfs-dir',
  'tar2sqfs',
  'mksquashfs-tar',
  'mksquashfs-pseudo',
];
export const SQUASHFS_COMPRESSORS: readonly SquashfsCompressor[] = ['zstd', 'gzip', 'xz', 'lz4'];
