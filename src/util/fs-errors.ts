/**
 * One mapping from an operating-system errno (ENOSPC, EROFS, EACCES, …) to a CpmError: its own
 * code and exit code, the path, and a hint saying what to do. An environment problem is never an
 * "internal error" with a stack, and a local write error is never blamed on a package.
 * `where` says whose storage it was (the root, the cache, an output file) so the hint fits.
 */
import { CpmError, type ErrorCode } from '../errors.js';

export type Where = 'root' | 'cache' | 'output' | 'db' | 'input';

interface ErrnoClass {
  code: ErrorCode;
  what: string;
  hint: (path: string, where: Where | undefined) => string;
}

const spaceHint = (p: string, where: Where | undefined): string =>
  where === 'cache'
    ? `free space on the filesystem of the cache (cpm cleanup empties it) or point cache_dir elsewhere, then run again`
    : `free space on the filesystem holding ${p || 'it'} and run again; nothing of this run was kept`;

const CLASSES: Record<string, ErrnoClass> = {
  ENOSPC: { code: 'E_NO_SPACE', what: 'no space left on device', hint: spaceHint },
  EDQUOT: { code: 'E_NO_SPACE', what: 'disk quota exceeded', hint: spaceHint },
  EFBIG: { code: 'E_NO_SPACE', what: 'file too large for the filesystem', hint: spaceHint },
  EROFS: {
    code: 'E_READ_ONLY',
    what: 'read-only file system',
    hint: (p, where) =>
      where === 'cache'
        ? 'the cache is on a read-only filesystem: set cache_dir (cpm.yaml) to a writable directory'
        : `remount ${p || 'it'} read-write or choose a writable location (--root, --output)`,
  },
  EACCES: {
    code: 'E_PERMISSION',
    what: 'permission denied',
    hint: (p, where) =>
      where === 'cache'
        ? 'the cache directory is not writable by this user: run as its owner or set cache_dir (cpm.yaml)'
        : `run cpm as root (or as the owner of ${p || 'the path'}), or choose a location you can write`,
  },
  EPERM: {
    code: 'E_PERMISSION',
    what: 'operation not permitted',
    hint: (p) =>
      `run cpm as root; if it is root already, ${p || 'the path'} may be immutable (lsattr) or on a filesystem that forbids this`,
  },
  ENOTDIR: {
    code: 'E_PATH',
    what: 'a path component is not a directory',
    hint: (p) =>
      `something that is not a directory stands in the way of ${p || 'the path'}: check it (cpm verify lists what changed)`,
  },
  EISDIR: {
    code: 'E_PATH',
    what: 'is a directory',
    hint: (p) => `a directory stands where a file is expected at ${p || 'the path'}: move it away`,
  },
  ENAMETOOLONG: {
    code: 'E_PATH',
    what: 'file name too long',
    hint: () => 'use a shorter --root or cache directory path',
  },
  ELOOP: {
    code: 'E_PATH',
    what: 'too many levels of symbolic links',
    hint: (p) => `a symlink loop is in the way of ${p || 'the path'}: fix or remove the links`,
  },
  EEXIST: {
    code: 'E_PATH',
    what: 'file exists',
    hint: (p) =>
      `${p || 'the path'} is in the way: remove it, or run cpm recover if a run was cut short`,
  },
  ENOTEMPTY: {
    code: 'E_PATH',
    what: 'directory not empty',
    hint: (p) => `${p || 'the directory'} holds files cpm did not expect: move them away`,
  },
  EXDEV: {
    code: 'E_PATH',
    what: 'cross-device link',
    hint: () =>
      'a mount point lies inside the root where cpm renames files: keep the root on one filesystem',
  },
  EMFILE: {
    code: 'E_LIMIT',
    what: 'too many open files',
    hint: () => 'raise the open-file limit (ulimit -n 4096) and run again',
  },
  ENFILE: {
    code: 'E_LIMIT',
    what: 'too many open files in the system',
    hint: () => 'the system file table is full: close other programs or raise fs.file-max',
  },
  ENOMEM: {
    code: 'E_LIMIT',
    what: 'out of memory',
    hint: () => 'free memory (or raise the memory limit of the container) and run again',
  },
  EIO: {
    code: 'E_IO',
    what: 'input/output error',
    hint: (p) =>
      `the device holding ${p || 'the path'} reported an I/O error: check the disk (dmesg) before running again`,
  },
  EBUSY: {
    code: 'E_IO',
    what: 'device or resource busy',
    hint: (p) => `${p || 'the path'} is in use (a mount point?): unmount or stop what uses it`,
  },
  ETXTBSY: {
    code: 'E_IO',
    what: 'text file busy',
    hint: (p) => `${p || 'the file'} is being executed: stop the program and run again`,
  },
  ENOENT: {
    code: 'E_IO',
    what: 'no such file or directory',
    hint: (p) =>
      `${p || 'the path'} (or a directory above it) does not exist: check the path; if another program removed it while cpm ran, run again`,
  },
};

/** The errno code of a Node system error ("ENOSPC"), or undefined for anything else. */
export function errnoOf(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === 'string' && /^E[A-Z0-9]+$/.test(c) && !c.startsWith('E_') ? c : undefined;
}

/** True for an errno cpm maps (a local system error rather than a bug or a network failure). */
export function isFsErrno(e: unknown): boolean {
  const c = errnoOf(e);
  return c !== undefined && Object.hasOwn(CLASSES, c);
}

export interface FsErrorOptions {
  /** What cpm was doing: "writing", "extracting …", "caching blob …". */
  doing?: string;
  /** The path concerned; default the error's own path. */
  path?: string;
  where?: Where;
  /** Extra context (package, digest). */
  context?: Record<string, unknown>;
}

/**
 * The CpmError for a system error `e`. A CpmError is returned as is; an errno cpm does not know
 * becomes E_IO with the system's message. Non-system errors are returned unchanged.
 */
export function fsError(e: unknown, opts: FsErrorOptions = {}): unknown {
  if (e instanceof CpmError) return e;
  const errno = errnoOf(e);
  if (!errno) return e;
  const err = e as NodeJS.ErrnoException & { dest?: string };
  const p = opts.path ?? err.path ?? '';
  const cls = CLASSES[errno];
  const what = cls?.what ?? err.message.replace(/^[A-Z0-9]+: /, '').replace(/,.*$/, '');
  const doing = opts.doing ?? (err.syscall ? `${err.syscall}` : 'file operation');
  const dest = err.dest && opts.path === undefined ? ` → ${err.dest}` : '';
  return new CpmError(
    cls?.code ?? 'E_IO',
    `${doing}${p ? ` ${p}${dest}` : ''}: ${what} (${errno})`,
    {
      hint: cls
        ? cls.hint(p, opts.where)
        : 'the operating system refused a file operation; check the path and run again',
      context: {
        ...opts.context,
        path: p,
        errno,
        ...(err.syscall ? { syscall: err.syscall } : {}),
      },
      cause: e,
    },
  );
}

/** fsError for a caller that must throw a CpmError or rethrow the original. */
export function throwFs(e: unknown, opts: FsErrorOptions = {}): never {
  throw fsError(e, opts);
}
