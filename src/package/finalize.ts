/**
 * finalize.yaml as every stage carries it: the tree parses it, package images and the repository
 * index store it, the installer runs it and the DB records it. One type, one reader of its
 * stored JSON, so no stage drops a field another one set.
 */

export interface FinalizeSpec {
  /** Commands run after install, in order. */
  install: string[];
  /** Commands for uninstall (recorded; luet never runs them). */
  uninstall?: string[];
  /** argv prefix the commands run with; default DEFAULT_FINALIZE_SHELL (luet's). */
  shell?: string[];
  /** Environment of the commands (a cpm extension of finalize.yaml). */
  env?: Record<string, string>;
  /** Run with network access (bwrap --share-net). Not a finalize.yaml key: set by API callers. */
  network?: boolean;
}

export const DEFAULT_FINALIZE_SHELL: readonly string[] = ['sh', '-c'];

const strings = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];

/**
 * The finalize spec from stored JSON (repository index entry, package image metadata, DB): only
 * the known fields, empty ones left out; undefined when there is nothing to run after install.
 */
export function finalizeFromJson(raw: unknown): FinalizeSpec | undefined {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return undefined;
  const o = raw as Record<string, unknown>;
  const install = strings(o.install);
  if (install.length === 0) return undefined;
  const spec: FinalizeSpec = { install };
  const uninstall = strings(o.uninstall);
  if (uninstall.length > 0) spec.uninstall = uninstall;
  if (Array.isArray(o.shell) && o.shell.length > 0) spec.shell = o.shell.map(String);
  if (o.env && typeof o.env === 'object' && !Array.isArray(o.env)) {
    const env = Object.entries(o.env as Record<string, unknown>);
    if (env.length > 0) spec.env = Object.fromEntries(env.map(([k, v]) => [k, String(v)]));
  }
  if (o.network === true) spec.network = true;
  return spec;
}
