/**
 * Writes the install bench's image (one zstd layer of bench/.work/debian-root.tar, a cpm package
 * config with its diff_id) to an OCI layout, for profiling or A/B runs without a registry:
 *
 *   npx tsx bench/install/layout.ts LAYOUT   # then: cpm rootfs init --from oci:LAYOUT:z --root NEW
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import path from 'node:path';
import { BlobStore } from '../../src/oci/blobstore.js';
import { openTarget } from '../../src/oci/endpoint.js';
import { packageLabels } from '../../src/oci/package-image.js';
import { hostPlatform } from '../../src/oci/platform.js';
import { parseImageRef } from '../../src/oci/reference.js';
import { MEDIA } from '../../src/oci/types.js';
import { makeSpec } from '../../test/support/specs.js';
import { debianRootTar } from '../support.js';

const layout = path.resolve(process.argv[2] ?? 'bench/.work/layout');
const tar = await debianRootTar();
const zst = `${tar}.zst`;
if (!existsSync(zst)) execFileSync('zstd', ['-q', '-3', '-T0', tar, '-o', zst]);
const h = createHash('sha256');
for await (const c of createReadStream(tar, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
const store = new BlobStore(layout);
const layer = await store.put(createReadStream(zst, { highWaterMark: 1 << 20 }));
const p = hostPlatform();
const config = await store.putBytes(
  JSON.stringify({
    created: '1970-01-01T00:00:00Z',
    architecture: p.architecture,
    os: p.os,
    config: { Labels: packageLabels(makeSpec('bench/debian-root@12')) },
    rootfs: { type: 'layers', diff_ids: [`sha256:${h.digest('hex')}`] },
  }),
);
const manifest = await store.putBytes(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    config: { mediaType: MEDIA.ociConfig, digest: config.digest, size: config.size },
    layers: [{ mediaType: MEDIA.ociLayerZstd, digest: layer.digest, size: layer.size }],
  }),
);
const target = await openTarget(parseImageRef(`oci:${layout}`));
await target.putManifest(await store.read(manifest.digest), MEDIA.ociManifest, 'z');
await target.close();
console.log(`oci:${layout}:z`);
