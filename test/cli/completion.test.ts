import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command, Option } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { completionScript, completionTree } from '../../src/cli/completion.js';
import { buildProgram } from '../../src/cli/program.js';
import { CpmError } from '../../src/errors.js';

function sample(): Command {
  const p = new Command('cpm').option('--config <file>', 'config file');
  const image = p.command('image').description('images');
  image
    .command('squashfs')
    .description('squashfs out')
    .requiredOption('-o, --output <file>', 'file')
    .addOption(new Option('--comp <c>', 'compressor').choices(['zstd', 'xz']));
  image.command('secret', { hidden: true });
  return p;
}

const has = (t: string): boolean => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0;

describe('completion model', () => {
  it('walks program.commands, including commands added later, and skips hidden ones', () => {
    const p = sample();
    let paths = completionTree(p).map((n) => n.path.join(' '));
    expect(paths).toEqual(['', 'image', 'image squashfs']);
    p.command('brand-new').description('added after the fact');
    paths = completionTree(p).map((n) => n.path.join(' '));
    expect(paths).toContain('brand-new');
    const sq = completionTree(p).find((n) => n.path.join(' ') === 'image squashfs')!;
    expect(sq.options.find((o) => o.flags.includes('--comp'))).toMatchObject({
      takesValue: true,
      choices: ['zstd', 'xz'],
    });
  });

  it('covers every command of the real cpm program', async () => {
    const program = await buildProgram();
    const script = completionScript(program, 'bash');
    for (const c of program.commands) expect(script).toContain(`'${c.name()}'`);
    expect(script).toContain("'image squashfs'");
    expect(script).toContain("'image squashfs|--comp') COMPREPLY=($(compgen -W 'zstd gzip xz lz4'");
  });

  it('rejects unknown shells with E_USAGE', () => {
    expect(() => completionScript(sample(), 'tcsh')).toThrow(CpmError);
  });
});

describe('completion scripts in real shells', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-completion-'));
    for (const sh of ['bash', 'zsh', 'fish'] as const) {
      await fsp.writeFile(path.join(dir, sh), completionScript(await buildProgram(), sh));
    }
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  const bashComplete = (words: string[]): string[] => {
    const script = `source ${path.join(dir, 'bash')}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}
_cpm; printf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout.split('\n').filter(Boolean);
  };

  it('bash completes subcommands, options and option values', () => {
    expect(bashComplete(['cpm', 'ima'])).toEqual(['image']);
    expect(bashComplete(['cpm', 'image', 's'])).toEqual(['squashfs']);
    expect(bashComplete(['cpm', 'image', 'squashfs', '--bl'])).toEqual(['--block-size']);
    expect(bashComplete(['cpm', '--debug', 'image', 'squashfs', '--comp', ''])).toEqual([
      'zstd',
      'gzip',
      'xz',
      'lz4',
    ]);
    expect(bashComplete(['cpm', 'completion', 'f'])).toEqual(['fish']);
  });

  it.skipIf(!has('zsh'))('zsh accepts the script', () => {
    const r = spawnSync('zsh', ['-n', path.join(dir, 'zsh')], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  });

  it.skipIf(!has('fish'))('fish completes from the script', () => {
    const r = spawnSync(
      'fish',
      [
        '--no-config',
        '-c',
        `source ${path.join(dir, 'fish')}; complete -C 'cpm image sq'; complete -C 'cpm image squashfs --comp '`,
      ],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^squashfs\t/m);
    expect(r.stdout).toMatch(/^xz\t/m);
  });
});
