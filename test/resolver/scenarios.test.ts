import { describe, expect, it } from 'vitest';
import { planToJson, resolve, type Plan, type Request } from '../../src/resolver/index.js';
import { PackageUniverse } from '../../src/package/universe.js';
import type { InstalledSpec } from '../../src/package/package.js';
import { dep, makeSpec } from '../support/specs.js';
import { parseRef } from '../../src/package/ref.js';
import type { PackageSpec } from '../../src/package/package.js';
import { violations } from './check.js';

const u = (...specs: PackageSpec[]): PackageUniverse => new PackageUniverse(specs);
const inst = (universe: PackageUniverse, ...ids: string[]): InstalledSpec[] =>
  ids.map((id) => {
    const [key, version] = id.split('@') as [string, string];
    const spec = universe.versions(key).find((s) => s.version === version) ?? makeSpec(id);
    return { spec, reason: 'explicit' };
  });
const install = (...refs: string[]): Request => ({ op: 'install', targets: refs.map(parseRef) });

function ok(plan: Plan): Plan {
  expect(plan.problems).toEqual([]);
  expect(plan.satisfiable).toBe(true);
  expect(violations(plan.finalSpecs)).toEqual([]);
  return plan;
}

describe('selectors and versions', () => {
  const world = u(
    makeSpec('app/web@1.0', { requires: [dep('lib/ssl', '>=1.1')] }),
    makeSpec('app/web@1.5', { requires: [dep('lib/ssl', '>=1.1, <3~')] }),
    makeSpec('app/web@2.0', { requires: [dep('lib/ssl', '>=3')] }),
    makeSpec('lib/ssl@1.0'),
    makeSpec('lib/ssl@1.1'),
    makeSpec('lib/ssl@2.4'),
    makeSpec('lib/ssl@3.0', { requires: [dep('lib/zlib', '>=1.3')] }),
    makeSpec('lib/zlib@1.2'),
    makeSpec('lib/zlib@1.3'),
  );
  it('picks the newest version and pulls transitive deps, deps first', () => {
    const p = ok(resolve(world, [], install('app/web')));
    expect(p.install).toEqual(['lib/zlib@1.3', 'lib/ssl@3.0', 'app/web@2.0']);
    expect(p.final).toEqual(['app/web@2.0', 'lib/ssl@3.0', 'lib/zlib@1.3']);
  });
  it('honours a selector on the request and on requires', () => {
    const p = ok(resolve(world, [], install('app/web@<2')));
    expect(p.final).toEqual(['app/web@1.5', 'lib/ssl@2.4']);
  });
  it('exact version request', () => {
    expect(ok(resolve(world, [], install('app/web@1.0'))).final).toEqual([
      'app/web@1.0',
      'lib/ssl@3.0',
      'lib/zlib@1.3',
    ]);
  });
  it('falls back to an older version when the newest is blocked, and only then', () => {
    const w = u(
      makeSpec('a/app@2.0', { requires: [dep('a/lib')] }),
      makeSpec('a/lib@1.0'),
      makeSpec('a/lib@2.0', { conflicts: [dep('a/x')] }),
      makeSpec('a/x@1'),
    );
    expect(ok(resolve(w, [], install('a/app'))).final).toEqual(['a/app@2.0', 'a/lib@2.0']);
    expect(ok(resolve(w, inst(w, 'a/x@1'), install('a/app'))).final).toEqual([
      'a/app@2.0',
      'a/lib@1.0',
      'a/x@1',
    ]);
  });
});

describe('conflicts', () => {
  const w = u(
    makeSpec('net/dhcpcd@9', { conflicts: [dep('net/dhclient')] }),
    makeSpec('net/dhclient@4'),
    makeSpec('net/nm@1', { requires: [dep('net/dhclient')] }),
  );
  it('refuses to install a package conflicting with an installed one, explaining why', () => {
    const p = resolve(w, inst(w, 'net/dhclient@4'), install('net/dhcpcd'));
    expect(p.satisfiable).toBe(false);
    expect(p.problems[0]!.code).toBe('E_UNSAT');
    expect(p.problems[0]!.reasons).toEqual([
      'you asked to install net/dhcpcd, which only net/dhcpcd@9 can satisfy',
      'net/dhclient@4 is installed and stays installed (install does not remove packages; uninstall it first)',
      'net/dhcpcd@9 conflicts with net/dhclient, which net/dhclient@4 matches',
    ]);
    expect(p.final).toEqual(['net/dhclient@4']);
  });
  it('is symmetric: the conflict declared on the other side blocks too', () => {
    const p = resolve(w, inst(w, 'net/dhcpcd@9'), install('net/nm'));
    expect(p.satisfiable).toBe(false);
    expect(p.problems[0]!.reasons!.join('\n')).toContain(
      'net/dhcpcd@9 conflicts with net/dhclient',
    );
  });
});

describe('provides', () => {
  const w = u(
    makeSpec('sys/app@1', { requires: [dep('utils/yip', '>=0.9')] }),
    makeSpec('utils/yip@0.9'),
    makeSpec('utils/yip-ng@1.0', { provides: [dep('utils/yip', '1.0')] }),
    makeSpec('virt/logger@0', {}),
    makeSpec('log/rsyslog@8', { provides: [dep('virt/syslog')] }),
    makeSpec('log/busybox-syslog@1', { provides: [dep('virt/syslog')] }),
    makeSpec('sys/base@1', { requires: [dep('virt/syslog')] }),
  );
  it('prefers a provider over the real package (renames)', () => {
    expect(ok(resolve(w, [], install('sys/app'))).final).toEqual(['sys/app@1', 'utils/yip-ng@1.0']);
  });
  it('falls back to the real package when the provider cannot be installed', () => {
    const w2 = u(
      makeSpec('sys/app@1', { requires: [dep('utils/yip', '>=0.9')] }),
      makeSpec('utils/yip@0.9'),
      makeSpec('utils/yip-ng@1.0', {
        provides: [dep('utils/yip', '1.0')],
        conflicts: [dep('sys/blocker')],
      }),
      makeSpec('sys/blocker@1'),
    );
    expect(ok(resolve(w2, inst(w2, 'sys/blocker@1'), install('sys/app'))).final).toEqual([
      'sys/app@1',
      'sys/blocker@1',
      'utils/yip@0.9',
    ]);
  });
  it('a provided version outside the selector does not count', () => {
    const w3 = u(
      makeSpec('sys/app@1', { requires: [dep('utils/yip', '>=2')] }),
      makeSpec('utils/yip@2.0'),
      makeSpec('utils/yip-ng@1.0', { provides: [dep('utils/yip', '1.0')] }),
    );
    expect(ok(resolve(w3, [], install('sys/app'))).final).toEqual(['sys/app@1', 'utils/yip@2.0']);
  });
  it('a virtual with several providers picks one deterministically', () => {
    expect(ok(resolve(w, [], install('sys/base'))).final).toEqual([
      'log/busybox-syslog@1',
      'sys/base@1',
    ]);
  });
  it('upgrade replaces installed packages by the package that now provides them (luet)', () => {
    const w4 = u(makeSpec('x/b@1.0', { provides: [dep('x/a'), dep('x/c')] }));
    const installed = [
      { spec: makeSpec('x/a@1.1'), reason: 'explicit' as const },
      { spec: makeSpec('x/c@1.5'), reason: 'explicit' as const },
    ];
    const p = ok(resolve(w4, installed, { op: 'upgrade' }));
    expect(planToJson(p)).toEqual({
      satisfiable: true,
      install: ['x/b@1.0'],
      remove: ['x/c@1.5', 'x/a@1.1'],
      final: ['x/b@1.0'],
      problems: [],
    });
  });
});

describe('installed state: install vs upgrade', () => {
  const w = u(
    makeSpec('a/foo@1'),
    makeSpec('a/foo@2', { requires: [dep('a/bar', '>=2')] }),
    makeSpec('a/bar@1'),
    makeSpec('a/bar@2'),
    makeSpec('a/baz@1'),
    makeSpec('a/baz@3'),
    makeSpec('a/new@1', { requires: [dep('a/baz')] }),
  );
  const state = inst(w, 'a/foo@1', 'a/bar@1', 'a/baz@1');
  it('install does not upgrade the rest of the system', () => {
    const p = ok(resolve(w, state, install('a/new')));
    expect(p.install).toEqual(['a/new@1']);
    expect(p.remove).toEqual([]);
    expect(p.final).toEqual(['a/bar@1', 'a/baz@1', 'a/foo@1', 'a/new@1']);
  });
  it('install of an installed package is a no-op', () => {
    expect(ok(resolve(w, state, install('a/foo'))).steps).toEqual([]);
  });
  it('install foo@2 upgrades foo 1, and the dependency it forces', () => {
    const p = ok(resolve(w, state, install('a/foo@2')));
    expect(p.install).toEqual(['a/bar@2', 'a/foo@2']);
    expect(p.remove.sort()).toEqual(['a/bar@1', 'a/foo@1']);
    expect(p.steps.map((s) => [s.action, s.spec.version, s.from?.version])).toEqual([
      ['upgrade', '2', '1'],
      ['upgrade', '2', '1'],
    ]);
  });
  it('upgrade of everything goes to the newest jointly satisfiable versions', () => {
    expect(ok(resolve(w, state, { op: 'upgrade' })).final).toEqual([
      'a/bar@2',
      'a/baz@3',
      'a/foo@2',
    ]);
  });
  it('upgrade of given packages keeps the others unless forced', () => {
    expect(ok(resolve(w, state, { op: 'upgrade', targets: [parseRef('a/baz')] })).final).toEqual([
      'a/bar@1',
      'a/baz@3',
      'a/foo@1',
    ]);
    expect(ok(resolve(w, state, { op: 'upgrade', targets: [parseRef('a/foo')] })).final).toEqual([
      'a/bar@2',
      'a/baz@1',
      'a/foo@2',
    ]);
  });
  it('upgrade keeps a package whose repository vanished', () => {
    const gone = [{ spec: makeSpec('z/old@1'), reason: 'explicit' as const }];
    expect(ok(resolve(w, gone, { op: 'upgrade' })).final).toEqual(['z/old@1']);
  });
  it('reinstall re-installs in place; not installed is an error', () => {
    const p = ok(resolve(w, state, { op: 'reinstall', targets: [parseRef('a/bar')] }));
    expect(p.steps.map((s) => `${s.action} ${s.spec.name}`)).toEqual(['reinstall bar']);
    const bad = resolve(w, state, { op: 'reinstall', targets: [parseRef('a/new')] });
    expect(bad.problems[0]!.code).toBe('E_NOT_FOUND');
  });
});

describe('uninstall', () => {
  const w = u(
    makeSpec('a/app@1', { requires: [dep('a/lib'), dep('a/conf')] }),
    makeSpec('a/lib@1', { requires: [dep('a/core')] }),
    makeSpec('a/core@1'),
    makeSpec('a/conf@1'),
    makeSpec('a/tool@1', { requires: [dep('a/core')] }),
  );
  const state: InstalledSpec[] = [
    { spec: w.versions('a/app')[0]!, reason: 'explicit' },
    { spec: w.versions('a/lib')[0]!, reason: 'dependency' },
    { spec: w.versions('a/core')[0]!, reason: 'dependency' },
    { spec: w.versions('a/conf')[0]!, reason: 'explicit' },
    { spec: w.versions('a/tool')[0]!, reason: 'explicit' },
  ];
  const un = (refs: string[], o: { force?: boolean; full?: boolean } = {}): Plan =>
    resolve(w, state, { op: 'uninstall', targets: refs.map(parseRef), ...o });
  it('refuses while installed packages still require the target, naming them', () => {
    const p = un(['a/core']);
    expect(p.satisfiable).toBe(false);
    expect(p.problems.map((x) => x.code)).toEqual([
      'E_REQUIRED_BY',
      'E_REQUIRED_BY',
      'E_REQUIRED_BY',
    ]);
    expect(p.problems[0]!.message).toBe('a/core@1 is required by a/lib@1, which requires a/core');
    expect(p.problems[1]!.message).toBe('a/core@1 is required by a/tool@1, which requires a/core');
  });
  it('--force removes it anyway', () => {
    expect(un(['a/core'], { force: true }).remove).toEqual(['a/core@1']);
  });
  it('plain uninstall leaves dependencies behind', () => {
    expect(ok(un(['a/app'])).remove).toEqual(['a/app@1']);
  });
  it('--full removes orphaned deps, keeps shared and explicit ones', () => {
    const p = ok(un(['a/app'], { full: true }));
    expect(p.remove).toEqual(['a/app@1', 'a/lib@1']);
    expect(p.final).toEqual(['a/conf@1', 'a/core@1', 'a/tool@1']);
  });
  it('removal order is dependents first', () => {
    const p = ok(un(['a/app', 'a/lib', 'a/core', 'a/tool']));
    expect(p.remove).toEqual(['a/tool@1', 'a/app@1', 'a/lib@1', 'a/core@1']);
  });
});

describe('cycles', () => {
  const w = u(
    makeSpec('c/b@1', { requires: [dep('c/a')] }),
    makeSpec('c/a@1', { requires: [dep('c/b')] }),
    makeSpec('c/top@1', { requires: [dep('c/b')] }),
  );
  it('are legal; order is deterministic with deps first', () => {
    const p = ok(resolve(w, [], install('c/top')));
    expect(p.install).toEqual(['c/a@1', 'c/b@1', 'c/top@1']);
    const rev = ok(
      resolve(w, inst(w, 'c/a@1', 'c/b@1', 'c/top@1'), {
        op: 'uninstall',
        targets: ['c/a', 'c/b', 'c/top'].map(parseRef),
      }),
    );
    expect(rev.remove).toEqual(['c/top@1', 'c/a@1', 'c/b@1']);
  });
});

describe('unknown vs unsatisfiable', () => {
  const w = u(
    makeSpec('system/cos-setup@1.2.0', {
      requires: [
        {
          ...dep('utils/yip', '>=0.9'),
          source: { file: 'system/cos-setup/definition.yaml', line: 7 },
        },
      ],
    }),
    makeSpec('utils/yip@0.8.1'),
    makeSpec('utils/yip@0.7.0'),
    makeSpec('sys/typo@1', { requires: [dep('utils/yipp')] }),
  );
  it('a typo in a requested name is E_NOT_FOUND, not a conflict', () => {
    const p = resolve(w, [], install('utils/yipp'));
    expect(p.problems).toEqual([
      {
        code: 'E_NOT_FOUND',
        package: 'utils/yipp',
        message: 'utils/yipp: no such package (nothing has this name or provides it)',
      },
    ]);
  });
  it('a known name without a matching version is E_UNSAT listing the versions', () => {
    const p = resolve(w, [], install('utils/yip@>=1'));
    expect(p.problems[0]!.code).toBe('E_UNSAT');
    expect(p.problems[0]!.message).toBe(
      'no version of utils/yip matches >=1 (available: 0.8.1, 0.7.0)',
    );
  });
  it('explains a deep failure with the tree file:line', () => {
    const p = resolve(w, [], install('system/cos-setup'));
    expect(p.problems[0]!.reasons).toContain(
      'system/cos-setup@1.2.0 requires utils/yip >=0.9 (system/cos-setup/definition.yaml:7), but the newest utils/yip is 0.8.1',
    );
  });
  it('a dependency on an unknown name reads as unknown', () => {
    const p = resolve(w, [], install('sys/typo'));
    expect(p.problems[0]!.code).toBe('E_NOT_FOUND');
    expect(p.problems[0]!.reasons).toContain(
      'sys/typo@1 requires utils/yipp, but no package utils/yipp exists (nothing has this name or provides it)',
    );
  });
  it('lists all offenders', () => {
    const p = resolve(w, [], install('sys/typo', 'nope/x', 'system/cos-setup', 'utils/yip'));
    expect(p.satisfiable).toBe(false);
    expect(p.problems.map((x) => x.package)).toEqual(['nope/x', 'sys/typo', 'system/cos-setup']);
  });
});

describe('determinism', () => {
  it('the plan does not depend on universe or request order', () => {
    const specs = [
      makeSpec('v/syslog-a@1', { provides: [dep('v/syslog')] }),
      makeSpec('v/syslog-b@1', { provides: [dep('v/syslog')] }),
      makeSpec('v/app@1', { requires: [dep('v/syslog'), dep('v/lib')] }),
      makeSpec('v/lib@1'),
      makeSpec('v/lib@2', { requires: [dep('v/app')] }),
      makeSpec('v/tool@1', { requires: [dep('v/lib', '<2')] }),
    ];
    const a = resolve(new PackageUniverse(specs), [], install('v/app', 'v/tool'));
    const b = resolve(new PackageUniverse([...specs].reverse()), [], install('v/tool', 'v/app'));
    expect(planToJson(b)).toEqual(planToJson(a));
    expect(a.final).toEqual(['v/app@1', 'v/lib@1', 'v/syslog-a@1', 'v/tool@1']);
  });
});
