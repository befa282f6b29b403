/**
 * Test packages of one file each, written as a luet tree under `dir` and pushed by the real CLI
 * (`cpm repo create --push`) to a fresh real registry, with a fault proxy in front that tests arm
 * to stall or fail blobs. Packing uses a cache of its own, so the tests' caches start empty.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cpmCli } from '../install/helpers.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { startRegistry, type RegistryInstance } from './registry.js';

export interface TestPackage {
  /** test/NAME@1.0, holding usr/share/NAME/blob */
  name: string;
  blob: Buffer;
  /** names of test/ packages it requires */
  requires?: string[];
}

export interface PushedTree {
  reg: RegistryInstance;
  proxy: FaultProxy;
  /** cpm with the packing config (its own cache); throws on a non-zero exit */
  pack: (...args: string[]) => string;
}

export async function pushTestPackages(dir: string, pkgs: TestPackage[]): Promise<PushedTree> {
  for (const p of pkgs) {
    const d = path.join(dir, `tree/test/${p.name}/1.0`);
    mkdirSync(path.join(d, `root/usr/share/${p.name}`), { recursive: true });
    const requires = (p.requires ?? []).map((r) => `  - category: test\n    name: ${r}\n`).join('');
    writeFileSync(
      path.join(d, 'definition.yaml'),
      `name: ${p.name}\ncategory: test\nversion: "1.0"\n${requires ? `requires:\n${requires}` : ''}`,
    );
    writeFileSync(path.join(d, `root/usr/share/${p.name}/blob`), p.blob);
  }
  const packCfg = path.join(dir, 'pack.yaml');
  writeFileSync(packCfg, `cache_dir: ${dir}/pack-cache\nrepos_confdir: []\n`);
  const reg = await startRegistry();
  const proxy = await startFaultProxy(reg.url);
  const tree = path.join(dir, 'tree');
  const pack = cpmCli(() => packCfg).ok;
  pack('repo', 'create', '--tree', tree, '--output', `oci://${reg.host}/cpm`, '--push');
  return { reg, proxy, pack };
}
