/**
 * The store's images as the image commands present them. The store records images by manifest (or
 * index) digest; docker users know images by their ID, the digest of the image config, and by the
 * unpacked size of their layers. The catalog reads each record once, on demand, and resolves what
 * users type (names, full or short IDs, digests) the way docker does: names first, then IDs.
 */
import { digestHex, type Digest } from '../../oci/digest.js';
import { isIndexMediaType } from '../../oci/mediatypes.js';
import type { LayoutImage } from '../../oci/layout/index.js';
import { hostPlatform } from '../../oci/platform.js';
import type { Descriptor, ImageConfig, Index, Manifest, Platform } from '../../oci/types.js';
import { AmbiguousImageError, findByReference, type ImageRecord, type Store } from '../../store/index.js';
import { KilnError } from '../../errors.js';
import { NoSuchImageError } from './errors.js';
import { parseCreated } from './units.js';

export interface LayerInfo {
  descriptor: Descriptor;
  diffID: Digest;
  /** Size of the layer's tar once decompressed. */
  unpacked: number;
}

export interface StoredImage {
  record: ImageRecord;
  /** The readable image: for an index, the entry for the host platform (else its first entry). */
  image: LayoutImage | undefined;
  /** The image ID: the config digest (the record's digest when the image cannot be read). */
  id: Digest;
  manifest: Manifest | undefined;
  config: ImageConfig | undefined;
  created: Date | undefined;
  /** Unpacked size of all layers, as `docker images` reports it. */
  size: number;
  layers: LayerInfo[];
  /** Why the image could not be read, when it could not. */
  problem: KilnError | Error | undefined;
}

export interface FoundImage {
  image: StoredImage;
  /** The stored name the reference matched, when it matched by name. */
  name: string | undefined;
}

export class Catalog {
  private recordsPromise: Promise<ImageRecord[]> | undefined;
  private readonly described = new Map<Digest, Promise<StoredImage>>();

  constructor(
    readonly store: Store,
    private readonly platform?: Platform,
  ) {}

  records(): Promise<ImageRecord[]> {
    this.recordsPromise ??= this.store.images();
    return this.recordsPromise;
  }

  describe(record: ImageRecord): Promise<StoredImage> {
    let p = this.described.get(record.digest);
    if (!p) {
      p = describeRecord(this.store, record, this.platform);
      this.described.set(record.digest, p);
    }
    return p;
  }

  /** Every image, newest (by config `created`) first. */
  async all(): Promise<StoredImage[]> {
    const infos = await Promise.all((await this.records()).map((r) => this.describe(r)));
    return infos.sort(
      (a, b) =>
        (b.created?.getTime() ?? -Infinity) - (a.created?.getTime() ?? -Infinity) ||
        (b.record.stored ?? '').localeCompare(a.record.stored ?? '') ||
        a.record.digest.localeCompare(b.record.digest),
    );
  }

  /**
   * The image `ref` names: a stored name (verbatim or normalised), `name@digest`, a full image ID
   * or manifest digest, or a unique prefix of an image ID (then of a manifest digest). `display` is
   * how a miss names the reference (docker echoes `nothere:latest` for most commands).
   */
  async find(ref: string, command: string, display = ref): Promise<FoundImage> {
    const records = await this.records();
    const named = findByReference(records, ref);
    if (named) return { image: await this.describe(named.record), name: named.name };
    const hex = ref.startsWith('sha256:') ? ref.slice('sha256:'.length) : ref;
    if (/^[a-f0-9]{1,64}$/.test(hex)) {
      const infos = await Promise.all(records.map((r) => this.describe(r)));
      for (const key of ['id', 'manifest'] as const) {
        const matches = infos.filter((i) => digestHex(key === 'id' ? i.id : i.record.digest).startsWith(hex));
        if (matches.length === 1) return { image: matches[0]!, name: undefined };
        if (matches.length > 1) throw new AmbiguousImageError(ref, matches.map((m) => (key === 'id' ? m.id : m.record.digest)));
      }
    }
    throw new NoSuchImageError(command, display);
  }
}

async function describeRecord(store: Store, record: ImageRecord, platform: Platform | undefined): Promise<StoredImage> {
  const info: StoredImage = {
    record,
    image: undefined,
    id: record.digest,
    manifest: undefined,
    config: undefined,
    created: undefined,
    size: 0,
    layers: [],
    problem: undefined,
  };
  try {
    const image = await resolveRecord(store, record, platform);
    info.image = image;
    info.manifest = await image.manifest();
    info.id = info.manifest.config.digest;
    info.config = await image.configFile();
    info.created = parseCreated(info.config.created);
    const diffIDs = info.config.rootfs.diff_ids;
    info.layers = await Promise.all(
      info.manifest.layers.map(async (d, i) => {
        const diffID = diffIDs[i] ?? d.digest;
        return { descriptor: d, diffID, unpacked: await unpackedSize(store, d, diffID) };
      }),
    );
    info.size = info.layers.reduce((n, l) => n + l.unpacked, 0);
  } catch (err) {
    // A record whose content is damaged or not an image (an artifact) is still listed, so it can
    // be seen and removed; the commands that need its content report the problem.
    info.problem = err as Error;
  }
  return info;
}

/** The record's image for `platform` (default: the host's, falling back to an index's first entry). */
async function resolveRecord(store: Store, record: ImageRecord, platform: Platform | undefined): Promise<LayoutImage> {
  if (platform || !isIndexMediaType(record.mediaType)) return store.resolve(record.digest, platform ? { platform } : {});
  try {
    return await store.resolve(record.digest, { platform: hostPlatform() });
  } catch (err) {
    const index = JSON.parse((await store.readBlob({ digest: record.digest, size: record.size })).toString('utf8')) as Index;
    const first = index.manifests.find((d) => d.platform && d.platform.os !== 'unknown');
    if (!first?.platform) throw err;
    return store.resolve(record.digest, { platform: first.platform });
  }
}

/**
 * Size of a layer's uncompressed tar, as docker's SIZE column counts it: the stored uncompressed
 * blob, else the store's remembered count for its compressed variant (counted once). A layer whose
 * content is missing counts at its stored size.
 */
export async function unpackedSize(store: Store, desc: Descriptor, diffID: Digest): Promise<number> {
  if (desc.digest === diffID) return desc.size;
  try {
    return await store.uncompressedSize(diffID);
  } catch {
    return desc.size;
  }
}

