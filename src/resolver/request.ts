/**
 * Glue between user input and the resolver: requests from command-line refs, the installed state
 * `--assume-installed` describes, and the plan as people read it. Shared by `cpm plan` and
 * `cpm install|upgrade|reinstall|uninstall --dry-run`.
 */
import { CpmError, type ErrorCode } from '../errors.js';
import {
  createSpec,
  familyKey,
  packageId,
  type InstalledSpec,
  type Universe,
} from '../package/package.js';
import { parseRef } from '../package/ref.js';
import type { Plan } from './plan.js';
import type { Request, Target } from './resolve.js';

/** What a command asks of the resolver: install, upgrade, reinstall or uninstall. */
export type Operation = Request['op'];

export function makeRequest(
  op: string,
  refs: readonly string[],
  opts: { force?: boolean; full?: boolean } = {},
): Request {
  const targets: Target[] = refs.map((r) => parseRef(r));
  switch (op) {
    case 'install':
    case 'reinstall':
      if (targets.length === 0) throw new CpmError('E_USAGE', `${op} needs at least one package`);
      return { op, targets };
    case 'uninstall':
      if (targets.length === 0)
        throw new CpmError('E_USAGE', 'uninstall needs at least one package');
      return { op, targets, force: opts.force ?? false, full: opts.full ?? false };
    case 'upgrade':
      return { op, targets };
    default:
      throw new CpmError('E_USAGE', `unknown operation "${op}"`, {
        hint: 'use install, uninstall, upgrade or reinstall',
      });
  }
}

/**
 * The installed state from `category/name@version` ids: the universe's spec when it has that id
 * (with its requires and provides), else a bare spec with no relations. All are explicit.
 */
export function assumeInstalled(universe: Universe, ids: readonly string[]): InstalledSpec[] {
  const out = new Map<string, InstalledSpec>();
  for (const id of ids) {
    const ref = parseRef(id);
    if (ref.version === '' || !ref.selector.constraints.every((c) => c.op === '=')) {
      throw new CpmError('E_USAGE', `--assume-installed "${id}" needs an exact version`, {
        hint: 'write category/name@1.2.3',
      });
    }
    const fam = familyKey(ref);
    if (out.has(fam)) {
      throw new CpmError(
        'E_USAGE',
        `--assume-installed names ${fam} twice (one version per family)`,
      );
    }
    const spec =
      universe.versions(fam).find((s) => s.version === ref.version) ??
      createSpec({ category: ref.category, name: ref.name, version: ref.version });
    out.set(fam, { spec, reason: 'explicit' });
  }
  return [...out.values()];
}

/** The error code a failed plan maps to: unknown packages win over unsatisfiable requests. */
export function planErrorCode(plan: Plan): ErrorCode | null {
  if (plan.satisfiable) return null;
  if (plan.problems.some((p) => p.code === 'E_NOT_FOUND')) return 'E_NOT_FOUND';
  if (plan.problems.some((p) => p.code === 'E_REQUIRED_BY')) return 'E_REQUIRED_BY';
  return 'E_UNSAT';
}

/** The plan in plain text, one change per line. */
export function formatPlan(plan: Plan): string {
  const lines: string[] = [];
  if (!plan.satisfiable) {
    lines.push('cannot make a plan:');
    for (const p of plan.problems) {
      if (p.reasons && p.reasons.length > 0) {
        lines.push(`- cannot satisfy ${p.package ?? 'the request'}, because:`);
        for (const r of p.reasons) lines.push(`    ${r}`);
      } else {
        lines.push(`- ${p.message}`);
      }
    }
    return lines.join('\n') + '\n';
  }
  if (plan.steps.length === 0) return 'nothing to do\n';
  for (const s of plan.steps) {
    const id = packageId(s.spec);
    if (s.action === 'upgrade' && s.from)
      lines.push(`upgrade   ${packageId(s.from)} -> ${s.spec.version}`);
    else lines.push(`${s.action.padEnd(9)} ${id}`);
  }
  lines.push(
    `${plan.install.length} to install, ${plan.remove.length} to remove, ${plan.final.length} installed afterwards`,
  );
  return lines.join('\n') + '\n';
}
