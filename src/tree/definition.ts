/**
 * Package definitions: one `definition.yaml` or one stanza of a `collection.yaml` → PackageSpec.
 * Every field error becomes a located problem; unknown keys are kept in `extra` and warned about.
 */
import { createSpec, SPEC_FIELDS, type Dep, type PackageSpec } from '../package/package.js';
import { joinPath, type Report } from './problems.js';
import { isValidVersion, parseSelector } from '../package/version.js';
import { lineOf, sourceOf, type LoadedYaml } from './yaml.js';

/** Fields luet accepts (or sets itself) that cpm keeps in `extra` without a warning. */
const LUET_EXTRA = new Set([
  'files',
  'use_flags',
  'useflags',
  'buildtimestamp',
  'state',
  'repository',
  'path',
  'treedir',
  'dockerfile',
  'id',
]);

export interface FieldCtx {
  y: LoadedYaml;
  /** Display file. */
  file: string;
  /** Field path of the object being read (e.g. `packages[2]`), "" for a whole file. */
  path: string;
  report: Report;
  /** Accept what luet accepts even where cpm refuses by default. */
  lenient?: boolean;
}

/** A scalar as text, using the source text for numbers (`version: 1.10` stays "1.10"). */
export function scalarText(y: LoadedYaml, container: object, key: string | number): string | null {
  const v = (container as Record<string | number, unknown>)[key];
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean')
    return sourceOf(y, container, key) ?? String(v);
  return null;
}

function problem(
  ctx: FieldCtx,
  container: object,
  key: string | number | undefined,
  path: string,
  message: string,
  code: 'E_TREE' | 'E_VERSION' = 'E_TREE',
): void {
  ctx.report.error({
    code,
    file: ctx.file,
    line: lineOf(ctx.y, container, key),
    path: joinPath(ctx.path, path),
    message,
  });
}

function stringField(ctx: FieldCtx, obj: Record<string, unknown>, key: string): string | undefined {
  if (!(key in obj) || obj[key] === null) return undefined;
  const s = scalarText(ctx.y, obj, key);
  if (s === null) {
    problem(ctx, obj, key, key, `must be a string, not ${describe(obj[key])}`);
    return undefined;
  }
  return s;
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (v === null) return 'null';
  return typeof v === 'object' ? 'a map' : `${typeof v} ${JSON.stringify(v)}`;
}

function stringMap(
  ctx: FieldCtx,
  obj: Record<string, unknown>,
  key: string,
): Record<string, string> {
  const v = obj[key];
  const out: Record<string, string> = {};
  if (v === undefined || v === null) return out;
  if (typeof v !== 'object' || Array.isArray(v)) {
    problem(ctx, obj, key, key, `must be a map of strings, not ${describe(v)}`);
    return out;
  }
  for (const k of Object.keys(v)) {
    const s = scalarText(ctx.y, v, k);
    if (s === null && (v as Record<string, unknown>)[k] !== null) {
      problem(
        ctx,
        v,
        k,
        `${key}.${k}`,
        `must be a string, not ${describe((v as Record<string, unknown>)[k])}`,
      );
      continue;
    }
    out[k] = s ?? '';
  }
  return out;
}

/** Reads a `requires`/`conflicts`/`provides` list. */
export function readDeps(ctx: FieldCtx, obj: Record<string, unknown>, key: string): Dep[] {
  const v = obj[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    problem(ctx, obj, key, key, `must be a list of {category, name, version}, not ${describe(v)}`);
    return [];
  }
  const deps: Dep[] = [];
  v.forEach((d, i) => {
    const path = `${key}[${i}]`;
    if (d === null || typeof d !== 'object' || Array.isArray(d)) {
      problem(ctx, v, i, path, `must be a map {category, name, version}, not ${describe(d)}`);
      return;
    }
    const rec = d as Record<string, unknown>;
    const sub: FieldCtx = { ...ctx, path: joinPath(ctx.path, path) };
    const name = stringField(sub, rec, 'name');
    const category = stringField(sub, rec, 'category') ?? '';
    const version = stringField(sub, rec, 'version') ?? '';
    if (!name) {
      if (name === undefined) problem(ctx, rec, undefined, path, 'has no name');
      else problem(ctx, rec, 'name', path, 'name is empty');
      return;
    }
    let selector;
    try {
      selector = parseSelector(version);
    } catch (e) {
      problem(ctx, rec, 'version', path, (e as Error).message, 'E_VERSION');
      return;
    }
    deps.push({
      category,
      name,
      version,
      selector,
      source: { file: ctx.file, line: lineOf(ctx.y, rec, 'version') ?? lineOf(ctx.y, v, i) },
    });
  });
  return deps;
}

/**
 * Reads one package definition. Returns null when the stanza is unusable (no name or version);
 * the reasons are in the report either way.
 */
export function readPackage(ctx: FieldCtx, value: unknown): PackageSpec | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    ctx.report.error({
      code: 'E_TREE',
      file: ctx.file,
      line: lineOf(ctx.y, value) ?? 1,
      path: ctx.path,
      message: `a package definition must be a map, not ${describe(value)}`,
    });
    return null;
  }
  const obj = value as Record<string, unknown>;
  const at = lineOf(ctx.y, obj);
  let ok = true;

  const name = stringField(ctx, obj, 'name');
  if (!name) {
    problem(
      ctx,
      obj,
      name === undefined ? undefined : 'name',
      'name',
      name === undefined ? 'is missing' : 'is empty',
    );
    ok = false;
  } else if (/[\s/@]/.test(name)) {
    problem(ctx, obj, 'name', 'name', `"${name}" may not contain spaces, "/" or "@"`);
    ok = false;
  }
  const category = stringField(ctx, obj, 'category') ?? '';
  if (/[\s@]/.test(category)) {
    problem(ctx, obj, 'category', 'category', `"${category}" may not contain spaces or "@"`);
    ok = false;
  }
  let version = stringField(ctx, obj, 'version');
  if (version === undefined || version === '') {
    // luet loads such a package with an empty version (which every selector matches).
    ctx.report.warn({
      code: 'E_VERSION',
      file: ctx.file,
      line: lineOf(ctx.y, obj, version === undefined ? undefined : 'version'),
      path: joinPath(ctx.path, 'version'),
      message: `${version === undefined ? 'is missing' : 'is empty'}; loaded with an empty version, as luet does (every selector matches it)`,
    });
    version = '';
  } else if (
    !isValidVersion(version) &&
    !ctx.lenient &&
    !/^[A-Za-z0-9][A-Za-z0-9.+~:_-]*$/.test(version)
  ) {
    problem(
      ctx,
      obj,
      'version',
      'version',
      `"${version}" is not a valid version (luet would load it anyway; --lenient does too)`,
      'E_VERSION',
    );
    ok = false;
  } else if (!isValidVersion(version)) {
    ctx.report.warn({
      code: 'E_VERSION',
      file: ctx.file,
      line: lineOf(ctx.y, obj, 'version'),
      path: joinPath(ctx.path, 'version'),
      message: `"${version}" is not a Debian-style version; loaded as luet does: it sorts below every valid version and only "=${version}" or an any-version selector matches it`,
    });
  }

  const requires = readDeps(ctx, obj, 'requires');
  const conflicts = readDeps(ctx, obj, 'conflicts');
  const provides = readDeps(ctx, obj, 'provides');
  const labels = stringMap(ctx, obj, 'labels');
  const annotations = stringMap(ctx, obj, 'annotations');
  const description = stringField(ctx, obj, 'description');
  const license = stringField(ctx, obj, 'license');

  let uri: string[] = [];
  if (obj.uri !== undefined && obj.uri !== null) {
    if (typeof obj.uri === 'string') uri = [obj.uri];
    else if (Array.isArray(obj.uri) && obj.uri.every((u) => typeof u === 'string'))
      uri = obj.uri as string[];
    else problem(ctx, obj, 'uri', 'uri', `must be a list of strings, not ${describe(obj.uri)}`);
  }
  let hidden = false;
  if (obj.hidden !== undefined && obj.hidden !== null) {
    if (typeof obj.hidden === 'boolean') hidden = obj.hidden;
    else
      problem(ctx, obj, 'hidden', 'hidden', `must be true or false, not ${describe(obj.hidden)}`);
  }

  const extra: Record<string, unknown> = {};
  for (const k of Object.keys(obj)) {
    if (SPEC_FIELDS.has(k)) continue;
    extra[k] = obj[k];
    if (!LUET_EXTRA.has(k)) {
      ctx.report.warn({
        code: 'E_TREE',
        file: ctx.file,
        line: lineOf(ctx.y, obj, k),
        path: joinPath(ctx.path, k),
        message: 'not a luet package field; kept as a template value (.Values.' + k + ')',
      });
    }
  }
  if (!ok || !name || version === undefined) return null;
  return createSpec({
    category,
    name,
    version,
    requires,
    conflicts,
    provides,
    labels,
    annotations,
    uri,
    hidden,
    extra,
    source: { file: ctx.file, line: at },
    description,
    license,
  });
}

/** The template values of a package: its own fields as written, extra keys included. */
export function packageValues(
  raw: Record<string, unknown>,
  spec: PackageSpec,
): Record<string, unknown> {
  // Versions as text, not as YAML numbers.
  return { ...raw, name: spec.name, category: spec.category, version: spec.version };
}

/** Only luet's real package fields (finalize.yaml does not see extra keys). */
export function realFieldValues(
  raw: Record<string, unknown>,
  spec: PackageSpec,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(raw)) if (SPEC_FIELDS.has(k) || LUET_EXTRA.has(k)) out[k] = raw[k];
  return { ...out, name: spec.name, category: spec.category, version: spec.version };
}
