/**
 * cpm.yaml and repository configs are read by the fast YAML reader when they are plain
 * (src/tree/yaml-fast.ts parseFastCore), else by `yaml`: both must give the same config, the same
 * entry lines and the same errors. A trailing comment holding "&" sends a text to `yaml` (the fast
 * path leaves anchors to it), so each text is read both ways.
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { parseRepoFile } from '../src/repo/config.js';
import { parseFastCore, resolveCorePlain } from '../src/tree/yaml-fast.js';

let dir: string;
beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-config-fast-'));
});
afterEach(() => fsp.rm(dir, { recursive: true, force: true }));

const FULL = '\n# & (read by yaml)\n';

async function both<T>(text: string, read: (file: string) => Promise<T>) {
  const outcome = async (t: string) => {
    const file = path.join(dir, 'c.yaml');
    await fsp.writeFile(file, t);
    try {
      return { ok: await read(file) };
    } catch (e) {
      return { error: (e as Error).message };
    }
  };
  return { fast: await outcome(text), full: await outcome(text + FULL) };
}

const CONFIGS = [
  'cache_dir: cache\nrepos_confdir: [repos.conf.d]\n',
  'repos_confdir: [a,  b ] # two\ntrees: [t1]\n',
  'repos_confdir: [a, "b"]\n', // quoted in a flow list: yaml
  'repos_confdir: [1, x]\n',
  'cache_dir: cache\nrepos_confdir:\n  - a\n  - b # two\n',
  'system:\n  rootfs: /mnt/root\n  database_path: "var/lib/cpm"\nmetadata_expire: 6h\n',
  "metadata_expire: 3600\nnetwork:\n  connect_timeout: 2.5\n  retry_budget: 1e2\ntrees: 'x'\n",
  'metadata_expire: never\nbuild:\n  cache: oci://127.0.0.1:5000/cache\n',
  'finalizer_envs:\n  - key: A\n    value: "1"\n  - key: B\n    value: ~\n',
  // errors: located by yaml either way
  'system:\n  rootfs: 12\n',
  'network:\n  connect_timeout: -1\n',
  'system: 3\n',
  'build:\n  cache: http://x\n',
  'metadata_expire: soon\n',
  'cache_dir: a\ncache_dir: b\n',
  '- a\n',
  'cache_dir: 0x10\n',
  'cache_dir: true\n',
];

const REPOS = [
  'name: local\ntype: dir\nurls:\n  - dir:///srv/repo\npriority: 99\nenabled: true\n',
  '# two\n- name: a\n  type: dir\n  urls:\n    - dir:///a\n\n- name: b\n  type: http\n  urls:\n    - "http://127.0.0.1:1/b"\n  priority: 3\n',
  '',
  '# nothing\n',
  'name: bad\ntype: nope\nurls:\n  - x\n',
  '- name: ok\n  type: dir\n  urls:\n    - /x\n- 3\n',
  'name: x\nname: y\n',
];

describe('fast config reading', () => {
  it('reads cpm.yaml as yaml does', async () => {
    for (const text of CONFIGS) {
      const { fast, full } = await both(text, (f) => loadConfig(f));
      if ('ok' in fast && fast.ok) fast.ok.file = full.ok?.file ?? fast.ok.file;
      expect(fast, text).toEqual(full);
    }
  });

  it('reads repository configs as yaml does, entry lines included', async () => {
    for (const text of REPOS) {
      const { fast, full } = await both(text, async (f) => parseRepoFile(text, f));
      expect(fast, text).toEqual(full);
    }
  });

  it('takes the plain files and leaves the rest to yaml', () => {
    expect(parseFastCore(REPOS[0]!, 'f')?.value).toMatchObject({ name: 'local', priority: 99 });
    for (const t of [
      'a: &x 1\n',
      'a: *x\n',
      '<<: 1\n',
      '__proto__: 1\n',
      'a: 1\na: 2\n',
      'a: 0o7\n',
    ])
      expect(parseFastCore(t, 'f'), t).toBeNull();
    expect(resolveCorePlain('yes')).toBe('yes'); // a boolean only under YAML 1.1
    expect(resolveCorePlain('1.50')).toBe(1.5);
    expect(resolveCorePlain('-12')).toBe(-12);
    expect(resolveCorePlain('Null')).toBeNull();
    expect(resolveCorePlain('6h')).toBe('6h');
    // the plain texts above are read by the fast path (else both sides would be yaml's)
    const yamlOnly = /"b"|0x|(\w+): .*\n\1:/;
    const plain = [...CONFIGS, ...REPOS].filter((t) => !yamlOnly.test(t));
    expect(plain.length).toBeGreaterThan(15);
    for (const t of plain) expect(parseFastCore(t, 'f'), t).not.toBeNull();
  });
});
