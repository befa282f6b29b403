/**
 * The layer rules of eslint.config.js (docs/architecture.md) fire: an import across a layer is an
 * error, an allowed one is not, and the source tree as it is has no violation.
 */
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const eslint = new ESLint({ cwd: process.cwd() });

async function restricted(filePath: string, specifier: string): Promise<string[]> {
  const code = `import { x } from '${specifier}';\nexport const y = x;\n`;
  const [r] = await eslint.lintText(code, { filePath });
  return r!.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('layer rules', () => {
  it.each([
    ['src/package/a.ts', '../rootfs/db.js'],
    ['src/package/a.ts', '../resolver/resolve.js'],
    ['src/tree/a.ts', '../repo/open.js'],
    ['src/tree/template/a.ts', '../../install/operations.js'],
    ['src/resolver/a.ts', '../rootfs/db.js'],
    ['src/oci/a.ts', '../repo/repo-index.js'],
    ['src/util/a.ts', '../package/package.js'],
    ['src/rootfs/a.ts', '../cli/output.js'],
    ['src/install/a.ts', '../cli/commands/install.js'],
  ])('%s may not import %s', async (file, spec) => {
    expect(await restricted(file, spec)).toHaveLength(1);
  });

  it.each([
    ['src/package/a.ts', '../errors.js'],
    ['src/package/a.ts', '../util/progress.js'],
    ['src/package/a.ts', './version.js'],
    ['src/tree/a.ts', '../package/package.js'],
    ['src/tree/template/a.ts', '../problems.js'],
    ['src/tree/template/a.ts', '../../package/version.js'],
    ['src/resolver/a.ts', '../package/match.js'],
    ['src/oci/a.ts', '../util/compress.js'],
    ['src/install/a.ts', '../rootfs/db.js'],
    ['src/cli/commands/a.ts', '../../install/operations.js'],
  ])('%s may import %s', async (file, spec) => {
    expect(await restricted(file, spec)).toEqual([]);
  });

  it('holds for the source tree', async () => {
    const results = await eslint.lintFiles(['src/**/*.ts']);
    const hits = results.flatMap((r) =>
      r.messages
        .filter((m) => m.ruleId === 'no-restricted-imports')
        .map((m) => `${r.filePath}:${m.line}: ${m.message}`),
    );
    expect(hits).toEqual([]);
  });
});
