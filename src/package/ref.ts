/** Package references on the command line: `category/name`, `category/name@1.2.3`, `category/name@>=1.2`. */
import { CpmError } from '../errors.js';
import { parseSelector, type Selector } from './version.js';

export interface PackageRef {
  category: string;
  name: string;
  /** "" = any version. */
  version: string;
  selector: Selector;
}

export function parseRef(input: string): PackageRef {
  const s = input.trim();
  const at = s.indexOf('@');
  const namePart = at >= 0 ? s.slice(0, at) : s;
  const version = at >= 0 ? s.slice(at + 1).trim() : '';
  const slash = namePart.lastIndexOf('/');
  const category = slash >= 0 ? namePart.slice(0, slash) : '';
  const name = slash >= 0 ? namePart.slice(slash + 1) : namePart;
  if (!name || /\s/.test(namePart)) {
    throw new CpmError('E_USAGE', `"${input}" is not a package reference`, {
      hint: 'write category/name, category/name@1.2.3 or category/name@>=1.2',
    });
  }
  if (at >= 0 && version === '') {
    throw new CpmError('E_USAGE', `"${input}" has "@" but no version`);
  }
  let selector: Selector;
  try {
    selector = parseSelector(version);
  } catch (e) {
    throw new CpmError('E_USAGE', `"${input}": ${(e as Error).message}`, { cause: e });
  }
  return { category, name, version, selector };
}
