/**
 * Turns an OCI layout holding one image (bench/install/layout.ts writes the Debian root's) into a
 * cpm `dir://` repository offering it as the package bench/debian-root@12, for timing installs
 * from a repository (`cpm install bench/debian-root --repo dir://REPO --root NEW`):
 *
 *   npx tsx bench/install/dir-repo.ts LAYOUT TAG REPO
 *
 * REPO is a new directory; the layout's blobs are hard-linked into it where one filesystem holds
 * both (copied otherwise), so the layout itself is only read.
 */
import {
  copyFileSync,
  linkSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { buildIndexArtifact } from '../../src/repo/index-artifact.js';
import { indexEntryOf } from '../../src/repo/create.js';
import {
  INDEX_SCHEMA_VERSION,
  serializeIndex,
  type IndexPackage,
} from '../../src/repo/repo-index.js';
import { DirTarget } from '../../src/repo/targets.js';
import { makeSpec } from '../../test/support/specs.js';

const [layoutArg, tag, repoArg] = process.argv.slice(2);
if (!layoutArg || !tag || !repoArg) {
  console.error('usage: npx tsx bench/install/dir-repo.ts LAYOUT TAG REPO');
  process.exit(2);
}
const layout = path.resolve(layoutArg);
const repo = path.resolve(repoArg);

interface Desc {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}
const idx = JSON.parse(readFileSync(path.join(layout, 'index.json'), 'utf8')) as {
  manifests: Desc[];
};
const desc = idx.manifests.find(
  (m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag,
);
if (!desc) throw new Error(`${layout} has no tag ${tag}`);
const blob = (d: string): string => path.join('blobs/sha256', d.slice('sha256:'.length));
const manifest = JSON.parse(readFileSync(path.join(layout, blob(desc.digest)), 'utf8')) as {
  layers: Desc[];
};

mkdirSync(path.join(repo, 'blobs/sha256'), { recursive: true });
for (const name of readdirSync(path.join(layout, 'blobs/sha256'))) {
  const from = path.join(layout, 'blobs/sha256', name);
  const to = path.join(repo, 'blobs/sha256', name);
  try {
    linkSync(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    copyFileSync(from, to);
  }
}
writeFileSync(path.join(repo, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
writeFileSync(path.join(repo, 'index.json'), '{"schemaVersion":2,"manifests":[]}');

const spec = makeSpec('bench/debian-root@12');
const entry: IndexPackage = indexEntryOf({ ...spec }, undefined);
entry.contentKey = desc.digest;
entry.image = {
  repository: 'bench/debian-root',
  tag: '12',
  manifestDigest: desc.digest,
  manifestMediaType: desc.mediaType,
  manifestSize: desc.size,
  layers: manifest.layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, size: l.size })),
};
const repository = { name: 'bench', revision: 1, timestamp: 0 };
const serialized = await serializeIndex(
  { schemaVersion: INDEX_SCHEMA_VERSION, repository, packages: [entry] },
  'gzip',
);
const target = await DirTarget.open(repo);
await target.publishIndex(buildIndexArtifact(repository, serialized), [entry.image]);
console.log(`dir://${repo}: bench/debian-root@12 (${manifest.layers.length} layer(s))`);
