/**
 * Build specs (`build.yaml`) and finalizers (`finalize.yaml`): rendered as Go templates with the
 * package's values first (as luet does), then parsed as YAML and checked.
 */
import { CpmError } from '../errors.js';
import { readDeps, readPackage, type FieldCtx } from './definition.js';
import { DEFAULT_FINALIZE_SHELL, type FinalizeSpec } from '../package/finalize.js';
import type { Dep, PackageSpec } from '../package/package.js';
import { joinPath, type Report } from './problems.js';
import type { TemplateSet } from './template/exec.js';
import { lineOf, parseYaml, type LoadedYaml } from './yaml.js';

export interface CopySpec {
  /** Copy from another package's build (category/name/version selector) ... */
  package?: Dep;
  /** ... or from an external image. */
  image?: string;
  source: string;
  destination: string;
}

export interface BuildSpec {
  /** Build-time requires (images chained by FROM). */
  requires: Dep[];
  conflicts: Dep[];
  provides: Dep[];
  copy: CopySpec[];
  image?: string;
  env: string[];
  prelude: string[];
  steps: string[];
  unpack: boolean;
  includes: string[];
  excludes: string[];
  /** cpm convention: directory (relative to the package dir) whose files form the package. */
  payload?: string;
  /** luet `subpackages:`: packages cut out of this build's files by include/exclude regexes. */
  subpackages: SubpackageSpec[];
  /** The whole rendered map, known and unknown keys alike. */
  fields: Record<string, unknown>;
}

export interface SubpackageSpec {
  spec: PackageSpec;
  includes: string[];
  excludes: string[];
}

const BUILD_KEYS = new Set([
  'requires',
  'conflicts',
  'provides',
  'copy',
  'image',
  'env',
  'prelude',
  'steps',
  'unpack',
  'includes',
  'excludes',
  'payload',
  'package_dir',
  'requires_final_images',
  'join',
  'seed',
  'retrieve',
  'subpackages',
  'build_options',
  'platform',
]);

const isObj = (x: unknown): x is Record<string, unknown> =>
  x !== null && typeof x === 'object' && !Array.isArray(x);

/** Deep merge for template values: maps merge recursively, everything else is replaced. */
export function mergeValues(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  // keys by index, not for-of over entries: an entry array and an iterator result per key, for
  // every package, in code the JIT has not compiled yet
  const keys = Object.keys(over);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const v = over[k];
    const b = out[k];
    out[k] = isObj(b) && isObj(v) ? mergeValues(b, v) : v;
  }
  return out;
}

/** Renders a template file; a failure becomes a problem and null. */
export function renderFile(
  templates: TemplateSet,
  raw: string,
  file: string,
  values: Record<string, unknown>,
  report: Report,
  label: string,
): string | null {
  try {
    return templates.render(raw, file, { Values: values });
  } catch (e) {
    if (!(e instanceof CpmError)) throw e;
    const msg = e.message.replace(/^[^:]+:\d+: /, '');
    report.error({
      code: e.code,
      file: typeof e.context.file === 'string' ? e.context.file : file,
      line: typeof e.context.line === 'number' ? e.context.line : undefined,
      path: '',
      message: label ? `${msg} (rendering ${label})` : msg,
    });
    return null;
  }
}

/** `file` is the display name of the rendered text, e.g. `pkgs/foo/build.yaml (rendered)`. */
function parseRendered(
  rendered: string,
  file: string,
  report: Report,
  path: string,
): LoadedYaml | null {
  try {
    const y = parseYaml(rendered, file);
    for (const w of y.warnings)
      report.warn({ code: 'E_YAML', file, line: w.line, path, message: w.message });
    return y;
  } catch (e) {
    if (!(e instanceof CpmError)) throw e;
    report.error({
      code: 'E_YAML',
      file,
      line: typeof e.context.line === 'number' ? e.context.line : undefined,
      path,
      message: e.message.startsWith(file)
        ? e.message.slice(file.length).replace(/^(:\d+)?: /, '')
        : e.message,
    });
    return null;
  }
}

function strings(ctx: FieldCtx, obj: Record<string, unknown>, key: string): string[] {
  const v = obj[key];
  if (v === undefined || v === null) return [];
  if (typeof v === 'string') return [v];
  if (
    Array.isArray(v) &&
    v.every((s) => typeof s === 'string' || typeof s === 'number' || typeof s === 'boolean')
  ) {
    return v.map(String);
  }
  ctx.report.error({
    code: 'E_TREE',
    file: ctx.file,
    line: lineOf(ctx.y, obj, key),
    path: joinPath(ctx.path, key),
    message: 'must be a list of strings',
  });
  return [];
}

/** Parses a rendered build spec. Problems are located in the rendered text. */
export function readBuildSpec(
  rendered: string,
  file: string,
  report: Report,
  path: string,
): BuildSpec | null {
  const y = parseRendered(rendered, file, report, path);
  if (!y) return null;
  const v = y.value ?? {};
  const ctx: FieldCtx = { y, file, path, report };
  if (typeof v !== 'object' || Array.isArray(v)) {
    report.error({
      code: 'E_TREE',
      file: ctx.file,
      line: 1,
      path,
      message: 'a build spec must be a map',
    });
    return null;
  }
  const obj = v as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (!BUILD_KEYS.has(k)) {
      report.warn({
        code: 'E_TREE',
        file: ctx.file,
        line: lineOf(y, obj, k),
        path: joinPath(path, k),
        message: 'not a luet build spec field; kept in fields',
      });
    }
  }
  if (obj.build_options !== undefined && obj.build_options !== null)
    report.warn({
      code: 'E_TREE',
      file: ctx.file,
      line: lineOf(y, obj, 'build_options'),
      path: joinPath(path, 'build_options'),
      message:
        "ignored: luet's compiler replaces it with the options stored with a built artifact (its image repositories); cpm build takes them from --output and the build cache",
    });
  const spec: BuildSpec = {
    requires: readDeps(ctx, obj, 'requires'),
    conflicts: readDeps(ctx, obj, 'conflicts'),
    provides: readDeps(ctx, obj, 'provides'),
    copy: [],
    env: strings(ctx, obj, 'env'),
    prelude: strings(ctx, obj, 'prelude'),
    steps: strings(ctx, obj, 'steps'),
    unpack: obj.unpack === true,
    includes: strings(ctx, obj, 'includes'),
    excludes: strings(ctx, obj, 'excludes'),
    subpackages: [],
    fields: obj,
  };
  if (Array.isArray(obj.subpackages)) {
    obj.subpackages.forEach((raw, i) => {
      const sub: FieldCtx = { ...ctx, path: joinPath(path, `subpackages[${i}]`) };
      const rec = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? raw : {};
      const { includes: _i, excludes: _e, ...fields } = rec as Record<string, unknown>;
      const sp = readPackage(sub, raw === rec ? fields : raw);
      if (sp) sp.source = { file: ctx.file, line: lineOf(y, rec) ?? lineOf(y, obj, 'subpackages') };
      if (sp)
        spec.subpackages.push({
          spec: sp,
          includes: strings(sub, rec as Record<string, unknown>, 'includes'),
          excludes: strings(sub, rec as Record<string, unknown>, 'excludes'),
        });
    });
  } else if (obj.subpackages !== undefined && obj.subpackages !== null) {
    report.error({
      code: 'E_TREE',
      file: ctx.file,
      line: lineOf(y, obj, 'subpackages'),
      path: joinPath(path, 'subpackages'),
      message: 'must be a list of packages',
    });
  }
  if (typeof obj.image === 'string' && obj.image !== '') spec.image = obj.image;
  if (spec.image && spec.requires.length > 0) {
    report.warn({
      code: 'E_TREE',
      file: ctx.file,
      line: lineOf(y, obj, 'image'),
      path: joinPath(path, 'image'),
      message:
        'both "image" and "requires": the build starts FROM the image (as luet); the required packages only order the build',
    });
  }
  if (obj.payload !== undefined) {
    if (typeof obj.payload === 'string' && obj.payload !== '') spec.payload = obj.payload;
    else
      report.error({
        code: 'E_TREE',
        file: ctx.file,
        line: lineOf(y, obj, 'payload'),
        path: joinPath(path, 'payload'),
        message: 'must be a directory path',
      });
  }
  if (Array.isArray(obj.copy)) {
    obj.copy.forEach((c, i) => {
      if (c === null || typeof c !== 'object' || Array.isArray(c)) return;
      const rec = c as Record<string, unknown>;
      const cp: CopySpec = {
        source: String(rec.source ?? ''),
        destination: String(rec.destination ?? ''),
      };
      if (rec.package !== undefined) {
        const deps = readDeps(
          { ...ctx, path: joinPath(path, `copy[${i}]`) },
          { package: [rec.package] },
          'package',
        );
        if (deps[0]) cp.package = deps[0];
      }
      if (typeof rec.image === 'string') cp.image = rec.image;
      spec.copy.push(cp);
    });
  }
  return spec;
}

/** Parses a rendered finalize.yaml; every field set (empty when absent), shell defaulted. */
export function readFinalize(rendered: string, file: string, report: Report): FinalizeSpec | null {
  const y = parseRendered(rendered, file, report, '');
  if (!y) return null;
  const v = y.value ?? {};
  const ctx: FieldCtx = { y, file, path: '', report };
  if (typeof v !== 'object' || Array.isArray(v)) {
    report.error({
      code: 'E_TREE',
      file: ctx.file,
      line: 1,
      path: '',
      message: 'a finalize spec must be a map',
    });
    return null;
  }
  const obj = v as Record<string, unknown>;
  const env: Record<string, string> = {};
  if (Array.isArray(obj.env)) {
    for (const e of strings(ctx, obj, 'env')) {
      const eq = e.indexOf('=');
      if (eq > 0) env[e.slice(0, eq)] = e.slice(eq + 1);
      else
        report.error({
          code: 'E_TREE',
          file: ctx.file,
          line: lineOf(y, obj, 'env'),
          path: 'env',
          message: `"${e}" is not KEY=VALUE`,
        });
    }
  } else if (obj.env && typeof obj.env === 'object') {
    for (const [k, val] of Object.entries(obj.env)) env[k] = String(val);
  }
  const shell = strings(ctx, obj, 'shell');
  return {
    install: strings(ctx, obj, 'install'),
    uninstall: strings(ctx, obj, 'uninstall'),
    shell: shell.length > 0 ? shell : [...DEFAULT_FINALIZE_SHELL],
    env,
  };
}
