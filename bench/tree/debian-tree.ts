/**
 * The converted Debian universe (bench/resolver/debian.ts) written as a luet packages tree:
 * metadata-only packages in collection.yaml files (no build.yaml), split into `collections`
 * directories of consecutive packages, each file below the 4 MiB tree-file limit. Every package and
 * dependency gets the category `debian` (luet trees always have one): 36 MB of YAML.
 *
 *   npx tsx bench/tree/debian-tree.ts OUT_DIR [COLLECTIONS]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Dep, PackageSpec } from '../../src/package/package.js';
import { convertDebian, readPackagesText } from '../resolver/debian.js';

/** Plain when YAML 1.1 reads it back as the same string; double-quoted otherwise. */
const scalar = (s: string): string =>
  /^[a-z][a-z0-9+.-]*$/.test(s) && !/^(y|n|yes|no|on|off|true|false|null)$/.test(s)
    ? s
    : JSON.stringify(s);

export const CATEGORY = 'debian';

function depsYaml(key: string, deps: readonly Dep[]): string {
  if (deps.length === 0) return '';
  let out = `    ${key}:\n`;
  for (const d of deps) {
    out += `      - name: ${scalar(d.name)}\n        category: ${CATEGORY}\n`;
    if (d.version) out += `        version: ${JSON.stringify(d.version)}\n`;
  }
  return out;
}

function stanza(s: PackageSpec): string {
  return (
    `  - name: ${scalar(s.name)}\n    category: ${CATEGORY}\n` +
    `    version: ${JSON.stringify(s.version)}\n` +
    depsYaml('requires', s.requires) +
    depsYaml('conflicts', s.conflicts) +
    depsYaml('provides', s.provides)
  );
}

/** Writes the tree; returns its total YAML size in bytes. */
export function writeDebianTree(
  dir: string,
  specs: readonly PackageSpec[],
  collections = 58,
): number {
  const per = Math.ceil(specs.length / collections);
  let bytes = 0;
  for (let c = 0; c * per < specs.length; c++) {
    const d = join(dir, `debian-${String(c).padStart(3, '0')}`);
    mkdirSync(d, { recursive: true });
    const text =
      `# Debian packages ${c * per}..${Math.min(specs.length, (c + 1) * per) - 1}\npackages:\n` +
      specs
        .slice(c * per, (c + 1) * per)
        .map(stanza)
        .join('');
    writeFileSync(join(d, 'collection.yaml'), text);
    bytes += Buffer.byteLength(text);
  }
  return bytes;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [out, n] = process.argv.slice(2);
  if (!out) throw new Error('usage: debian-tree.ts OUT_DIR [COLLECTIONS]');
  const { specs } = convertDebian(readPackagesText().text);
  const bytes = writeDebianTree(out, specs, n ? Number(n) : 58);
  console.log(`${specs.length} packages, ${(bytes / 1e6).toFixed(1)} MB of YAML in ${out}`);
}
