/** The Plan: a plain value the resolver returns, the CLI prints and the installer executes. */
import type { ErrorCode } from '../errors.js';
import { packageId, type PackageSpec } from '../package/package.js';

export type StepAction = 'install' | 'remove' | 'upgrade' | 'reinstall';

/** One change to a root. `upgrade` replaces `from` (any other version of the family) by `spec`. */
export interface PlanStep {
  action: StepAction;
  spec: PackageSpec;
  from?: PackageSpec;
}

export interface PlanProblem {
  /** E_NOT_FOUND (unknown package), E_UNSAT (known but unsatisfiable), E_REQUIRED_BY (uninstall). */
  code: ErrorCode;
  message: string;
  /** The requested `category/name` this problem is about, when it is about one. */
  package?: string;
  /** The chain of reasons in plain words, outermost (your request) first. */
  reasons?: string[];
}

export interface Plan {
  satisfiable: boolean;
  /** Ids to install, dependencies first (cycles broken deterministically). Includes upgrade targets. */
  install: string[];
  /** Ids to remove, dependents first. Includes the old side of upgrades. */
  remove: string[];
  /** Sorted ids of everything installed afterwards. */
  final: string[];
  problems: PlanProblem[];
  /** The changes with their specs, installs in install order, then removals in removal order. */
  steps: PlanStep[];
  /** Specs of everything installed afterwards, sorted by id. */
  finalSpecs: PackageSpec[];
}

/** The documented JSON shape of `cpm plan --json`. */
export function planToJson(plan: Plan): {
  satisfiable: boolean;
  install: string[];
  remove: string[];
  final: string[];
  problems: PlanProblem[];
} {
  return {
    satisfiable: plan.satisfiable,
    install: plan.install,
    remove: plan.remove,
    final: plan.final,
    problems: plan.problems.map((p) => ({ ...p })),
  };
}

/** A plan that changes nothing and reports problems; `final` is the unchanged installed set. */
export function failedPlan(problems: PlanProblem[], installed: readonly PackageSpec[]): Plan {
  const sorted = [...installed].sort((a, b) => (packageId(a) < packageId(b) ? -1 : 1));
  return {
    satisfiable: false,
    install: [],
    remove: [],
    final: sorted.map(packageId),
    problems,
    steps: [],
    finalSpecs: sorted,
  };
}
