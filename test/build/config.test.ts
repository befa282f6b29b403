/** cpm.yaml's `build:` section: the registry build cache `cpm build --cache` defaults to. */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { tmpDir } from '../install/helpers.js';

function config(text: string): string {
  const f = path.join(tmpDir('cpm-bconfig-'), 'cpm.yaml');
  writeFileSync(f, text);
  return f;
}

describe('cpm.yaml build.cache', () => {
  it('is read as written and absent by default', async () => {
    const cfg = await loadConfig(config('build:\n  cache: oci://127.0.0.1:5000/cos-cache\n'));
    expect(cfg.build.cache).toBe('oci://127.0.0.1:5000/cos-cache');
    expect((await loadConfig(config('cache_dir: /tmp/x\n'))).build.cache).toBeUndefined();
  });

  it('refuses a cache that is no oci:// namespace, naming the file and line', async () => {
    const f = config('build:\n  cache: dir:///srv/cache\n');
    await expect(loadConfig(f)).rejects.toThrow(
      `${f}:2: "build.cache" must be oci://HOST[:PORT]/NAMESPACE`,
    );
    await expect(loadConfig(config('build: [1]\n'))).rejects.toThrow(
      /cpm\.yaml:1: "build" must be a mapping/,
    );
  });
});
