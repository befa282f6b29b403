/**
 * Where images come from and go to: a registry repository or an OCI layout directory, behind
 * one small interface so pull, push, copy and pack do not care which.
 */
import type { BlobRef, BlobStore } from './blobstore.js';
import { sha256 } from './digest.js';
import { OciLayout } from './layout.js';
import {
  RegistryClient,
  type ManifestResponse,
  type PushBlobResult,
  type RegistryOptions,
} from './registry.js';
import {
  formatRef,
  manifestReference,
  type ImageRef,
  type LayoutRef,
  type RegistryRef,
} from './reference.js';
import { CpmError } from '../errors.js';
import type { TransferProgress } from '../util/progress.js';

export interface ImageSource {
  readonly name: string;
  /** The manifest (or index) named by the reference, or by `digest` when given. */
  getManifest(digest?: string): Promise<ManifestResponse>;
  /**
   * Makes `blob` present and verified in `store` (bytes moved reported to `progress`); `cancel`
   * abandons a download in flight (see RegistryClient.fetchBlob).
   */
  fetchBlob(
    blob: BlobRef,
    store: BlobStore,
    progress?: TransferProgress,
    cancel?: AbortSignal,
  ): Promise<void>;
  /** A store the blobs can be read from directly, when the source is local. */
  readonly localStore?: BlobStore;
  close(): Promise<void>;
}

export interface ImageTarget {
  readonly name: string;
  /** The tag the reference names, if any. */
  readonly tag: string | undefined;
  pushBlob(blob: BlobRef, store: BlobStore, mountFrom?: string): Promise<PushBlobResult>;
  /** Stores a manifest under `tag` (or by digest only); returns its digest. */
  putManifest(bytes: Buffer, mediaType: string, tag?: string): Promise<string>;
  close(): Promise<void>;
}

export class RegistryEndpoint implements ImageSource, ImageTarget {
  readonly name: string;
  readonly tag: string | undefined;
  constructor(
    readonly client: RegistryClient,
    readonly ref: RegistryRef,
    readonly chunkSize?: number,
  ) {
    this.name = formatRef(ref);
    this.tag = ref.tag;
  }
  getManifest(digest?: string): Promise<ManifestResponse> {
    return this.client.getManifest(this.ref.repository, digest ?? manifestReference(this.ref));
  }
  fetchBlob(
    blob: BlobRef,
    store: BlobStore,
    progress?: TransferProgress,
    cancel?: AbortSignal,
  ): Promise<void> {
    return this.client.fetchBlob(this.ref.repository, blob, store, progress, cancel);
  }
  pushBlob(blob: BlobRef, store: BlobStore, mountFrom?: string): Promise<PushBlobResult> {
    const o: { mountFrom?: string; chunkSize?: number } = {};
    if (mountFrom) o.mountFrom = mountFrom;
    if (this.chunkSize) o.chunkSize = this.chunkSize;
    return this.client.pushBlob(this.ref.repository, blob, store, o);
  }
  putManifest(bytes: Buffer, mediaType: string, tag?: string): Promise<string> {
    return this.client.putManifest(this.ref.repository, tag ?? sha256(bytes), bytes, mediaType);
  }
  close(): Promise<void> {
    return this.client.close();
  }
}

export class LayoutEndpoint implements ImageSource, ImageTarget {
  readonly name: string;
  readonly tag: string | undefined;
  readonly localStore: BlobStore;
  constructor(
    readonly layout: OciLayout,
    tag?: string,
  ) {
    this.tag = tag;
    this.name = `oci:${layout.dir}${tag ? `:${tag}` : ''}`;
    this.localStore = layout.blobs;
  }
  async getManifest(digest?: string): Promise<ManifestResponse> {
    const desc = digest ? undefined : await this.layout.resolve(this.tag);
    const d = digest ?? desc!.digest;
    const bytes = await this.layout.blobs.read(d).catch((e: unknown) => {
      throw e instanceof CpmError
        ? e
        : new CpmError('E_IMAGE', `${this.name}: cannot read ${d}: ${(e as Error).message}`);
    });
    if (sha256(bytes) !== d) {
      throw new CpmError('E_DIGEST', `${this.name}: manifest blob ${d} is corrupt`, {
        context: { digest: d },
      });
    }
    if (desc && desc.size !== bytes.length)
      throw new CpmError(
        'E_IMAGE',
        `${this.name}: manifest ${d} is ${bytes.length} bytes, but index.json says ${desc.size}`,
        { context: { digest: d } },
      );
    let mediaType = desc?.mediaType ?? '';
    const parsed = JSON.parse(bytes.toString('utf8')) as { mediaType?: string };
    if (parsed.mediaType) mediaType = parsed.mediaType;
    return { bytes, mediaType, digest: d };
  }
  async fetchBlob(blob: BlobRef, store: BlobStore): Promise<void> {
    if (store.root === this.localStore.root) return;
    // Copy with verification: a layout on disk is not trusted to be intact.
    if ((await store.size(blob.digest)) === blob.size) return;
    await store.put(await this.localStore.open(blob.digest), blob);
  }
  async pushBlob(blob: BlobRef, store: BlobStore): Promise<PushBlobResult> {
    if ((await this.localStore.size(blob.digest)) === blob.size) return 'exists';
    await this.localStore.importFrom(store, blob);
    return 'uploaded';
  }
  async putManifest(bytes: Buffer, mediaType: string, tag?: string): Promise<string> {
    const { digest, size } = await this.localStore.putBytes(bytes);
    await this.layout.tag({ mediaType, digest, size }, tag);
    return digest;
  }
  async close(): Promise<void> {}
}

export interface EndpointOptions extends RegistryOptions {
  /** Upload blobs in chunks of this size (registry targets only). */
  chunkSize?: number;
}

/** Opens a source; a layout must exist. */
export async function openSource(ref: ImageRef, opts: EndpointOptions = {}): Promise<ImageSource> {
  if (ref.kind === 'layout') return new LayoutEndpoint(await OciLayout.open(ref.dir), ref.tag);
  return new RegistryEndpoint(new RegistryClient(ref.registry, opts), ref, opts.chunkSize);
}

/** Opens a target; a layout directory is created when missing. */
export async function openTarget(ref: ImageRef, opts: EndpointOptions = {}): Promise<ImageTarget> {
  if (ref.kind === 'layout') return new LayoutEndpoint(await OciLayout.create(ref.dir), ref.tag);
  return new RegistryEndpoint(new RegistryClient(ref.registry, opts), ref, opts.chunkSize);
}

export type { LayoutRef, RegistryRef };
