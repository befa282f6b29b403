/**
 * Exclude patterns for image output, anchored at the root: `/proc/*` drops everything inside
 * /proc but keeps the directory, `/var/cache` drops the directory and its subtree. `*` and `?`
 * stay within one path component, `**` crosses components. A leading "/" is optional.
 */
import { CpmError } from '../errors.js';

export type ExcludeMatcher = (relPath: string) => boolean;

function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        re += '.*';
        i++;
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) throw new CpmError('E_USAGE', `exclude pattern "${pattern}" has an unclosed [`);
      let cls = pattern.slice(i + 1, end);
      if (cls.startsWith('!')) cls = '^' + cls.slice(1);
      re += `[${cls.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function compileExcludes(patterns: readonly string[]): ExcludeMatcher {
  const res = patterns
    .map((p) => p.trim().replace(/^\/+/, '').replace(/\/+$/, ''))
    .filter((p) => p !== '')
    .map(globToRegExp);
  if (res.length === 0) return () => false;
  return (relPath) => res.some((r) => r.test(relPath));
}
