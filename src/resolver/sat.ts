/**
 * A small CDCL SAT engine specialised for package problems (the libsolv approach):
 * - two-watched-literal propagation with 1UIP clause learning and non-chronological backjumping;
 * - native at-most-one groups (one per package family), so "one version per family" costs O(versions)
 *   space instead of O(versions²) pairwise clauses; a binary reason is built only when analysis needs it;
 * - package-aware decisions: instead of VSIDS, the engine satisfies the first open "require" clause
 *   (a job, or a dependency of a package already chosen) with its most preferred candidate, and
 *   otherwise decides "not installed". Preferences therefore shape the first model directly;
 * - proof tracing: every learned clause remembers the clauses it was resolved from, so an UNSAT answer
 *   yields a core of original clauses (their caller-side tags) to explain in plain words.
 *
 * Literals: var v → 2v (true) / 2v+1 (false). Clause indices are stable; tags are caller-defined.
 */

const NO_REASON = -1;
const NONE: readonly number[] = [];

export const pos = (v: number): number => v << 1;
export const neg = (v: number): number => (v << 1) | 1;
export const varOf = (lit: number): number => lit >> 1;

/**
 * Clauses are plain arrays of small integers: V8 allocates those far faster than typed arrays (each
 * of which needs its own ArrayBuffer), and encoding allocates one or two per clause.
 */
type Lits = number[];

export class SatSolver {
  private nVars = 0;
  private cap = 0;
  private assign = new Int8Array(0); // 1 true, -1 false, 0 unassigned
  private level = new Int32Array(0);
  /** clause index, NO_REASON for decisions, or ≤ -2: false by the at-most-one group of var (-r-2). */
  private reason = new Int32Array(0);
  private group = new Int32Array(0);
  private seen = new Uint8Array(0);
  private trail = new Int32Array(0);
  private trailLen = 0;
  private qhead = 0;
  private trailLim: number[] = [];
  /** Clauses watching each literal; created on first watch (most literals never get one). */
  private watches: (number[] | undefined)[] = [];
  /** Require clauses owned by each var; created on first use. */
  private owned: (number[] | undefined)[] = [];

  private readonly clauses: Lits[] = [];
  private readonly tags: number[] = [];
  private readonly antecedents: (Lits | null)[] = [];
  /** Candidate vars of require clauses in preference order (null for plain clauses). */
  private readonly prefs: (readonly number[] | null)[] = [];
  private readonly groups: Lits[] = [];
  private readonly roots: number[] = [];

  private rootCursor = 0;
  private reqCursor = 0;
  private dirty = true;
  private rootConflict = -1;
  private modelArr: Int8Array | null = null;
  conflicts = 0;
  decisions = 0;

  get numVars(): number {
    return this.nVars;
  }
  get numClauses(): number {
    return this.clauses.length;
  }

  newVar(): number {
    if (this.nVars === this.cap) this.grow(Math.max(64, this.cap * 2));
    const v = this.nVars++;
    this.group[v] = -1;
    this.watches.push(undefined, undefined);
    this.owned.push(undefined);
    return v;
  }

  private grow(n: number): void {
    const g = <T extends Int8Array | Int32Array | Uint8Array>(a: T, size: number): T => {
      const b = new (a.constructor as new (n: number) => T)(size);
      b.set(a);
      return b;
    };
    this.assign = g(this.assign, n);
    this.level = g(this.level, n);
    this.reason = g(this.reason, n);
    this.group = g(this.group, n);
    this.seen = g(this.seen, n);
    this.trail = g(this.trail, n);
    this.cap = n;
  }

  value(lit: number): number {
    const a = this.assign[lit >> 1]!;
    return lit & 1 ? -a : a;
  }

  /** At most one of `vars` is true. A var belongs to at most one group. */
  addAtMostOne(vars: readonly number[], tag: number): void {
    const gi = this.groups.length;
    this.cancelUntil(0);
    this.groups.push(vars.slice());
    this.groupTags.push(tag);
    for (const v of vars) this.group[v] = gi;
    this.qhead = 0; // re-propagate level-0 facts through the new group
  }
  private readonly groupTags: number[] = [];

  /** A plain clause. Returns its index. */
  addClause(lits: readonly number[], tag: number): number {
    return this.add(lits.slice(), tag, null, null);
  }

  addUnit(lit: number, tag: number): number {
    return this.add([lit], tag, null, null);
  }

  /**
   * A require clause: when `owner` is true (or always, when owner is null) one of the `candidates`
   * (vars) must be true; decisions try them in the given order. The array is kept as the preference
   * order, so the caller must not change it afterwards.
   */
  addRequire(owner: number | null, candidates: readonly number[], tag: number): number {
    const off = owner === null ? 0 : 1;
    const lits: Lits = new Array<number>(candidates.length + off);
    if (owner !== null) lits[0] = neg(owner);
    for (let k = 0; k < candidates.length; k++) lits[k + off] = pos(candidates[k]!);
    const idx = this.add(lits, tag, null, candidates);
    this.dirty = true; // the owner may already be true: the decision scan must see the new clause
    if (owner === null) this.roots.push(idx);
    else {
      const own = this.owned[owner];
      if (own) own.push(idx);
      else this.owned[owner] = [idx];
    }
    return idx;
  }

  private add(lits: Lits, tag: number, ante: Lits | null, pref: readonly number[] | null): number {
    this.cancelUntil(0);
    const idx = this.clauses.length;
    this.clauses.push(lits);
    this.tags.push(tag);
    this.antecedents.push(ante);
    this.prefs.push(pref);
    if (this.occ && this.isProblem(idx)) this.occurs(idx);
    if (this.rootConflict >= 0) return idx;
    // Drop literals already false at level 0 from the watch choice; keep them in the clause for proofs.
    let open = 0;
    for (let i = 0; i < lits.length; i++) {
      const val = this.value(lits[i]!);
      if (val === 1) return idx; // already satisfied at level 0 forever
      if (val === 0) {
        const t = lits[open]!;
        lits[open] = lits[i]!;
        lits[i] = t;
        open++;
      }
    }
    if (open === 0) {
      this.rootConflict = idx;
      return idx;
    }
    if (open === 1) {
      this.enqueue(lits[0]!, idx);
      const c = this.propagate();
      if (c >= 0) this.rootConflict = c;
      return idx;
    }
    this.watch(lits[0]!, idx);
    this.watch(lits[1]!, idx);
    return idx;
  }

  private watch(lit: number, ci: number): void {
    const ws = this.watches[lit];
    if (ws) ws.push(ci);
    else this.watches[lit] = [ci];
  }

  private enqueue(lit: number, reason: number): void {
    const v = lit >> 1;
    this.assign[v] = lit & 1 ? -1 : 1;
    this.level[v] = this.trailLim.length;
    this.reason[v] = reason;
    this.trail[this.trailLen++] = lit;
  }

  private cancelUntil(lvl: number): void {
    if (this.trailLim.length <= lvl) return;
    const stop = this.trailLim[lvl]!;
    for (let i = this.trailLen - 1; i >= stop; i--) {
      const v = this.trail[i]! >> 1;
      this.assign[v] = 0;
    }
    this.trailLen = stop;
    this.qhead = stop;
    this.trailLim.length = lvl;
    if (this.reqCursor > stop) this.reqCursor = stop;
    this.dirty = true;
  }

  /** Materialises the binary clause ¬x ∨ ¬y behind an at-most-one implication, for analysis. */
  private amoClause(implied: number, by: number): number {
    const idx = this.clauses.length;
    this.clauses.push([neg(implied), neg(by)]);
    this.tags.push(this.groupTags[this.group[implied]!]!);
    this.antecedents.push(null);
    this.prefs.push(null);
    return idx;
  }

  private reasonOf(v: number): number {
    const r = this.reason[v]!;
    if (r <= -2) {
      const idx = this.amoClause(v, -r - 2);
      this.reason[v] = idx; // reuse next time
      return idx;
    }
    return r;
  }

  /** Returns a conflicting clause index or -1. */
  private propagate(): number {
    while (this.qhead < this.trailLen) {
      const p = this.trail[this.qhead++]!;
      const pv = p >> 1;
      if ((p & 1) === 0) {
        const g = this.group[pv]!;
        if (g >= 0) {
          const members = this.groups[g]!;
          for (let i = 0; i < members.length; i++) {
            const y = members[i]!;
            if (y === pv) continue;
            const a = this.assign[y]!;
            if (a === 1) return this.amoClause(y, pv);
            if (a === 0) this.enqueue(neg(y), -pv - 2);
          }
        }
      }
      const falseLit = p ^ 1;
      const ws = this.watches[falseLit];
      if (ws === undefined) continue;
      let i = 0;
      let j = 0;
      const n = ws.length;
      while (i < n) {
        const ci = ws[i++]!;
        const lits = this.clauses[ci]!;
        if (lits[0] === falseLit) {
          lits[0] = lits[1]!;
          lits[1] = falseLit;
        }
        const first = lits[0]!;
        if (this.value(first) === 1) {
          ws[j++] = ci;
          continue;
        }
        let moved = false;
        for (let k = 2; k < lits.length; k++) {
          const l = lits[k]!;
          if (this.value(l) !== -1) {
            lits[1] = l;
            lits[k] = falseLit;
            this.watch(l, ci);
            moved = true;
            break;
          }
        }
        if (moved) continue;
        ws[j++] = ci;
        if (this.value(first) === -1) {
          while (i < n) ws[j++] = ws[i++]!;
          ws.length = j;
          return ci;
        }
        this.enqueue(first, ci);
      }
      if (j !== n) ws.length = j;
    }
    return -1;
  }

  /** 1UIP analysis; returns [learnt literals (asserting first), antecedents, backjump level]. */
  private analyze(confl: number): [number[], number[], number] {
    const learnt: number[] = [0];
    const ante: number[] = [];
    const cur = this.trailLim.length;
    let pathC = 0;
    let p = -1;
    let idx = this.trailLen - 1;
    for (;;) {
      ante.push(confl);
      const lits = this.clauses[confl]!;
      for (let k = 0; k < lits.length; k++) {
        const l = lits[k]!;
        const v = l >> 1;
        if (p >= 0 && v === p >> 1) continue;
        if (this.seen[v] || this.level[v] === 0) continue;
        this.seen[v] = 1;
        if (this.level[v]! >= cur) pathC++;
        else learnt.push(l);
      }
      while (!this.seen[this.trail[idx]! >> 1]) idx--;
      p = this.trail[idx]!;
      idx--;
      const pv = p >> 1;
      this.seen[pv] = 0;
      pathC--;
      if (pathC === 0) break;
      confl = this.reasonOf(pv);
    }
    learnt[0] = p ^ 1;
    let bt = 0;
    let btAt = 1;
    for (let k = 1; k < learnt.length; k++) {
      const v = learnt[k]! >> 1;
      this.seen[v] = 0;
      if (this.level[v]! > bt) {
        bt = this.level[v]!;
        btAt = k;
      }
    }
    if (learnt.length > 1) {
      const t = learnt[1]!;
      learnt[1] = learnt[btAt]!;
      learnt[btAt] = t;
    }
    return [learnt, ante, bt];
  }

  private satisfied(ci: number): boolean {
    const lits = this.clauses[ci]!;
    for (let k = 0; k < lits.length; k++) if (this.value(lits[k]!) === 1) return true;
    return false;
  }

  private firstOpen(ci: number): number {
    const pref = this.prefs[ci]!;
    for (let k = 0; k < pref.length; k++) {
      const v = pref[k]!;
      if (this.assign[v] === 0) return pos(v);
    }
    return -1;
  }

  /**
   * Package-aware decision: the best candidate of the first open require clause; -1 when none is
   * open, and then every unassigned var can be false at once (see solve()).
   */
  private pickDecision(): number {
    if (this.dirty) {
      this.rootCursor = 0;
      this.reqCursor = 0;
      this.dirty = false;
    }
    while (this.rootCursor < this.roots.length) {
      const ci = this.roots[this.rootCursor]!;
      if (!this.satisfied(ci)) {
        const l = this.firstOpen(ci);
        if (l >= 0) return l;
      }
      this.rootCursor++;
    }
    while (this.reqCursor < this.trailLen) {
      const lit = this.trail[this.reqCursor]!;
      if ((lit & 1) === 0) {
        const own = this.owned[lit >> 1] ?? NONE;
        for (let k = 0; k < own.length; k++) {
          const ci = own[k]!;
          if (!this.satisfied(ci)) {
            const l = this.firstOpen(ci);
            if (l >= 0) return l;
          }
        }
      }
      this.reqCursor++;
    }
    return -1;
  }

  /**
   * Solves under `assumptions`. false with `rootUnsat` set means the clauses themselves are UNSAT;
   * false otherwise means UNSAT under the assumptions only. With `dropFailed`, an assumption found
   * false is dropped together with the others its failure rests on (see droppedCores), and the
   * search goes on with the rest, so one call reports every independent failure.
   */
  solve(assumptions: readonly number[] = [], dropFailed = false): boolean {
    this.failedCore = null;
    this.dropped = [];
    let active = assumptions;
    if (!this.atRoot()) return false;
    for (;;) {
      const confl = this.propagate();
      if (confl >= 0) {
        this.conflicts++;
        if (this.trailLim.length === 0) {
          this.rootConflict = confl;
          return false;
        }
        const [learnt, ante, bt] = this.analyze(confl);
        this.cancelUntil(bt);
        const idx = this.clauses.length;
        this.clauses.push(learnt);
        this.tags.push(-1);
        this.antecedents.push(ante);
        this.prefs.push(null);
        if (learnt.length > 1) {
          this.watch(learnt[0]!, idx);
          this.watch(learnt[1]!, idx);
        }
        this.enqueue(learnt[0]!, idx);
        continue;
      }
      const dl = this.trailLim.length;
      if (dl < active.length) {
        const a = active[dl]!;
        const val = this.value(a);
        if (val === -1) {
          const core = this.traceFailed(a);
          if (!dropFailed) {
            this.failedCore = core;
            this.cancelUntil(0);
            return false;
          }
          // Drop the assumptions this failure rests on and carry on from the first of them.
          this.dropped.push(core);
          const gone = new Set(core.assumptions);
          const first = active.findIndex((x) => gone.has(x));
          this.cancelUntil(first);
          active = active.filter((x) => !gone.has(x));
          continue;
        }
        this.trailLim.push(this.trailLen);
        if (val === 0) this.enqueue(a, NO_REASON);
        continue;
      }
      const d = this.pickDecision();
      if (d < 0) {
        // Every require clause is satisfied; all other clauses (conflicts, at-most-one, units) and the
        // learned ones they imply hold with the unassigned vars false: "not installed" for the rest.
        const m = this.assign.slice(0, this.nVars);
        for (let v = 0; v < m.length; v++) if (m[v] === 0) m[v] = -1;
        this.modelArr = m;
        this.cancelUntil(0);
        return true;
      }
      this.decisions++;
      this.trailLim.push(this.trailLen);
      this.enqueue(d, NO_REASON);
    }
  }

  private failedCore: { tags: number[]; assumptions: number[] } | null = null;

  /**
   * Why assumption `a` is false: the tags of the clauses in its implication chain (expanding learned
   * clauses into their sources) and the assumptions the chain rests on (including `a`).
   */
  private traceFailed(a: number): { tags: number[]; assumptions: number[] } {
    const tags = new Set<number>();
    const assumptions = new Set<number>([a]);
    const seenVar = new Uint8Array(this.nVars);
    const seenClause = new Set<number>();
    const vars = [a >> 1];
    const learned: number[] = [];
    const visitClause = (ci: number, viaProof: boolean): void => {
      if (seenClause.has(ci)) return;
      seenClause.add(ci);
      const tag = this.tags[ci]!;
      if (tag >= 0) tags.add(tag);
      const ante = this.antecedents[ci];
      if (ante) for (const x of ante) learned.push(x);
      const lits = this.clauses[ci]!;
      for (let k = 0; k < lits.length; k++) {
        const u = lits[k]! >> 1;
        // Inside a learned clause's proof only the level-0 literals it dropped still need reasons.
        if (!viaProof || (this.assign[u] !== 0 && this.level[u] === 0)) vars.push(u);
      }
    };
    while (vars.length > 0 || learned.length > 0) {
      if (vars.length === 0) {
        visitClause(learned.pop()!, true);
        continue;
      }
      const v = vars.pop()!;
      if (seenVar[v] || this.assign[v] === 0) continue;
      seenVar[v] = 1;
      if (this.reason[v] === NO_REASON) {
        // Every decision so far is an assumption (failure is detected while placing them).
        assumptions.add(this.assign[v] === 1 ? pos(v) : neg(v));
        continue;
      }
      visitClause(this.reasonOf(v), false);
    }
    return { tags: [...tags].sort((x, y) => x - y), assumptions: [...assumptions] };
  }

  private dropped: { tags: number[]; assumptions: number[] }[] = [];

  /** After solve(…, dropFailed): each failure met (its core and the assumptions it dropped). */
  get droppedCores(): readonly { tags: number[]; assumptions: number[] }[] {
    return this.dropped;
  }

  /** After solve() returned false under assumptions: the core and the assumptions involved. */
  get assumptionCore(): { tags: number[]; assumptions: number[] } | null {
    return this.failedCore;
  }

  /** Tag of pins and query clauses, which are not part of the problem (sealProblem). */
  private auxTag = -2;
  private occ: (number[] | undefined)[] | null = null;

  /**
   * From now on, clauses tagged `auxTag` are pins or query clauses, not part of the problem that
   * trySwap checks; every other clause (learned ones aside) is, including ones added later.
   */
  sealProblem(auxTag: number): void {
    this.auxTag = auxTag;
    this.occ = null;
  }

  private isProblem(ci: number): boolean {
    const t = this.tags[ci]!;
    return t !== -1 && t !== this.auxTag; // -1: learned, implied by the others
  }

  /** Problem clauses by literal (built on first use, kept up to date after, for model swaps). */
  private occurrences(): (number[] | undefined)[] {
    if (this.occ) return this.occ;
    const occ: (number[] | undefined)[] = [];
    this.occ = occ;
    for (let ci = 0; ci < this.clauses.length; ci++) if (this.isProblem(ci)) this.occurs(ci);
    return occ;
  }

  private occurs(ci: number): void {
    const occ = this.occ!;
    const lits = this.clauses[ci]!;
    for (let k = 0; k < lits.length; k++) {
      const l = occ[lits[k]!];
      if (l) l.push(ci);
      else occ[lits[k]!] = [ci];
    }
  }

  /**
   * Changes the last model so that `to` is true instead of `from` when that keeps every problem
   * clause and at-most-one group satisfied; returns whether it did. Only problem clauses are checked
   * (see sealProblem): pins and query clauses added later are the caller's business.
   */
  trySwap(from: number, to: number): boolean {
    const m = this.modelArr;
    if (!m || m[from] !== 1 || m[to] === 1) return false;
    const truth = (l: number): boolean => {
      const v = l >> 1;
      const b = v === from ? false : v === to ? true : m[v] === 1;
      return (l & 1) === 1 ? !b : b;
    };
    const occ = this.occurrences();
    for (const lit of [neg(to), pos(from)]) {
      const list = occ[lit] ?? NONE;
      for (let i = 0; i < list.length; i++) {
        const lits = this.clauses[list[i]!]!;
        let ok = false;
        for (let k = 0; k < lits.length && !ok; k++) ok = truth(lits[k]!);
        if (!ok) return false;
      }
    }
    const g = this.group[to]!;
    if (g >= 0)
      for (const y of this.groups[g]!) if (y !== to && y !== from && m[y] === 1) return false;
    m[from] = -1;
    m[to] = 1;
    return true;
  }

  /** Back to level 0 with the level-0 facts propagated; false when they conflict (root UNSAT). */
  private atRoot(): boolean {
    if (this.rootConflict >= 0) return false;
    this.cancelUntil(0);
    const c0 = this.propagate();
    if (c0 >= 0) this.rootConflict = c0;
    return c0 < 0;
  }

  /** Whether `lit` survives unit propagation on top of the level-0 facts (failed-literal probe). */
  probe(lit: number): boolean {
    if (!this.atRoot()) return false;
    const val = this.value(lit);
    if (val !== 0) return val === 1;
    this.trailLim.push(this.trailLen);
    this.enqueue(lit, NO_REASON);
    const c = this.propagate();
    this.cancelUntil(0);
    return c < 0;
  }

  get rootUnsat(): boolean {
    return this.rootConflict >= 0;
  }

  /** The last model, to put back with restoreModel (a caller may reject a model it found). */
  saveModel(): Int8Array | null {
    return this.modelArr;
  }

  restoreModel(m: Int8Array | null): void {
    this.modelArr = m;
  }

  /** Truth of `v` in the last model found (kept across later failed solves). */
  modelValue(v: number): boolean {
    return this.modelArr !== null && this.modelArr[v] === 1;
  }

  /**
   * Tags of the original clauses (and at-most-one groups) that together are UNSAT: the final conflict,
   * the level-0 reasons of its literals, and the sources of every learned clause involved.
   */
  unsatCore(): number[] {
    if (this.rootConflict < 0) return [];
    const seenClause = new Set<number>();
    const stack = [this.rootConflict];
    const tags = new Set<number>();
    while (stack.length > 0) {
      const ci = stack.pop()!;
      if (seenClause.has(ci)) continue;
      seenClause.add(ci);
      const tag = this.tags[ci]!;
      if (tag >= 0) tags.add(tag);
      const ante = this.antecedents[ci];
      if (ante) for (const a of ante) stack.push(a);
      const lits = this.clauses[ci]!;
      for (let k = 0; k < lits.length; k++) {
        const v = lits[k]! >> 1;
        if (this.assign[v] !== 0 && this.level[v] === 0 && this.reason[v] !== NO_REASON) {
          const r = this.reasonOf(v);
          if (r !== ci) stack.push(r);
        }
      }
    }
    return [...tags].sort((a, b) => a - b);
  }
}
