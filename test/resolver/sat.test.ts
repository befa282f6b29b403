/** The SAT engine's incremental pieces the resolver relies on: failed assumptions, swaps, probes. */
import { describe, expect, it } from 'vitest';
import { neg, pos, SatSolver } from '../../src/resolver/sat.js';

function vars(sat: SatSolver, n: number): number[] {
  return Array.from({ length: n }, () => sat.newVar());
}

describe('SatSolver', () => {
  it('without dropFailed, a false assumption fails the solve with its core', () => {
    const sat = new SatSolver();
    const [a, b, x] = vars(sat, 3) as [number, number, number];
    sat.addClause([neg(a), pos(x)], 1);
    sat.addClause([neg(b), neg(x)], 2);
    expect(sat.solve([pos(a), pos(b)])).toBe(false);
    expect(sat.rootUnsat).toBe(false);
    expect(sat.assumptionCore?.tags).toEqual([1, 2]);
    expect([...sat.assumptionCore!.assumptions].sort()).toEqual([pos(a), pos(b)].sort());
    // The clauses alone are fine.
    expect(sat.solve([pos(a)])).toBe(true);
  });

  it('with dropFailed, every independent failure is reported and the rest is solved', () => {
    const sat = new SatSolver();
    const [a1, b1, x1, a2, b2, x2, c] = vars(sat, 7) as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    sat.addClause([neg(a1), pos(x1)], 1);
    sat.addClause([neg(b1), neg(x1)], 2);
    sat.addClause([neg(a2), pos(x2)], 3);
    sat.addClause([neg(b2), neg(x2)], 4);
    expect(sat.solve([pos(a1), pos(a2), pos(c), pos(b1), pos(b2)], true)).toBe(true);
    const cores = sat.droppedCores.map((d) => d.tags);
    expect(cores).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(sat.modelValue(c)).toBe(true);
    expect(sat.modelValue(a1) && sat.modelValue(b1)).toBe(false);
  });

  it('a root conflict is not blamed on assumptions', () => {
    const sat = new SatSolver();
    const [a, x] = vars(sat, 2) as [number, number];
    sat.addClause([pos(x)], 1);
    sat.addClause([neg(x)], 2);
    expect(sat.solve([pos(a)], true)).toBe(false);
    expect(sat.rootUnsat).toBe(true);
    expect(sat.unsatCore()).toEqual([1, 2]);
  });

  it('models leave packages no requirement needs uninstalled', () => {
    const sat = new SatSolver();
    const [root, dep1, dep2, other] = vars(sat, 4) as [number, number, number, number];
    sat.addRequire(null, [root], 1);
    sat.addRequire(root, [dep2, dep1], 2);
    expect(sat.solve()).toBe(true);
    expect([root, dep1, dep2, other].map((v) => sat.modelValue(v))).toEqual([
      true,
      false,
      true,
      false,
    ]);
  });

  it('trySwap changes the model only when every problem clause still holds', () => {
    const sat = new SatSolver();
    const [v1, v2, y, z] = vars(sat, 4) as [number, number, number, number];
    sat.addAtMostOne([v1, v2], 9);
    sat.addRequire(null, [v1, v2], 1); // the family must be installed
    sat.addRequire(null, [y], 2);
    sat.addClause([neg(v2), neg(y)], 3); // v2 conflicts with y
    sat.addClause([neg(v1), pos(z)], 4); // v1 needs z
    sat.sealProblem(7);
    expect(sat.solve()).toBe(true);
    expect(sat.modelValue(v1)).toBe(true);
    expect(sat.trySwap(v1, v2)).toBe(false); // y is installed
    expect(sat.modelValue(v1)).toBe(true);

    const sat2 = new SatSolver();
    const [w1, w2] = vars(sat2, 2) as [number, number];
    sat2.addAtMostOne([w1, w2], 9);
    sat2.addRequire(null, [w2, w1], 1);
    sat2.sealProblem(7);
    expect(sat2.solve()).toBe(true);
    expect(sat2.modelValue(w2)).toBe(true);
    sat2.addClause([neg(w1)], 7); // a pin: the caller's business, not checked
    expect(sat2.trySwap(w2, w1)).toBe(true);
    expect([sat2.modelValue(w1), sat2.modelValue(w2)]).toEqual([true, false]);
  });

  it('trySwap checks problem clauses added after sealing (lazily expanded packages)', () => {
    const sat = new SatSolver();
    const [a1, a2, b] = vars(sat, 3) as [number, number, number];
    sat.addAtMostOne([a1, a2], 9);
    sat.addRequire(null, [a2, a1], 1);
    sat.sealProblem(7);
    expect(sat.solve()).toBe(true);
    expect(sat.modelValue(a2)).toBe(true);
    expect(sat.trySwap(a2, a1)).toBe(true); // builds the occurrence lists
    expect(sat.trySwap(a1, a2)).toBe(true);
    sat.addRequire(a1, [b], 4); // a1 needs b, which the model lacks
    expect(sat.trySwap(a2, a1)).toBe(false);
    expect(sat.modelValue(a2)).toBe(true);
  });

  it('probe refutes a literal that unit propagation contradicts, and leaves no trace', () => {
    const sat = new SatSolver();
    const [p, q, r] = vars(sat, 3) as [number, number, number];
    sat.addClause([neg(p), pos(q)], 1);
    sat.addClause([neg(q)], 2);
    expect(sat.probe(pos(p))).toBe(false);
    expect(sat.probe(pos(r))).toBe(true);
    expect(sat.solve([pos(r)])).toBe(true);
    expect(sat.modelValue(p)).toBe(false);
  });
});
