/**
 * Turns the reachable part of a Universe into SAT variables and clauses. Only families reachable
 * from the request and the installed set are encoded; each encoded family gets every version as a
 * variable plus one native at-most-one group. Every clause carries a tag describing it in package
 * terms, so an UNSAT core can be read back as plain sentences (explain.ts).
 */
import {
  familyKey,
  packageId,
  type Dep,
  type PackageSpec,
  type Universe,
} from '../spec/package.js';
import { compareVersions, satisfies, type Selector } from '../spec/version.js';
import { neg, pos, SatSolver } from './sat.js';
import { providesDep } from './match.js';

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
  readonly tags: Tag[] = [];
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
  private readonly queue: number[] = [];
  private qi = 0;
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
    this.tags.push(t);
    return this.tags.length - 1;
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
      this.depth[v] = depth;
      vars[i] = v;
      this.queue.push(v);
    }
    if (specs.length > 0) this.varById = undefined;
    this.familyVars.set(fam, vars);
    this.familyOrder.push(fam);
    if (vars.length > 1) this.sat.addAtMostOne(vars, this.tag({ kind: 'amo', family: fam }));
    return vars;
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
        if (satisfies(this.specs[vars[k]!]!.version, selector)) out.push(vars[k]!);
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

  /** Encodes requires of everything reached so far (transitively), then conflicts among them. */
  close(): void {
    while (this.qi < this.queue.length) {
      const v = this.queue[this.qi++]!;
      const s = this.specs[v]!;
      const d = this.depth[v]! + 1;
      const reqs = s.requires;
      for (let r = 0; r < reqs.length; r++) {
        const dep = reqs[r]!;
        const fam = familyKey(dep);
        const all = this.candidatesOf(fam, dep.selector, d);
        const cands = all.includes(v) ? all.filter((c) => c !== v) : all;
        // `known` only matters for explaining a requirement nothing can satisfy.
        const known = cands.length > 0 || this.known(fam);
        const t = this.tag({ kind: 'requires', pkg: v, dep, cands, known });
        if (cands.length === 0) this.sat.addClause([neg(v)], t);
        else this.sat.addRequire(v, cands, t);
      }
    }
    // Conflicts only matter between encoded packages: index the encoded providers once.
    const encodedProviders = new Map<string, number[]>();
    for (let v = 0; v < this.specs.length; v++) {
      const s = this.specs[v];
      if (!s) continue;
      for (let i = 0; i < s.provides.length; i++) {
        const pf = familyKey(s.provides[i]!);
        const l = encodedProviders.get(pf);
        if (l) {
          if (l[l.length - 1] !== v) l.push(v);
        } else encodedProviders.set(pf, [v]);
      }
    }
    const seenPairs = new Set<number>();
    for (let v = 0; v < this.specs.length; v++) {
      const s = this.specs[v];
      if (!s) continue; // a job's activation var
      const confs = s.conflicts;
      if (confs.length === 0) continue;
      const sFam = familyKey(s);
      for (let c = 0; c < confs.length; c++) {
        const dep = confs[c]!;
        const fam = familyKey(dep);
        const own = fam !== sFam ? this.familyVars.get(fam) : undefined;
        const provs = encodedProviders.get(fam) ?? NONE;
        if (own === undefined && provs.length === 0) continue;
        const targets: number[] = [];
        if (own) {
          for (let i = 0; i < own.length; i++) {
            if (satisfies(this.specs[own[i]!]!.version, dep.selector)) targets.push(own[i]!);
          }
        }
        for (let i = 0; i < provs.length; i++) {
          const o = provs[i]!;
          if (o !== v && providesDep(this.specs[o]!, fam, dep.selector)) targets.push(o);
        }
        for (const o of targets) {
          const k = v < o ? v * PAIR + o : o * PAIR + v;
          if (seenPairs.has(k)) continue;
          seenPairs.add(k);
          this.sat.addClause(
            [neg(v), neg(o)],
            this.tag({ kind: 'conflicts', pkg: v, dep, other: o }),
          );
        }
      }
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
    this.sat.addClause([value ? pos(v) : neg(v)], this.optTag);
  }
}
