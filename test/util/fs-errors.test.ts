/** The errno → CpmError mapping: every class has its own code, exit code, the path and a hint. */
import { describe, expect, it } from 'vitest';
import { CpmError, EXIT_CODES } from '../../src/errors.js';
import { errnoOf, fsError } from '../../src/util/fs-errors.js';

function sysErr(code: string, p = '/r/usr/bin/x', syscall = 'open'): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: boom, ${syscall} '${p}'`), { code, path: p, syscall });
}

describe('fsError', () => {
  it.each([
    ['ENOSPC', 'E_NO_SPACE', 14],
    ['EDQUOT', 'E_NO_SPACE', 14],
    ['EROFS', 'E_READ_ONLY', 15],
    ['EACCES', 'E_PERMISSION', 16],
    ['EPERM', 'E_PERMISSION', 16],
    ['ENOTDIR', 'E_PATH', 17],
    ['EISDIR', 'E_PATH', 17],
    ['ENAMETOOLONG', 'E_PATH', 17],
    ['ELOOP', 'E_PATH', 17],
    ['EMFILE', 'E_LIMIT', 18],
    ['EIO', 'E_IO', 13],
    ['EWEIRD', 'E_IO', 13],
  ])('%s → %s (exit %d) with the path and a hint', (errno, code, exit) => {
    const e = fsError(sysErr(errno), { doing: 'writing' }) as CpmError;
    expect(e).toBeInstanceOf(CpmError);
    expect(e.code).toBe(code);
    expect(EXIT_CODES[e.code]).toBe(exit);
    expect(e.message).toContain('/r/usr/bin/x');
    expect(e.message).toContain(`(${errno})`);
    expect(e.hint).toBeTruthy();
    expect(e.context).toMatchObject({ path: '/r/usr/bin/x', errno });
  });

  it('the cache gets a cache hint, the root a root hint', () => {
    const c = fsError(sysErr('ENOSPC', '/var/cache/cpm'), { where: 'cache' }) as CpmError;
    expect(c.hint).toContain('cpm cleanup');
    const r = fsError(sysErr('ENOSPC', '/mnt'), { where: 'root' }) as CpmError;
    expect(r.hint).toContain('free space on the filesystem holding /mnt');
  });

  it('leaves CpmErrors, network errors and bugs alone', () => {
    const c = new CpmError('E_DIGEST', 'x');
    expect(fsError(c)).toBe(c);
    const bug = new TypeError('x is undefined');
    expect(fsError(bug)).toBe(bug);
    expect(errnoOf({ code: 'E_USAGE' })).toBeUndefined();
    expect(errnoOf({ code: 'UND_ERR_SOCKET' })).toBeUndefined();
  });
});
