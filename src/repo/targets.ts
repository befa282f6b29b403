/**
 * Where `repo create` writes: a `dir` repository (OCI image layout) or an `oci` registry
 * namespace. Both expose the previous index (for incremental runs), a blob store to pack into,
 * an "is this image already there" check, and publishing of images and of the index artifact.
 */
import path from 'node:path';
import { CpmError } from '../errors.js';
import { BlobStore } from '../oci/blobstore.js';
import { pushImage } from '../oci/image.js';
import { OciLayout, REF_NAME } from '../oci/layout.js';
import { RegistryEndpoint } from '../oci/endpoint.js';
import { RegistryClient, type RegistryOptions } from '../oci/registry.js';
import type { Descriptor } from '../oci/types.js';
import { INDEX_ARTIFACT_TYPE, type IndexImage, type RepoIndex } from './repo-index.js';
import { OCI_MANIFEST, type IndexArtifact } from './index-artifact.js';
import { LayoutReader, RegistryReader, parseOciUrl } from './reader.js';
import { INDEX_TAG, layoutTag, parseLayoutTag } from './tags.js';

export interface RepoTarget {
  readonly url: string;
  /** Packed blobs go here before publishing. */
  readonly store: BlobStore;
  previousIndex(): Promise<RepoIndex | undefined>;
  /** True when the image (manifest and layers) is already published under its tag. */
  hasImage(img: IndexImage): Promise<boolean>;
  /** Publishes a packed image under its tag. */
  publishImage(img: IndexImage): Promise<void>;
  publishIndex(artifact: IndexArtifact, images: readonly IndexImage[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * Another writer replaced the registry's index between this run's read and its write: publishing
 * would drop what that writer added. `createRepository` starts over from the new index.
 */
export class IndexChangedError extends CpmError {
  constructor(where: string) {
    super('E_REPO', `${where}: the index changed while this run was writing it`, {
      hint: 'another job published to the same repository at the same time; run again',
      context: { path: where },
    });
  }
}

function notARepo(e: unknown): boolean {
  return e instanceof CpmError && (e.code === 'E_REPO' || e.code === 'E_NOT_FOUND');
}

export class DirTarget implements RepoTarget {
  readonly url: string;
  private constructor(
    readonly layout: OciLayout,
    readonly store: BlobStore,
  ) {
    this.url = `dir://${layout.dir}`;
  }

  static async open(dir: string): Promise<DirTarget> {
    const layout = await OciLayout.create(path.resolve(dir));
    return new DirTarget(layout, layout.blobs);
  }

  async previousIndex(): Promise<RepoIndex | undefined> {
    try {
      return (await new LayoutReader('dir', this.layout.dir).fetchIndex()).index;
    } catch (e) {
      if (notARepo(e)) return undefined;
      throw e;
    }
  }

  async hasImage(img: IndexImage): Promise<boolean> {
    if ((await this.store.size(img.manifestDigest)) !== img.manifestSize) return false;
    for (const l of img.layers) if ((await this.store.size(l.digest)) !== l.size) return false;
    return true;
  }

  async publishImage(): Promise<void> {
    // Blobs were packed straight into the layout; index.json is written once, in publishIndex.
  }

  /** Rewrites index.json: package refs sorted by name, then the index artifact; others kept. */
  async publishIndex(artifact: IndexArtifact, images: readonly IndexImage[]): Promise<void> {
    for (const b of artifact.blobs)
      await this.store.putBytes(b.data, { digest: b.digest, size: b.data.length });
    await this.store.putBytes(artifact.manifest, {
      digest: artifact.manifestDigest,
      size: artifact.manifest.length,
    });
    const ours = new Map<string, Descriptor>();
    for (const img of images) {
      const tag = layoutTag(img.repository, img.tag);
      ours.set(tag, {
        mediaType: img.manifestMediaType,
        digest: img.manifestDigest,
        size: img.manifestSize,
        annotations: { [REF_NAME]: tag },
      });
    }
    const idx = await this.layout.readIndex();
    const foreign = idx.manifests.filter((m) => {
      const t = m.annotations?.[REF_NAME];
      return t !== INDEX_TAG && !(t !== undefined && isPackageTag(t));
    });
    const byTag = (a: Descriptor, b: Descriptor): number => {
      const x = a.annotations?.[REF_NAME] ?? '';
      const y = b.annotations?.[REF_NAME] ?? '';
      return x < y ? -1 : x > y ? 1 : 0;
    };
    idx.manifests = [
      ...foreign,
      ...[...ours.values()].sort(byTag),
      {
        mediaType: OCI_MANIFEST,
        artifactType: INDEX_ARTIFACT_TYPE,
        digest: artifact.manifestDigest,
        size: artifact.manifest.length,
        annotations: { [REF_NAME]: INDEX_TAG },
      },
    ];
    await this.layout.writeIndex(idx);
  }

  async close(): Promise<void> {}
}

/** A ref name cpm wrote for a package (decodes to "repository:version"). */
function isPackageTag(t: string): boolean {
  try {
    parseLayoutTag(t);
    return true;
  } catch {
    return false;
  }
}

export class RegistryTarget implements RepoTarget {
  readonly url: string;
  readonly registry: string;
  readonly namespace: string;
  readonly client: RegistryClient;
  /** Manifests and blobs actually uploaded (not skipped as present), for reports and tests. */
  readonly uploads: string[] = [];
  /** The index manifest previousIndex() started from (null: none); publishIndex checks it. */
  private indexRead: string | null | undefined;

  constructor(
    url: string,
    readonly store: BlobStore,
    private readonly opts: RegistryOptions = {},
    private readonly dryRun = false,
  ) {
    const { registry, namespace } = parseOciUrl(url);
    this.url = url;
    this.registry = registry;
    this.namespace = namespace;
    this.client = new RegistryClient(registry, opts);
  }

  async previousIndex(): Promise<RepoIndex | undefined> {
    // Read before the index itself: a write in between is seen as a change (safe side).
    this.indexRead = (await this.client.headManifest(this.namespace, INDEX_TAG)) ?? null;
    const reader = new RegistryReader(this.url, {
      blobCache: this.store,
      ...(this.opts.plainHttp !== undefined ? { plainHttp: this.opts.plainHttp } : {}),
      ...(this.opts.tlsVerify !== undefined ? { tlsVerify: this.opts.tlsVerify } : {}),
    });
    try {
      return (await reader.fetchIndex()).index;
    } catch (e) {
      if (notARepo(e)) return undefined;
      throw e;
    } finally {
      await reader.close();
    }
  }

  private repo(img: IndexImage): string {
    return `${this.namespace}/${img.repository}`;
  }

  async hasImage(img: IndexImage): Promise<boolean> {
    // The registry verified every referenced blob when the manifest was PUT, so the manifest
    // digest under the tag is enough.
    return (await this.client.headManifest(this.repo(img), img.tag)) === img.manifestDigest;
  }

  async publishImage(img: IndexImage): Promise<void> {
    if (this.dryRun) return;
    const endpoint = new RegistryEndpoint(this.client, {
      kind: 'registry',
      registry: this.registry,
      repository: this.repo(img),
      tag: img.tag,
    });
    await pushImage(
      this.store,
      { digest: img.manifestDigest, size: img.manifestSize, mediaType: img.manifestMediaType },
      endpoint,
      {
        tag: img.tag,
        onBlob: (b, r) => {
          if (r !== 'exists') this.uploads.push(b.digest);
        },
      },
    );
    this.uploads.push(img.manifestDigest);
  }

  async publishIndex(artifact: IndexArtifact): Promise<void> {
    if (this.dryRun) return;
    for (const b of artifact.blobs) {
      const ref = await this.store.putBytes(b.data, { digest: b.digest, size: b.data.length });
      if ((await this.client.pushBlob(this.namespace, ref, this.store)) !== 'exists')
        this.uploads.push(b.digest);
    }
    const now = (await this.client.headManifest(this.namespace, INDEX_TAG)) ?? null;
    if (now !== artifact.manifestDigest) {
      // Registries have no compare-and-swap on a tag: check right before the PUT, so only a
      // writer within these milliseconds (not within the whole run) can still be overwritten.
      if (this.indexRead !== undefined && now !== this.indexRead)
        throw new IndexChangedError(`${this.registry}/${this.namespace}:${INDEX_TAG}`);
      await this.client.putManifest(this.namespace, INDEX_TAG, artifact.manifest, OCI_MANIFEST);
      this.uploads.push(artifact.manifestDigest);
    }
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
