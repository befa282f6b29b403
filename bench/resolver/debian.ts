/**
 * Debian's Packages indexes (left by `apt-get update` in /var/lib/apt/lists) converted into cpm's
 * model, and the same model written as a libsolv testtags repository for `testsolv`.
 *
 * Conversion: Depends + Pre-Depends → requires; Conflicts + Breaks → conflicts; Provides →
 * provides; `<<`/`>>` → `<`/`>` (and the obsolete `<`/`>` → `<=`/`>=`). An alternative `a | b`
 * becomes a synthetic name that exactly the packages satisfying one alternative provide (Debian
 * semantics computed here); a versioned dependency on a name with unversioned providers goes the
 * same way, because luet/cpm let an unversioned provide match any version and Debian does not (and
 * so does a versioned conflict on such a name: `con--N`, provided by the packages it hits).
 * Both solvers get the identical converted problem.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSpec, type Dep, type PackageSpec } from '../../src/package/package.js';
import { parseSelector, satisfies } from '../../src/package/version.js';

const LISTS = '/var/lib/apt/lists';

/** The concatenated Packages text of every amd64 index (lz4-compressed or plain). */
export function readPackagesText(): { text: string; files: string[] } {
  const files = existsSync(LISTS)
    ? readdirSync(LISTS)
        .filter((f) => /_binary-amd64_Packages(\.lz4)?$/.test(f))
        .sort()
    : [];
  if (files.length === 0)
    throw new Error(`no *_binary-amd64_Packages[.lz4] in ${LISTS}: run apt-get update`);
  const parts: string[] = [];
  for (const f of files) {
    const path = join(LISTS, f);
    if (f.endsWith('.lz4')) {
      const r = spawnSync('lz4', ['-dc', path], { maxBuffer: 1 << 30, encoding: 'utf8' });
      if (r.error || r.status !== 0) {
        throw new Error(
          `lz4 -dc ${path} failed (${r.error?.message ?? r.stderr}); apt-get install lz4`,
        );
      }
      parts.push(r.stdout);
    } else {
      parts.push(readFileSync(path, 'utf8'));
    }
  }
  return { text: parts.join('\n\n'), files };
}

interface Atom {
  name: string;
  op: string;
  version: string;
}

interface RawPkg {
  name: string;
  version: string;
  depends: Atom[][];
  conflicts: Atom[];
  provides: Atom[];
}

const OPS: Record<string, string> = {
  '<<': '<',
  '>>': '>',
  '<=': '<=',
  '>=': '>=',
  '=': '=',
  '<': '<=',
  '>': '>=',
};
const ATOM =
  /^([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|>=|>>|=|<|>)\s*([^)\s]+)\s*\))?/;

function parseAtom(s: string): Atom | null {
  const m = ATOM.exec(s.trim());
  if (!m) return null;
  return { name: m[1]!, op: m[2] ? OPS[m[2]]! : '', version: m[3] ?? '' };
}

function parseList(v: string | undefined): Atom[][] {
  if (!v) return [];
  return v
    .split(',')
    .map((g) =>
      g
        .split('|')
        .map(parseAtom)
        .filter((a): a is Atom => a !== null),
    )
    .filter((g) => g.length > 0);
}

function parseStanzas(text: string): RawPkg[] {
  const out: RawPkg[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last = '';
    for (const line of stanza.split('\n')) {
      if (line.startsWith(' ') || line.startsWith('\t')) {
        if (last) fields.set(last, fields.get(last)! + ' ' + line.trim());
        continue;
      }
      const c = line.indexOf(':');
      if (c <= 0) continue;
      last = line.slice(0, c);
      fields.set(last, line.slice(c + 1).trim());
    }
    const name = fields.get('Package');
    const version = fields.get('Version');
    const arch = fields.get('Architecture');
    if (!name || !version || (arch !== 'amd64' && arch !== 'all')) continue;
    out.push({
      name,
      version,
      depends: [...parseList(fields.get('Pre-Depends')), ...parseList(fields.get('Depends'))],
      conflicts: [...parseList(fields.get('Conflicts')), ...parseList(fields.get('Breaks'))].flat(),
      provides: parseList(fields.get('Provides')).flat(),
    });
  }
  return out;
}

const selCache = new Map<string, ReturnType<typeof parseSelector> | null>();
function sel(op: string, version: string): ReturnType<typeof parseSelector> | null {
  const raw = op ? `${op}${version}` : '';
  let s = selCache.get(raw);
  if (s === undefined) {
    try {
      s = parseSelector(raw);
    } catch {
      s = null; // a version cpm cannot parse: the dependency is dropped (counted in stats)
    }
    selCache.set(raw, s);
  }
  return s;
}

const mkDep = (name: string, op = '', version = ''): Dep => ({
  category: '',
  name,
  version: op ? `${op}${version}` : '',
  selector: sel(op, version)!,
});

export interface Converted {
  specs: PackageSpec[];
  stats: { packages: number; synthetic: number; dropped: number };
}

export function convertDebian(text: string): Converted {
  const raw = parseStanzas(text);
  // Deduplicate ids (the same package in several indexes).
  const seen = new Set<string>();
  const pkgs = raw.filter((p) => {
    const id = `${p.name}@${p.version}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
  const byName = new Map<string, RawPkg[]>();
  const providers = new Map<string, Array<{ pkg: RawPkg; atom: Atom }>>();
  for (const p of pkgs) {
    byName.set(p.name, [...(byName.get(p.name) ?? []), p]);
    for (const a of p.provides) {
      const l = providers.get(a.name) ?? [];
      l.push({ pkg: p, atom: a });
      providers.set(a.name, l);
    }
  }
  const hasUnversionedProvider = (n: string): boolean =>
    (providers.get(n) ?? []).some((x) => x.atom.version === '');

  // Debian semantics: who satisfies one atom.
  const satisfiers = (a: Atom): RawPkg[] => {
    const s = sel(a.op, a.version);
    if (!s) return [];
    const out: RawPkg[] = [];
    for (const p of byName.get(a.name) ?? []) if (satisfies(p.version, s)) out.push(p);
    for (const { pkg, atom } of providers.get(a.name) ?? []) {
      if (a.op === '' || (atom.version !== '' && satisfies(atom.version, s))) out.push(pkg);
    }
    return out;
  };

  const extraProvides = new Map<RawPkg, Set<string>>();
  const synthetic = new Map<string, string>();
  let dropped = 0;
  /** A synthetic name provided by exactly the packages satisfying one of `group` (Debian-style). */
  const syntheticFor = (key: string, group: Atom[], prefix: string): Dep => {
    let name = synthetic.get(key);
    if (!name) {
      name = `${prefix}--${synthetic.size}`;
      synthetic.set(key, name);
      for (const a of group) {
        for (const p of satisfiers(a)) {
          const s = extraProvides.get(p) ?? new Set<string>();
          s.add(name);
          extraProvides.set(p, s);
        }
      }
    }
    return mkDep(name);
  };
  const depFor = (group: Atom[]): Dep | null => {
    const simple =
      group.length === 1 && !(group[0]!.op !== '' && hasUnversionedProvider(group[0]!.name));
    if (simple) {
      const a = group[0]!;
      if (!sel(a.op, a.version)) {
        dropped++;
        return null;
      }
      return mkDep(a.name, a.op, a.version);
    }
    const key = group.map((a) => `${a.name}${a.op}${a.version}`).join('|');
    return syntheticFor(key, group, 'alt');
  };

  const deps = new Map<RawPkg, { requires: Dep[]; conflicts: Dep[] }>();
  for (const p of pkgs) {
    const requires: Dep[] = [];
    for (const g of p.depends) {
      const d = depFor(g);
      if (d) requires.push(d);
    }
    const conflicts: Dep[] = [];
    for (const a of p.conflicts) {
      if (!sel(a.op, a.version)) {
        dropped++;
        continue;
      }
      if (a.op !== '' && hasUnversionedProvider(a.name)) {
        // Debian: a versioned conflict ignores unversioned provides, which cpm would match.
        conflicts.push(syntheticFor(`!${a.name}${a.op}${a.version}`, [a], 'con'));
        continue;
      }
      conflicts.push(mkDep(a.name, a.op, a.version));
    }
    deps.set(p, { requires, conflicts });
  }
  const specs: PackageSpec[] = pkgs.map((p) => {
    const provides: Dep[] = p.provides.flatMap((a) => {
      if (a.version === '') return [mkDep(a.name)];
      return sel('=', a.version) ? [mkDep(a.name, '=', a.version)] : [];
    });
    for (const n of [...(extraProvides.get(p) ?? [])].sort()) provides.push(mkDep(n));
    return createSpec({
      category: '',
      name: p.name,
      version: p.version,
      ...deps.get(p)!,
      provides,
    });
  });
  return { specs, stats: { packages: specs.length, synthetic: synthetic.size, dropped } };
}

/** "1:2.3-4" → ["1:2.3", "4"]; no revision → "-" (testtags' empty release). */
function evrParts(v: string): [string, string] {
  const i = v.lastIndexOf('-');
  return i < 0 ? [v, '-'] : [v.slice(0, i), v.slice(i + 1)];
}

function ttDep(d: Dep): string {
  if (d.selector.any) return d.name;
  return d.selector.constraints.map((c) => `${d.name} ${c.op} ${c.version}`).join(', ');
}

/** The converted packages as a libsolv testtags repository. */
export function toTesttags(specs: readonly PackageSpec[]): string {
  const out: string[] = [];
  for (const s of specs) {
    const [v, r] = evrParts(s.version);
    out.push(`=Pkg: ${s.name} ${v} ${r} x86_64`);
    // A selector with two bounds becomes two requirements; cpm's converter never emits those.
    if (s.requires.length) out.push('+Req:', ...s.requires.map(ttDep), '-Req:');
    if (s.conflicts.length) out.push('+Con:', ...s.conflicts.map(ttDep), '-Con:');
    out.push('+Prv:', `${s.name} = ${s.version}`, ...s.provides.map(ttDep), '-Prv:');
  }
  return out.join('\n') + '\n';
}
