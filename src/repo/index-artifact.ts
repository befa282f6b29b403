/**
 * The repository index as ONE OCI 1.1 artifact: an image manifest with `artifactType`, the empty
 * config, and a single layer holding the compressed index. When the index is small the layer
 * descriptor also embeds it (`data`, OCI 1.1), so a client gets everything from the one manifest
 * GET; larger indexes cost one blob GET more. The layer blob is always stored too, so registries
 * that validate references accept the manifest and tools that ignore `data` still work.
 */
import { CpmError } from '../errors.js';
import {
  INDEX_ARTIFACT_TYPE,
  compressionOfIndexMediaType,
  parseIndex,
  type RepoIndex,
} from './repo-index.js';
import { sha256Hex } from '../util/sha256.js';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const EMPTY_CONFIG = {
  mediaType: 'application/vnd.oci.empty.v1+json',
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
  data: 'e30=',
} as const;
export const EMPTY_CONFIG_BYTES = Buffer.from('{}');
/** Indexes up to this size (compressed) are embedded in the manifest. */
export const EMBED_LIMIT = 512 * 1024;

export const ANN_REPO_NAME = 'io.cpm.repository.name';
export const ANN_REPO_REVISION = 'io.cpm.repository.revision';
export const ANN_CREATED = 'org.opencontainers.image.created';
export const ANN_TITLE = 'org.opencontainers.image.title';

export interface IndexArtifact {
  manifest: Buffer;
  manifestDigest: string;
  /** Blobs the manifest references (config and index layer), to store/push before it. */
  blobs: Array<{ digest: string; data: Buffer }>;
}

const sha = (b: Buffer): string => `sha256:${sha256Hex(b)}`;

/** Builds the artifact for a serialised index. Deterministic: no clock, sorted keys fixed. */
export function buildIndexArtifact(
  meta: RepoIndex['repository'],
  serialized: { data: Buffer; digest: string; mediaType: string },
): IndexArtifact {
  const ext = serialized.mediaType.endsWith('+gzip')
    ? '.gz'
    : serialized.mediaType.endsWith('+zstd')
      ? '.zst'
      : '';
  const layer: Record<string, unknown> = {
    mediaType: serialized.mediaType,
    digest: serialized.digest,
    size: serialized.data.length,
    annotations: { [ANN_TITLE]: `cpm-index.json${ext}` },
  };
  if (serialized.data.length <= EMBED_LIMIT) layer.data = serialized.data.toString('base64');
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: INDEX_ARTIFACT_TYPE,
      config: EMPTY_CONFIG,
      layers: [layer],
      annotations: {
        [ANN_CREATED]: new Date(meta.timestamp * 1000).toISOString(),
        [ANN_REPO_NAME]: meta.name,
        [ANN_REPO_REVISION]: String(meta.revision),
      },
    }),
  );
  return {
    manifest,
    manifestDigest: sha(manifest),
    blobs: [
      { digest: EMPTY_CONFIG.digest, data: EMPTY_CONFIG_BYTES },
      { digest: serialized.digest, data: serialized.data },
    ],
  };
}

export interface IndexLayerRef {
  digest: string;
  size: number;
  mediaType: string;
  /** Embedded bytes, verified, when the manifest carried them. */
  embedded?: Buffer;
}

/** Validates an index artifact manifest and returns its index layer. */
export function indexLayerOf(manifest: Buffer, where: string): IndexLayerRef {
  let m: { artifactType?: string; layers?: Array<Record<string, unknown>> };
  try {
    m = JSON.parse(manifest.toString('utf8')) as typeof m;
  } catch (e) {
    throw new CpmError('E_REPO', `${where}: index manifest is not JSON: ${(e as Error).message}`);
  }
  if (m.artifactType !== INDEX_ARTIFACT_TYPE) {
    throw new CpmError(
      'E_REPO',
      `${where}: not a cpm repository index (artifactType ${String(m.artifactType)})`,
      {
        hint: 'the URL must point at a repository written by `cpm repo create`',
      },
    );
  }
  const l = m.layers?.[0];
  if (
    !l ||
    typeof l.digest !== 'string' ||
    typeof l.size !== 'number' ||
    typeof l.mediaType !== 'string'
  )
    throw new CpmError('E_REPO', `${where}: index manifest has no index layer`);
  compressionOfIndexMediaType(l.mediaType);
  const ref: IndexLayerRef = { digest: l.digest, size: l.size, mediaType: l.mediaType };
  if (typeof l.data === 'string') {
    const data = Buffer.from(l.data, 'base64');
    if (data.length !== l.size || sha(data) !== l.digest) {
      throw new CpmError(
        'E_DIGEST',
        `${where}: embedded index does not match its digest ${l.digest}`,
        {
          context: { digest: l.digest },
        },
      );
    }
    ref.embedded = data;
  }
  return ref;
}

/** Verifies fetched index bytes against their descriptor and parses them. */
export async function parseIndexBlob(
  data: Buffer,
  layer: IndexLayerRef,
  where: string,
): Promise<RepoIndex> {
  if (data.length !== layer.size || sha(data) !== layer.digest) {
    throw new CpmError('E_DIGEST', `${where}: index blob does not match ${layer.digest}`, {
      context: { digest: layer.digest },
    });
  }
  return parseIndex(data, where);
}
