/** cpm.yaml errors: every refused value names the file and the line it is written on. */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { CpmError } from '../src/errors.js';
import { tmpDir } from './install/helpers.js';

function config(text: string): string {
  const f = path.join(tmpDir('cpm-config-'), 'cpm.yaml');
  writeFileSync(f, text);
  return f;
}

async function refusal(text: string): Promise<CpmError> {
  const e = await loadConfig(config(text)).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(CpmError);
  expect((e as CpmError).code).toBe('E_CONFIG');
  return e as CpmError;
}

describe('cpm.yaml refusals name file:line of the bad value', () => {
  const cases: Array<[string, string, number, string]> = [
    ['system not a mapping', 'cache_dir: /c\nsystem: [a]\n', 2, '"system" must be a mapping'],
    [
      'system.rootfs',
      'system:\n  tmpdir_base: /t\n  rootfs: 3\n',
      3,
      '"system.rootfs" must be a string',
    ],
    [
      'system.database_path',
      'system:\n  database_path:\n    - x\n',
      3,
      '"system.database_path" must be a string',
    ],
    [
      'system.tmpdir_base',
      '\nsystem:\n  tmpdir_base: true\n',
      3,
      '"system.tmpdir_base" must be a string',
    ],
    ['cache_dir', 'x: 1\ncache_dir: 7\n', 2, '"cache_dir" must be a string'],
    [
      'a repos_confdir item',
      'repos_confdir:\n  - /a\n  - {b: 1}\n',
      3,
      '"repos_confdir" must be a string',
    ],
    ['a trees item', 'trees:\n  - a\n  - b\n  - [nested]\n', 4, '"trees" must be a string'],
    ['an empty trees item', 'trees:\n  - a\n  - ""\n', 3, '"trees" must be a directory'],
    ['trees as a number', 'cache_dir: /c\ntrees: 5\n', 2, '"trees" must be a string'],
    ['network not a mapping', 'network: 10\n', 1, '"network" must be a mapping'],
    [
      'network.idle_timeout',
      'network:\n  connect_timeout: 3\n  idle_timeout: -1\n',
      3,
      '"network.idle_timeout" must be a positive',
    ],
    [
      'network.retry_budget',
      'network:\n  retry_budget: soon\n',
      2,
      '"network.retry_budget" must be a positive',
    ],
    [
      'metadata_expire',
      'cache_dir: /c\n\nmetadata_expire: fortnight\n',
      3,
      '"metadata_expire" must be seconds',
    ],
    ['build not a mapping', 'cache_dir: /c\nbuild:\n  - 1\n', 3, '"build" must be a mapping'],
    ['build.cache not a string', 'build:\n  cache: [x]\n', 2, '"build.cache" must be a string'],
    [
      'build.cache not oci://',
      'build:\n\n  cache: dir:///srv\n',
      3,
      '"build.cache" must be oci://',
    ],
  ];
  it.each(cases)('%s', async (_what, text, line, message) => {
    const e = await refusal(text);
    expect(e.message).toMatch(new RegExp(`cpm\\.yaml:${line}: `));
    expect(e.message).toContain(message);
    expect(e.context).toMatchObject({ line });
    expect(String(e.context?.file)).toMatch(/cpm\.yaml$/);
  });

  it('a value reached through an alias is located where it is written', async () => {
    const e = await refusal('base: &b\n  rootfs: 1\nsystem: *b\n');
    expect(e.message).toContain('cpm.yaml:2: "system.rootfs" must be a string');
  });

  it('a top level that is no mapping and a YAML syntax error are located too', async () => {
    expect((await refusal('- a\n')).message).toMatch(/cpm\.yaml:1: top level must be a mapping/);
    expect((await refusal('a: 1\nb: [\n')).message).toMatch(/cpm\.yaml:\d+: /);
  });
});
