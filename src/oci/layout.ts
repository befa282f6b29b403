/**
 * OCI image layout directories (`oci-layout`, `index.json`, `blobs/sha256/…`), read and written
 * so that umoci, skopeo (`oci:DIR:TAG`) and cpm `dir://` repositories interoperate. Tags are the
 * `org.opencontainers.image.ref.name` annotation of index.json entries.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { BlobStore } from './blobstore.js';
import { MEDIA, type Descriptor, type ImageIndex } from './types.js';
import { nodeCrypto } from '../util/lazy-builtins.js';

export const REF_NAME = 'org.opencontainers.image.ref.name';

export class OciLayout {
  readonly dir: string;
  readonly blobs: BlobStore;

  private constructor(dir: string) {
    this.dir = path.resolve(dir);
    this.blobs = new BlobStore(this.dir);
  }

  /** Opens an existing layout; E_NOT_FOUND when `dir` is not one. */
  static async open(dir: string): Promise<OciLayout> {
    const l = new OciLayout(dir);
    try {
      const v = JSON.parse(await fsp.readFile(path.join(l.dir, 'oci-layout'), 'utf8')) as {
        imageLayoutVersion?: string;
      };
      if (typeof v.imageLayoutVersion !== 'string') throw new Error('no imageLayoutVersion');
    } catch (e) {
      throw new CpmError(
        'E_NOT_FOUND',
        `${l.dir} is not an OCI image layout (${(e as Error).message})`,
        {
          context: { path: l.dir },
        },
      );
    }
    return l;
  }

  /** Opens `dir`, creating an empty layout when it does not exist yet. */
  static async create(dir: string): Promise<OciLayout> {
    const l = new OciLayout(dir);
    await fsp.mkdir(path.join(l.dir, 'blobs', 'sha256'), { recursive: true });
    const marker = path.join(l.dir, 'oci-layout');
    try {
      await fsp.access(marker);
    } catch {
      await writeAtomic(marker, JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    }
    try {
      await fsp.access(path.join(l.dir, 'index.json'));
    } catch {
      await l.writeIndex({ schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests: [] });
    }
    return l;
  }

  async readIndex(): Promise<ImageIndex> {
    const file = path.join(this.dir, 'index.json');
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (e) {
      throw new CpmError('E_NOT_FOUND', `${file}: ${(e as Error).message}`, {
        context: { path: file },
      });
    }
    try {
      const idx = JSON.parse(text) as ImageIndex;
      if (!Array.isArray(idx.manifests)) throw new Error('"manifests" is not a list');
      return idx;
    } catch (e) {
      throw new CpmError('E_IMAGE', `${file}: invalid index: ${(e as Error).message}`, {
        context: { path: file },
      });
    }
  }

  async writeIndex(idx: ImageIndex): Promise<void> {
    await writeAtomic(path.join(this.dir, 'index.json'), JSON.stringify(idx));
  }

  /** Tags in index.json order. */
  async tags(): Promise<string[]> {
    const idx = await this.readIndex();
    return idx.manifests.map((m) => m.annotations?.[REF_NAME]).filter((t): t is string => !!t);
  }

  /**
   * The descriptor for `tag`; without a tag the layout must hold exactly one manifest (as skopeo
   * requires for `oci:DIR`).
   */
  async resolve(tag?: string): Promise<Descriptor> {
    const idx = await this.readIndex();
    if (tag === undefined) {
      if (idx.manifests.length === 1) return idx.manifests[0]!;
      throw new CpmError(
        'E_USAGE',
        `${this.dir} holds ${idx.manifests.length} images; name one with oci:${this.dir}:TAG`,
        {
          context: { path: this.dir },
        },
      );
    }
    const d = idx.manifests.find((m) => m.annotations?.[REF_NAME] === tag);
    if (!d) {
      throw new CpmError('E_NOT_FOUND', `no image tagged "${tag}" in ${this.dir}`, {
        hint: `tags: ${(await this.tags()).join(', ') || '(none)'}`,
        context: { path: this.dir, tag },
      });
    }
    return d;
  }

  /** Adds `desc` to index.json, replacing an entry with the same tag (or the same digest when untagged). */
  async tag(desc: Descriptor, tag?: string): Promise<void> {
    const idx = await this.readIndex();
    const entry: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
    if (desc.platform) entry.platform = desc.platform;
    if (desc.artifactType) entry.artifactType = desc.artifactType;
    const ann = { ...(desc.annotations ?? {}) };
    delete ann[REF_NAME];
    if (tag !== undefined) ann[REF_NAME] = tag;
    if (Object.keys(ann).length > 0) entry.annotations = ann;
    idx.manifests = idx.manifests.filter((m) =>
      tag !== undefined
        ? m.annotations?.[REF_NAME] !== tag
        : m.digest !== desc.digest || m.annotations?.[REF_NAME] !== undefined,
    );
    idx.manifests.push(entry);
    await this.writeIndex(idx);
  }

  /** Removes a tag from index.json (blobs stay; they may be shared). */
  async untag(tag: string): Promise<boolean> {
    const idx = await this.readIndex();
    const before = idx.manifests.length;
    idx.manifests = idx.manifests.filter((m) => m.annotations?.[REF_NAME] !== tag);
    if (idx.manifests.length === before) return false;
    await this.writeIndex(idx);
    return true;
  }
}

async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp-${nodeCrypto().randomBytes(4).toString('hex')}`;
  const fh = await fsp.open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, file);
}
