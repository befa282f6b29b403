/**
 * Turns the part of a Universe that a solve needs into SAT variables and clauses, lazily: a family
 * gets every version as a variable (plus one native at-most-one group) when something names it, but
 * a package's own requires and conflicts are encoded only once it is "expanded" — when a model
 * installs it (solve() below), or the optimiser considers it. A model that installs only expanded
 * packages satisfies every clause of the whole reachable problem (the rest are false, and their
 * clauses all start with "not installed"), and an UNSAT core of the partial problem is a core of the
 * whole, so the answers are those of the full encoding at a fraction of its size.
 * Every clause carries a tag describing it in package terms, so an UNSAT core can be read back as
 * plain sentences (explain.ts).
 */
import {
  familyKey,
  packageId,
  type Dep,
  type PackageSpec,
  type Universe,
} from '../package/package.js';
import {
  compareVersions,
  parseVersion,
  satisfiesParsed,
  type ParsedVersion,
  type Selector,
} from '../package/version.js';
import { neg, pos, SatSolver } from './sat.js';
import { providesDep } from '../package/match.js';

export type Tag =
  | { kind: 'job'; op: string; family: string; selector: Selector; cands: number[] }
  | { kind: 'keep'; family: string; installed: number }
  | { kind: 'requires'; pkg: number; dep: Dep; cands: number[]; known: boolean }
  | { kind: 'conflicts'; pkg: number; dep: Dep; other: number }
  | { kind: 'amo'; family: string }
  | { kind: 'optimise' };

/** Pair keys v * PAIR + o stay exact doubles for up to 2^26 vars. */
const PAIR = 2 ** 26;

const cmpStr = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const NONE: readonly number[] = [];

/** Cached candidates of one family for one selector; a family rarely sees more than a few. */
interface CandEntry {
  raw: string;
  cands: number[];
  next: CandEntry | undefined;
}

export class Encoding {
  readonly sat = new SatSolver();
  /** Package of each var; sparse, since job activation vars interleave with package vars. */
  readonly specs: PackageSpec[] = [];
  /**
   * Clause tags by id. A requires tag (most of them) is stored as its package var and the index of
   * the dependency, and only becomes a Tag object when an explanation reads it (tagAt).
   */
  private readonly tagObjs: (Tag | null)[] = [];
  private readonly tagPkg: number[] = [];
  private readonly tagDep: number[] = [];
  /** Each package var's parsed version (selectors are matched against it many times). */
  private readonly parsed: (ParsedVersion | null)[] = [];
  /** BFS distance from the request, per var (for ordering explanations and optimisation). */
  readonly depth: number[] = [];
  /** Family → its vars, newest first. */
  readonly familyVars = new Map<string, number[]>();
  /** Families in the order they were first reached (deterministic BFS). */
  readonly familyOrder: string[] = [];
  /** Built on first use (most solves ask for a handful of ids); dropped when vars are added. */
  private varById: Map<string, number> | undefined;
  /** Family → candidates per selector text (a short list, not a Map per family). */
  private readonly candCache = new Map<string, CandEntry>();
  /** Per var: its requires and conflicts are encoded. */
  private done = new Uint8Array(256);
  /** Provided family → vars providing it (every var created so far). */
  private readonly providerVars = new Map<string, number[]>();
  /** Conflicted family → expanded packages' conflict entries naming it (checked against new vars). */
  private readonly conflictsOn = new Map<string, { pkg: number; dep: Dep }[]>();
  private readonly seenPairs = new Set<number>();
  /** Failures met by solve(…, true), across its rounds. */
  readonly dropped: { tags: number[]; assumptions: number[] }[] = [];
  private readonly optTag: number;
  private readonly installedByFamily: Map<string, PackageSpec>;

  constructor(
    readonly universe: Universe,
    /** Installed specs, which stay candidates even when the universe no longer has them. */
    readonly installed: readonly PackageSpec[],
  ) {
    this.optTag = this.tag({ kind: 'optimise' });
    this.installedByFamily = new Map(installed.map((s) => [familyKey(s), s]));
  }

  tag(t: Tag): number {
    this.tagObjs.push(t);
    this.tagPkg.push(-1);
    this.tagDep.push(-1);
    return this.tagObjs.length - 1;
  }

  private requireTag(v: number, r: number): number {
    this.tagObjs.push(null);
    this.tagPkg.push(v);
    this.tagDep.push(r);
    return this.tagObjs.length - 1;
  }

  /** The tag of a clause, in package terms. */
  tagAt(i: number): Tag {
    const t = this.tagObjs[i];
    if (t) return t;
    const v = this.tagPkg[i]!;
    const dep = this.specs[v]!.requires[this.tagDep[i]!]!;
    const fam = familyKey(dep);
    const cands = this.requireCands(v, this.candidatesOf(fam, dep.selector, this.depth[v]! + 1));
    return { kind: 'requires', pkg: v, dep, cands, known: cands.length > 0 || this.known(fam) };
  }

  /** A requirement of `v` is not met by `v` itself. */
  private requireCands(v: number, all: number[]): number[] {
    return all.includes(v) ? all.filter((c) => c !== v) : all;
  }

  get optimiseTag(): number {
    return this.optTag;
  }

  idOf(v: number): string {
    return packageId(this.specs[v]!);
  }

  /** Whether any package has this name or provides it. */
  known(family: string): boolean {
    return (
      this.universe.versions(family).length > 0 ||
      this.universe.providersOf(family).length > 0 ||
      this.installedByFamily.has(family)
    );
  }

  /** Specs of a family, newest first: the universe's versions plus an installed one it lacks. */
  familySpecs(family: string): readonly PackageSpec[] {
    const have = this.universe.versions(family);
    const inst = this.installedByFamily.get(family);
    if (inst && !have.some((s) => s.version === inst.version)) {
      const list = [...have, inst];
      list.sort((a, b) => compareVersions(b.version, a.version) || cmpStr(a.version, b.version));
      return list;
    }
    return have;
  }

  /** Vars of a family (encoding it on first use, with its at-most-one group). */
  family(fam: string, depth: number): number[] {
    const have = this.familyVars.get(fam);
    if (have) return have;
    const specs = this.familySpecs(fam);
    const vars: number[] = new Array<number>(specs.length);
    for (let i = 0; i < specs.length; i++) {
      const v = this.sat.newVar();
      this.specs[v] = specs[i]!;
      this.parsed[v] = parseVersion(specs[i]!.version);
      this.depth[v] = depth;
      vars[i] = v;
    }
    if (specs.length > 0) this.varById = undefined;
    this.familyVars.set(fam, vars);
    this.familyOrder.push(fam);
    if (vars.length > 1) this.sat.addAtMostOne(vars, this.tag({ kind: 'amo', family: fam }));
    for (let i = 0; i < vars.length; i++) this.registerVar(vars[i]!, fam);
    return vars;
  }

  /** Indexes a new var's provides, and encodes expanded packages' conflicts that name it. */
  private registerVar(v: number, fam: string): void {
    const s = this.specs[v]!;
    const pending = this.conflictsOn.size > 0;
    if (pending) this.conflictsAgainst(v, fam, fam);
    const provs = s.provides;
    for (let i = 0; i < provs.length; i++) {
      const pf = familyKey(provs[i]!);
      const l = this.providerVars.get(pf);
      if (l) {
        if (l[l.length - 1] !== v) l.push(v);
      } else this.providerVars.set(pf, [v]);
      if (pending && pf !== fam) this.conflictsAgainst(v, fam, pf);
    }
  }

  /** Expanded packages whose conflicts on family `on` match new var `v` (of family `fam`). */
  private conflictsAgainst(v: number, fam: string, on: string): void {
    const list = this.conflictsOn.get(on);
    if (!list) return;
    const s = this.specs[v]!;
    for (let i = 0; i < list.length; i++) {
      const { pkg, dep } = list[i]!;
      if (pkg === v) continue;
      const hit =
        on === fam
          ? familyKey(this.specs[pkg]!) !== fam && this.matches(v, dep.selector)
          : providesDep(s, on, dep.selector);
      if (hit) this.conflict(pkg, dep, v);
    }
  }

  private conflict(pkg: number, dep: Dep, other: number): void {
    const k = pkg < other ? pkg * PAIR + other : other * PAIR + pkg;
    if (this.seenPairs.has(k)) return;
    this.seenPairs.add(k);
    this.sat.addClause([neg(pkg), neg(other)], this.tag({ kind: 'conflicts', pkg, dep, other }));
  }

  /** Candidates for a dependency: providers first (by family, newest first), then real versions. */
  candidates(dep: { category: string; name: string; selector: Selector }, depth: number): number[] {
    return this.candidatesOf(familyKey(dep), dep.selector, depth);
  }

  private candidatesOf(fam: string, selector: Selector, depth: number): number[] {
    const first = this.candCache.get(fam);
    for (let e = first; e !== undefined; e = e.next) if (e.raw === selector.raw) return e.cands;
    const out: number[] = [];
    const provs = this.universe.providersOf(fam);
    if (provs.length > 0) {
      // Providers come sorted by id, so one family's versions are adjacent.
      const provFams: string[] = [];
      let last = '';
      for (let i = 0; i < provs.length; i++) {
        const pf = familyKey(provs[i]!);
        if (pf !== fam && pf !== last) provFams.push(pf);
        last = pf;
      }
      if (provFams.length > 1) provFams.sort();
      for (let i = 0; i < provFams.length; i++) {
        if (i > 0 && provFams[i] === provFams[i - 1]) continue;
        const vars = this.family(provFams[i]!, depth);
        for (let k = 0; k < vars.length; k++) {
          if (providesDep(this.specs[vars[k]!]!, fam, selector)) out.push(vars[k]!);
        }
      }
    }
    if (this.universe.versions(fam).length > 0 || this.installedByFamily.has(fam)) {
      const vars = this.family(fam, depth);
      for (let k = 0; k < vars.length; k++) {
        if (this.matches(vars[k]!, selector)) out.push(vars[k]!);
      }
    }
    this.candCache.set(fam, { raw: selector.raw, cands: out, next: first });
    return out;
  }

  varOfId(id: string): number | undefined {
    if (!this.varById) {
      this.varById = new Map();
      for (let v = 0; v < this.specs.length; v++) {
        const s = this.specs[v];
        if (s) this.varById.set(packageId(s), v);
      }
    }
    return this.varById.get(id);
  }

  /** Whether v's requires and conflicts are encoded (job activation vars count as expanded). */
  expanded(v: number): boolean {
    return (v < this.done.length && this.done[v] === 1) || this.specs[v] === undefined;
  }

  /** Encodes package v's requires (its candidates become vars) and its conflicts. */
  expand(v: number): void {
    if (this.expanded(v)) return;
    if (v >= this.done.length) {
      const d = new Uint8Array(Math.max(v + 1, this.done.length * 2));
      d.set(this.done);
      this.done = d;
    }
    this.done[v] = 1;
    const s = this.specs[v]!;
    const d = this.depth[v]! + 1;
    const reqs = s.requires;
    for (let r = 0; r < reqs.length; r++) {
      const dep = reqs[r]!;
      const cands = this.requireCands(v, this.candidatesOf(familyKey(dep), dep.selector, d));
      const t = this.requireTag(v, r);
      if (cands.length === 0) this.sat.addClause([neg(v)], t);
      else this.sat.addRequire(v, cands, t);
    }
    const confs = s.conflicts;
    if (confs.length === 0) return;
    const sFam = familyKey(s);
    for (let c = 0; c < confs.length; c++) {
      const dep = confs[c]!;
      const fam = familyKey(dep);
      if (fam !== sFam) {
        const own = this.familyVars.get(fam) ?? NONE;
        for (let i = 0; i < own.length; i++) {
          if (this.matches(own[i]!, dep.selector)) this.conflict(v, dep, own[i]!);
        }
      }
      const provs = this.providerVars.get(fam) ?? NONE;
      for (let i = 0; i < provs.length; i++) {
        const o = provs[i]!;
        if (o !== v && providesDep(this.specs[o]!, fam, dep.selector)) this.conflict(v, dep, o);
      }
      const l = this.conflictsOn.get(fam);
      if (l) l.push({ pkg: v, dep });
      else this.conflictsOn.set(fam, [{ pkg: v, dep }]);
    }
  }

  /** Whether package var v's version matches `sel`. */
  private matches(v: number, sel: Selector): boolean {
    return sel.any || satisfiesParsed(this.specs[v]!.version, this.parsed[v] ?? null, sel);
  }

  /** Calls `f` with every candidate of every requirement of expanded package v. */
  eachRequireCandidate(v: number, f: (c: number) => unknown): void {
    const reqs = this.specs[v]!.requires;
    for (let r = 0; r < reqs.length; r++) {
      const dep = reqs[r]!;
      const cands = this.candidatesOf(familyKey(dep), dep.selector, 0);
      for (let k = 0; k < cands.length; k++) if (cands[k] !== v) f(cands[k]!);
    }
  }

  /**
   * sat.solve, then expands every package the model installs that is not expanded yet and solves
   * again, until a model installs only expanded packages. With dropFailed, failures accumulate in
   * `dropped` (the engine's own list covers one round). When no such model exists, the last complete
   * model stays the current one (a model of a round in between may break clauses added after it).
   */
  solve(assumptions: readonly number[], dropFailed = false): boolean {
    if (dropFailed) this.dropped.length = 0;
    const before = this.sat.saveModel();
    let active = assumptions;
    for (;;) {
      const ok = this.sat.solve(active, dropFailed);
      if (dropFailed && this.sat.droppedCores.length > 0) {
        const gone = new Set<number>();
        for (const core of this.sat.droppedCores) {
          this.dropped.push(core);
          for (const a of core.assumptions) gone.add(a);
        }
        active = active.filter((a) => !gone.has(a));
      }
      if (!ok) {
        this.sat.restoreModel(before);
        return false;
      }
      let grew = false;
      const n = this.specs.length;
      for (let v = 0; v < n; v++) {
        if (this.sat.modelValue(v) && !this.expanded(v)) {
          this.expand(v);
          grew = true;
        }
      }
      if (!grew) return true;
    }
  }

  /** A job: one of `cands` must be installed while the returned activation var is true. */
  job(op: string, family: string, selector: Selector, cands: number[]): number {
    const act = this.sat.newVar();
    this.sat.addRequire(act, cands, this.tag({ kind: 'job', op, family, selector, cands }));
    return act;
  }

  /** Keeps an installed family installed (in some version, the installed one preferred). */
  keep(family: string, cands: number[], installed: number): void {
    this.sat.addRequire(null, cands, this.tag({ kind: 'keep', family, installed }));
  }

  /** Vars true in the last model. */
  chosen(): number[] {
    const out: number[] = [];
    for (let v = 0; v < this.specs.length; v++) {
      if (this.specs[v] && this.sat.modelValue(v)) out.push(v);
    }
    return out;
  }

  /** Permanently fixes a literal (used by the optimisation passes). */
  fix(v: number, value: boolean): void {
    this.sat.addUnit(value ? pos(v) : neg(v), this.optTag);
  }
}
