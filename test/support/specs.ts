/** Spec builders for tests and the bench: ids and selectors as short strings. */
import {
  createDep,
  createSpec,
  splitFamily,
  type Dep,
  type PackageSpec,
} from '../../src/package/package.js';

/** A dependency entry from "category/name" and a selector string ("" = any). */
export function dep(key: string, version = ''): Dep {
  const { category, name } = splitFamily(key);
  return createDep(category, name, version);
}

/** A PackageSpec from "category/name@version" and its relations. */
export function makeSpec(
  id: string,
  rel: { requires?: Dep[]; conflicts?: Dep[]; provides?: Dep[] } = {},
): PackageSpec {
  const at = id.lastIndexOf('@');
  const key = at < 0 ? id : id.slice(0, at);
  return createSpec({ ...splitFamily(key), version: at < 0 ? '' : id.slice(at + 1), ...rel });
}
