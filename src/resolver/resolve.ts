/**
 * The resolver's operations: install, uninstall, upgrade, reinstall. Pure: same inputs, same Plan.
 *
 * install / upgrade encode the reachable problem (encode.ts), find a first model with package-aware
 * decisions, then make version preference hold by construction: families are visited in priority
 * order (requested, installed, then dependencies breadth-first) and each is pinned to the most
 * preferred version that is still jointly satisfiable with the pins before it (one incremental SAT
 * query per improvement). No package in the result can be swapped alone for a more preferred version.
 */
import {
  familyKey,
  packageId,
  type InstalledSpec,
  type PackageSpec,
  type Universe,
} from '../package/package.js';
import { describeSelector, type Selector } from '../package/version.js';
import { Encoding } from './encode.js';
import { explainCore } from './explain.js';
import { satisfiesDep } from '../package/match.js';
import { dependencyOrder, orderOfSorted, sortWithIds, type Neighbours } from './order.js';
import { failedPlan, type Plan, type PlanStep, type PlanProblem } from './plan.js';
import { neg, pos } from './sat.js';

/** A requested package: `category/name` plus a selector (a PackageRef from src/package/ref.ts fits). */
export interface Target {
  category: string;
  name: string;
  version: string;
  selector: Selector;
}

export type Request =
  | { op: 'install'; targets: Target[] }
  | { op: 'upgrade'; targets?: Target[] }
  | { op: 'reinstall'; targets: Target[] }
  | { op: 'uninstall'; targets: Target[]; force?: boolean; full?: boolean };

const byId = (a: PackageSpec, b: PackageSpec): number => {
  const x = packageId(a);
  const y = packageId(b);
  return x < y ? -1 : x > y ? 1 : 0;
};

function targetText(t: Target): string {
  const fam = familyKey(t);
  return t.selector.any ? fam : `${fam} ${describeSelector(t.selector)}`;
}

/** Computes the plan for `request` against `universe` and the installed state. */
export function resolve(
  universe: Universe,
  installed: readonly InstalledSpec[],
  request: Request,
): Plan {
  const inst = [...installed].sort((a, b) => byId(a.spec, b.spec));
  switch (request.op) {
    case 'install':
      return solveJobs(universe, inst, request.targets, 'install');
    case 'upgrade':
      return solveJobs(universe, inst, request.targets ?? [], 'upgrade');
    case 'reinstall':
      return reinstall(inst, request.targets);
    case 'uninstall':
      return uninstall(inst, request.targets, request.force ?? false, request.full ?? false);
  }
}

function installedOf(inst: readonly InstalledSpec[], t: Target): InstalledSpec | undefined {
  const fam = familyKey(t);
  return inst.find((i) => familyKey(i.spec) === fam);
}

function notInstalled(t: Target): PlanProblem {
  return {
    code: 'E_NOT_FOUND',
    message: `${targetText(t)} is not installed`,
    package: familyKey(t),
  };
}

function solveJobs(
  universe: Universe,
  inst: readonly InstalledSpec[],
  targetsIn: Target[],
  op: 'install' | 'upgrade',
): Plan {
  const installedSpecs = inst.map((i) => i.spec);
  // Sorted and de-duplicated so the plan does not depend on argument order.
  const targets = [...new Map(targetsIn.map((t) => [`${familyKey(t)} ${t.version}`, t])).values()];
  targets.sort((a, b) =>
    familyKey(a) + ' ' + a.version < familyKey(b) + ' ' + b.version ? -1 : 1,
  );

  const problems: PlanProblem[] = [];
  const probe = new Encoding(universe, installedSpecs);
  for (const t of targets) {
    const fam = familyKey(t);
    if (op === 'upgrade') {
      if (!installedOf(inst, t)) problems.push(notInstalled(t));
      continue;
    }
    if (!probe.known(fam)) {
      problems.push({
        code: 'E_NOT_FOUND',
        message: `${fam}: no such package (nothing has this name or provides it)`,
        package: fam,
      });
    } else if (probe.candidates(t, 0).length === 0) {
      const vers = probe.familySpecs(fam).map((s) => s.version);
      problems.push({
        code: 'E_UNSAT',
        package: fam,
        message:
          `no version of ${fam} matches ${describeSelector(t.selector)}` +
          (vers.length ? ` (available: ${vers.slice(0, 8).join(', ')})` : ''),
      });
    }
  }
  const bad = new Set(problems.map((p) => p.package));
  const remaining = targets.filter((t) => !bad.has(familyKey(t)));
  const attempt = solveEncoded(universe, inst, remaining, op);
  problems.push(...attempt.problems);
  if (problems.length > 0 || !attempt.plan) return failedPlan(problems, installedSpecs);
  return attempt.plan;
}

function solveEncoded(
  universe: Universe,
  inst: readonly InstalledSpec[],
  targets: Target[],
  op: 'install' | 'upgrade',
): { plan?: Plan; problems: PlanProblem[] } {
  const enc = new Encoding(
    universe,
    inst.map((i) => i.spec),
  );
  const targetFams = new Set(targets.map(familyKey));
  const upgradeAll = op === 'upgrade' && targets.length === 0;
  /** Family → vars in preference order (rank 0 best). */
  const pref = new Map<string, number[]>();
  /** Each install job hangs off an activation literal, assumed true, so a failing one can be dropped. */
  const jobActs: number[] = [];

  for (const t of targets) {
    if (op !== 'install') continue;
    const fam = familyKey(t);
    const cands = enc.candidates(t, 0);
    const i = installedOf(inst, t);
    const iv = i ? enc.varOfId(packageId(i.spec)) : undefined;
    // Keep the installed version when it already satisfies the request (install never upgrades).
    const ordered =
      iv !== undefined && cands.includes(iv) ? [iv, ...cands.filter((c) => c !== iv)] : cands;
    jobActs.push(enc.job('install', fam, t.selector, ordered));
    pref.set(fam, [...ordered.filter((c) => familyKey(enc.specs[c]!) === fam)]);
  }
  for (const i of inst) {
    const fam = familyKey(i.spec);
    const vars = enc.family(fam, 0);
    const iv = enc.varOfId(packageId(i.spec))!;
    if (op === 'install' && targetFams.has(fam)) continue; // the job already covers it
    const upgrading = upgradeAll || (op === 'upgrade' && targetFams.has(fam));
    if (upgrading) {
      // Newest first, and a package now provided by another may be replaced by its provider (luet).
      const cands = enc.candidates(
        { category: i.spec.category, name: i.spec.name, selector: ANY_SEL },
        0,
      );
      enc.keep(fam, cands, iv);
      pref.set(fam, vars);
    } else {
      const ordered = [iv, ...vars.filter((v) => v !== iv)];
      enc.keep(fam, ordered, iv);
      pref.set(fam, ordered);
    }
  }

  const sat = enc.sat;
  // All offenders in one search: each failing group of jobs is explained and dropped, the rest go on.
  const problems: PlanProblem[] = [];
  const active = jobActs.map(pos);
  if (!enc.solve(active, true)) {
    problems.push(explainCore(enc, sat.unsatCore()).problem);
    return { problems };
  }
  for (const failed of enc.dropped) problems.push(explainCore(enc, failed.tags).problem);
  if (problems.length > 0) return { problems };
  sat.sealProblem(enc.optimiseTag);
  for (const a of active) sat.addClause([a], enc.optimiseTag);

  // Lexicographic preference: requested families, installed families, then the rest in BFS order.
  const order: string[] = [];
  const seen = new Set<string>();
  const push = (f: string): void => {
    if (!seen.has(f)) {
      seen.add(f);
      order.push(f);
    }
  };
  for (const t of targets) push(familyKey(t));
  for (const i of inst) push(familyKey(i.spec));
  // Families met later (expanding a package creates its dependencies' families) join at the end.
  let met = 0;
  const sync = (): void => {
    while (met < enc.familyOrder.length) push(enc.familyOrder[met++]!);
  };
  sync();
  // A package is expanded before it is swapped in or probed, so its requires are checked too.
  const trySwap = (from: number, to: number): boolean => {
    enc.expand(to);
    return sat.trySwap(from, to);
  };

  // Each coordinated improvement costs one SAT query over the whole problem. Requested and installed
  // families always get them; dependencies share a budget sized so that huge closures stay fast
  // (a count, not a clock, so plans stay deterministic). Past it they only get local moves.
  const priority = new Set(order.slice(0, targets.length + inst.length));
  let budget = Math.max(MIN_QUERIES, Math.floor(QUERY_WORK / Math.max(1, enc.chosen().length)));
  const fixed = new Set<string>();
  for (let pass = 0; pass < order.length + 1; pass++) {
    let progressed = false;
    for (const fam of order) {
      if (fixed.has(fam)) continue;
      const all = enc.familyVars.get(fam);
      if (!all) continue; // a purely virtual name: only providers exist, ranked as their own families
      const ranked = pref.get(fam) ?? all;
      let chosen = ranked.findIndex((v) => sat.modelValue(v));
      if (chosen < 0) {
        // Not installed in this model. Versions outside `ranked` (e.g. not matching) never apply.
        if (!all.some((v) => sat.modelValue(v))) continue;
        chosen = ranked.length;
      }
      while (chosen > 0) {
        // Cheap first: swap this package alone in the model; then drop better candidates that unit
        // propagation already refutes under the pins; only what is left needs a SAT query.
        const from = chosen < ranked.length ? ranked[chosen]! : all.find((v) => sat.modelValue(v))!;
        const swapped = ranked.slice(0, chosen).findIndex((c) => trySwap(from, c));
        if (swapped >= 0) {
          chosen = swapped;
          continue;
        }
        const open = ranked.slice(0, chosen).filter((c) => {
          enc.expand(c);
          if (sat.probe(pos(c))) return true;
          enc.fix(c, false); // implied by the clauses and pins, so it stays true
          return false;
        });
        if (open.length === 0) break;
        if (!priority.has(fam) && budget-- <= 0) break;
        const act = sat.newVar();
        sat.addRequire(act, open, enc.optimiseTag);
        const ok = enc.solve([pos(act)]);
        sat.addClause([neg(act)], enc.optimiseTag);
        if (!ok) break;
        chosen = ranked.findIndex((v) => sat.modelValue(v));
      }
      if (chosen < ranked.length) enc.fix(ranked[chosen]!, true);
      fixed.add(fam);
      progressed = true;
      sync();
    }
    if (!progressed) break;
  }
  // The pins above are consistent with the last model, which is therefore the answer. When the
  // budget ran out, a last sweep makes sure no package can be swapped alone for a better version.
  if (budget < 0) {
    for (let changed = true; changed;) {
      changed = false;
      for (const fam of order) {
        const all = enc.familyVars.get(fam);
        if (!all) continue;
        const ranked = pref.get(fam) ?? all;
        const from = all.find((v) => sat.modelValue(v));
        if (from === undefined) continue;
        const at = ranked.indexOf(from);
        const better = at < 0 ? ranked : ranked.slice(0, at);
        if (better.some((c) => trySwap(from, c))) changed = true;
      }
    }
  }
  const chosen = enc.chosen();
  const plan = buildPlan(
    chosen.map((v) => enc.specs[v]!),
    inst,
    new Set(),
    targets.map(familyKey),
    (sorted) => {
      // The install order's edges straight from the encoding: each chosen package's requirement
      // candidates that are chosen too (no selector matching again).
      const varOf = new Map(chosen.map((v) => [enc.specs[v]!, v]));
      const at = new Int32Array(enc.specs.length).fill(-1);
      const vars = sorted.map((s) => varOf.get(s)!);
      vars.forEach((v, i) => (at[v] = i));
      return (i, add) => enc.eachRequireCandidate(vars[i]!, (c) => at[c]! >= 0 && add(at[c]!));
    },
  );
  return { plan, problems: [] };
}

/** Dependency improvement queries allowed: QUERY_WORK / installed packages, at least MIN_QUERIES. */
const QUERY_WORK = 1_000_000;
const MIN_QUERIES = 64;

const ANY_SEL: Selector = { raw: '', any: true, constraints: [] };

/** Diff of installed → final, ordered for the installer. */
export function buildPlan(
  finalSpecsIn: PackageSpec[],
  inst: readonly InstalledSpec[],
  reinstallIds: ReadonlySet<string> = new Set(),
  requested: readonly string[] = [],
  /** What satisfies each final package's requirements, when the caller knows (see order.ts). */
  neighbours?: (sorted: readonly PackageSpec[]) => Neighbours,
): Plan {
  const sorted = sortWithIds(finalSpecsIn);
  const finalSpecs = sorted.specs;
  const finalIds = new Set(sorted.ids);
  const instIds = new Set(inst.map((i) => packageId(i.spec)));
  const instByFam = new Map(inst.map((i) => [familyKey(i.spec), i.spec]));

  const installIdx = orderOfSorted(finalSpecs, requested, neighbours?.(finalSpecs)).filter(
    (i) => !instIds.has(sorted.ids[i]!) || reinstallIds.has(sorted.ids[i]!),
  );
  const removeOrder = dependencyOrder(inst.map((i) => i.spec))
    .reverse()
    .filter((s) => !finalIds.has(packageId(s)));

  const steps: PlanStep[] = [];
  for (const i of installIdx) {
    const s = finalSpecs[i]!;
    const id = sorted.ids[i]!;
    const old = instByFam.size > 0 ? instByFam.get(familyKey(s)) : undefined;
    if (reinstallIds.has(id)) steps.push({ action: 'reinstall', spec: s });
    else if (old && !finalIds.has(packageId(old)))
      steps.push({ action: 'upgrade', spec: s, from: old });
    else steps.push({ action: 'install', spec: s });
  }
  const finalFams = new Set(removeOrder.length > 0 ? finalSpecs.map(familyKey) : []);
  for (const s of removeOrder) {
    if (!finalFams.has(familyKey(s))) steps.push({ action: 'remove', spec: s });
  }
  return {
    satisfiable: true,
    install: installIdx.map((i) => sorted.ids[i]!),
    remove: removeOrder.map(packageId),
    final: sorted.ids,
    problems: [],
    steps,
    finalSpecs,
  };
}

function reinstall(inst: readonly InstalledSpec[], targets: Target[]): Plan {
  const problems: PlanProblem[] = [];
  const ids = new Set<string>();
  for (const t of targets) {
    const i = installedOf(inst, t);
    if (!i) problems.push(notInstalled(t));
    else ids.add(packageId(i.spec));
  }
  if (problems.length > 0)
    return failedPlan(
      problems,
      inst.map((i) => i.spec),
    );
  return buildPlan(
    inst.map((i) => i.spec),
    inst,
    ids,
  );
}

/**
 * Uninstall: refuse while a remaining package requires a target and nothing else remaining satisfies
 * that requirement (unless force). `full` also removes the targets' dependencies (reason=dependency)
 * that nothing remaining needs; packages installed explicitly are never removed implicitly.
 */
function uninstall(
  inst: readonly InstalledSpec[],
  targets: Target[],
  force: boolean,
  full: boolean,
): Plan {
  const specs = inst.map((i) => i.spec);
  const problems: PlanProblem[] = [];
  const remove = new Set<string>();
  for (const t of targets) {
    const i = installedOf(inst, t);
    if (!i) problems.push(notInstalled(t));
    else remove.add(packageId(i.spec));
  }
  if (problems.length > 0) return failedPlan(problems, specs);

  if (full) {
    // Candidates: the targets' dependency closure inside the installed set, reason=dependency only.
    const byId = new Map(specs.map((s) => [packageId(s), s]));
    const reasonOf = new Map(inst.map((i) => [packageId(i.spec), i.reason]));
    const depsOf = (s: PackageSpec): PackageSpec[] =>
      s.requires.flatMap((d) => specs.filter((o) => o !== s && satisfiesDep(o, d)));
    const closure = new Set<string>();
    const stack = [...remove];
    while (stack.length > 0) {
      const id = stack.pop()!;
      for (const d of depsOf(byId.get(id)!)) {
        const did = packageId(d);
        if (closure.has(did) || remove.has(did) || reasonOf.get(did) !== 'dependency') continue;
        closure.add(did);
        stack.push(did);
      }
    }
    // Keep whatever the remaining packages (outside the candidates) still reach.
    const keep = new Set<string>();
    const roots = specs.filter((s) => !remove.has(packageId(s)) && !closure.has(packageId(s)));
    const st = [...roots];
    while (st.length > 0) {
      const s = st.pop()!;
      for (const d of depsOf(s)) {
        const did = packageId(d);
        if (closure.has(did) && !keep.has(did)) {
          keep.add(did);
          st.push(d);
        }
      }
    }
    for (const id of closure) if (!keep.has(id)) remove.add(id);
  }

  const remaining = specs.filter((s) => !remove.has(packageId(s)));
  if (!force) {
    for (const s of remaining) {
      for (const d of s.requires) {
        const removedSat = specs.filter((o) => remove.has(packageId(o)) && satisfiesDep(o, d));
        if (removedSat.length === 0) continue;
        if (remaining.some((o) => o !== s && satisfiesDep(o, d))) continue;
        const where = d.source
          ? ` (${d.source.file}${d.source.line ? `:${d.source.line}` : ''})`
          : '';
        const sel = d.selector.any ? '' : ` ${describeSelector(d.selector)}`;
        problems.push({
          code: 'E_REQUIRED_BY',
          message: `${removedSat.map(packageId).join(', ')} is required by ${packageId(s)}, which requires ${familyKey(d)}${sel}${where}`,
        });
      }
    }
    if (problems.length > 0) {
      problems.push({
        code: 'E_REQUIRED_BY',
        message: 'uninstall them together, or use --force to leave their dependents broken',
      });
      return failedPlan(problems, specs);
    }
  }
  return buildPlan(remaining, inst);
}
