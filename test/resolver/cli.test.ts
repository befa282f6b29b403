/** `cpm plan` through the real CLI wiring, against cpm's own packages-tree and the luet fixture. */
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';

const fixture = fileURLToPath(
  new URL('../../../shared/fixtures/cos-toolkit-tree', import.meta.url),
);

async function run(...argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  const code = await main(argv);
  process.exitCode = undefined;
  return { code, out };
}

afterEach(() => vi.restoreAllMocks());

describe('cpm plan', () => {
  it('install from the default tree prints the JSON plan, dependencies first', async () => {
    const { code, out } = await run('plan', 'install', 'system/cos-setup', '--json');
    expect(code).toBe(0);
    const plan = JSON.parse(out) as { satisfiable: boolean; install: string[]; final: string[] };
    expect(plan.satisfiable).toBe(true);
    expect(plan.install.at(-1)).toMatch(/^system\/cos-setup@/);
    expect(plan.final).toEqual([...plan.final].sort());
    expect(plan.install.length).toBeGreaterThan(1);
  });
  it('unknown package exits 5, unsatisfiable exits 6', async () => {
    const unknown = await run('plan', 'install', 'utils/cos-toolz', '--json');
    expect(unknown.code).toBe(5);
    expect(JSON.parse(unknown.out).problems[0].code).toBe('E_NOT_FOUND');
    const unsat = await run('plan', 'install', 'system/cos-setup@>=99', '--json');
    expect(unsat.code).toBe(6);
    expect(JSON.parse(unsat.out).satisfiable).toBe(false);
  });
  it('upgrade and uninstall use --assume-installed; refusal names the tree file:line', async () => {
    const up = await run(
      'plan',
      'upgrade',
      '--assume-installed',
      'system/cos-setup@1.0.0',
      '--json',
    );
    expect(up.code).toBe(0);
    expect(JSON.parse(up.out).remove).toEqual(['system/cos-setup@1.0.0']);
    const un = await run(
      'plan',
      'uninstall',
      'system/base-config',
      '--assume-installed',
      'system/cos-setup@1.1.0',
      'system/base-config@1.1.0',
    );
    expect(un.code).toBe(6);
    expect(un.out).toContain('packages-tree/system/cos-setup/1.1.0/definition.yaml:11');
  });
  it('resolves against the real luet cos-toolkit tree', async () => {
    const { code, out } = await run(
      'plan',
      'install',
      'system/cos-setup',
      '--tree',
      fixture,
      '--json',
    );
    expect(code).toBe(0);
    expect(JSON.parse(out).final.some((id: string) => id.startsWith('system/cos-setup@'))).toBe(
      true,
    );
  });
});
