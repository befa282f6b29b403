/**
 * Reads an UNSAT core (tags of the clauses that together cannot hold) back as plain sentences:
 * which request, which package requires or conflicts with what (with the tree's file:line when the
 * universe came from a tree), and why no candidate is left. Sentences are ordered from the request
 * outwards (breadth-first distance of the package they are about).
 */
import { familyKey, packageId, type Dep, type SourceLoc } from '../package/package.js';
import { compareVersions, describeSelector, type Selector } from '../package/version.js';
import type { Encoding, Tag } from './encode.js';
import type { PlanProblem } from './plan.js';

function where(src: SourceLoc | undefined): string {
  if (!src) return '';
  return ` (${src.file}${src.line ? `:${src.line}` : ''})`;
}

function selText(fam: string, sel: Selector): string {
  return sel.any ? fam : `${fam} ${describeSelector(sel)}`;
}

/** A lower bound of the selector, if it has one (for "the newest X is Y"). */
function lowerBound(sel: Selector): string | null {
  for (const c of sel.constraints)
    if (c.op === '>=' || c.op === '>' || c.op === '=') return c.version;
  return null;
}

function list(enc: Encoding, vars: number[]): string {
  const ids = vars.map((v) => enc.idOf(v));
  return ids.length > 6
    ? `${ids.slice(0, 6).join(', ')} and ${ids.length - 6} more`
    : ids.join(', ');
}

function noCandidate(enc: Encoding, dep: Dep): string {
  const fam = familyKey(dep);
  const versions = enc.familySpecs(fam).map((s) => s.version);
  if (versions.length === 0) {
    return enc.known(fam)
      ? `but nothing provides ${selText(fam, dep.selector)}`
      : `but no package ${fam} exists (nothing has this name or provides it)`;
  }
  const lb = lowerBound(dep.selector);
  if (lb !== null && compareVersions(versions[0]!, lb) < 0) {
    return `but the newest ${fam} is ${versions[0]}`;
  }
  const shown = versions.slice(0, 6).join(', ') + (versions.length > 6 ? ', …' : '');
  return `but no version of ${fam} matches (available: ${shown})`;
}

function sentence(enc: Encoding, t: Tag): string | null {
  switch (t.kind) {
    case 'job':
      return `you asked to ${t.op} ${selText(t.family, t.selector)}, which only ${list(enc, t.cands)} can satisfy`;
    case 'keep':
      return `${enc.idOf(t.installed)} is installed and stays installed (install does not remove packages; uninstall it first)`;
    case 'requires': {
      const s = enc.specs[t.pkg]!;
      const head = `${packageId(s)} requires ${selText(familyKey(t.dep), t.dep.selector)}${where(t.dep.source ?? s.source)}`;
      if (t.cands.length === 0) return `${head}, ${noCandidate(enc, t.dep)}`;
      return `${head}, which only ${list(enc, t.cands)} can satisfy`;
    }
    case 'conflicts': {
      const s = enc.specs[t.pkg]!;
      return `${packageId(s)} conflicts with ${selText(familyKey(t.dep), t.dep.selector)}${where(t.dep.source ?? s.source)}, which ${enc.idOf(t.other)} matches`;
    }
    case 'amo':
      return `only one version of ${t.family} can be installed at a time`;
    case 'optimise':
      return null;
  }
}

/** Sort key: request first, then by distance from it, then kind, then text. */
function rank(enc: Encoding, t: Tag): number {
  switch (t.kind) {
    case 'job':
      return -2;
    case 'keep':
      return -1;
    case 'requires':
    case 'conflicts':
      return enc.depth[t.pkg]!;
    case 'amo':
      return 1e9;
    default:
      return 1e9 + 1;
  }
}

export function explainCore(
  enc: Encoding,
  core: number[],
): { problem: PlanProblem; jobs: string[] } {
  const tags = core.map((i) => enc.tagAt(i));
  const rows = tags
    .map((t) => ({ t, r: rank(enc, t), s: sentence(enc, t) }))
    .filter((x): x is { t: Tag; r: number; s: string } => x.s !== null)
    .sort((a, b) => a.r - b.r || (a.s < b.s ? -1 : a.s > b.s ? 1 : 0));
  const jobs = [...new Set(tags.flatMap((t) => (t.kind === 'job' ? [t.family] : [])))].sort();
  const unknown = tags.some((t) => t.kind === 'requires' && t.cands.length === 0 && !t.known);
  const what = jobs.length > 0 ? jobs.join(', ') : 'the installed packages';
  const reasons = rows.map((x) => x.s);
  return {
    problem: {
      code: unknown ? 'E_NOT_FOUND' : 'E_UNSAT',
      ...(jobs.length > 0 ? { package: jobs.join(', ') } : {}),
      message: `cannot satisfy ${what}: ${reasons.join('; ')}`,
      reasons,
    },
    jobs,
  };
}
