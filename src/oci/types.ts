/**
 * OCI image-spec and Docker schema2 shapes cpm reads and writes, and their media types.
 * Only the fields cpm uses are typed; unknown fields survive because manifests are kept as bytes.
 */

export const MEDIA = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/**
 * Layer media types cpm extracts (what containerd unpacks): OCI tar, gzip and zstd (cpm writes
 * these), their deprecated non-distributable forms, and Docker schema2 layers. Anything else
 * (an artifact, a config, a compression cpm does not know) is refused rather than guessed at.
 */
export const LAYER_MEDIA_TYPES: ReadonlySet<string> = new Set([
  MEDIA.ociLayerTar,
  MEDIA.ociLayerGzip,
  MEDIA.ociLayerZstd,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.diff.tar',
  MEDIA.dockerLayerGzip,
  'application/vnd.docker.image.rootfs.diff.tar.zstd',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
]);

/** Everything a registry may answer for GET /manifests, in our order of preference. */
export const MANIFEST_ACCEPT = [
  MEDIA.ociIndex,
  MEDIA.ociManifest,
  MEDIA.dockerManifestList,
  MEDIA.dockerManifest,
];

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
  urls?: string[];
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageConfig {
  created?: string;
  architecture: string;
  os: string;
  variant?: string;
  config?: {
    Labels?: Record<string, string>;
    Env?: string[];
    Cmd?: string[];
    Entrypoint?: string[];
    WorkingDir?: string;
  };
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: Array<{
    created?: string;
    created_by?: string;
    comment?: string;
    empty_layer?: boolean;
  }>;
}

export function isIndexMediaType(mt: string | undefined): boolean {
  return mt === MEDIA.ociIndex || mt === MEDIA.dockerManifestList;
}

export function isManifestMediaType(mt: string | undefined): boolean {
  return mt === MEDIA.ociManifest || mt === MEDIA.dockerManifest;
}
