/**
 * Byte progress for what `kiln build` writes out: each layer compressed for an export or a push
 * (`compressing sha256:…`, of its uncompressed size), the layers written into an archive, a layout
 * or a root filesystem (`writing DEST`), and the blobs sent to a registry (`pushing NAME`), all
 * with their rates through the step's throttled byte meters.
 *
 * Compression goes through the store (`compressedLayer`), which remembers each layer's gzip form:
 * an export and a push of the same build compress a layer once, and their blobs are the same.
 */
import { pipeline, Transform, type Readable } from 'node:stream';
import type { Digest } from '../oci/digest.js';
import type { Image, Layer } from '../oci/image.js';
import { LayoutLayer } from '../oci/layout/index.js';
import { observeCompression } from '../oci/layer/compress.js';
import { MediaType, layerCompression, type Compression } from '../oci/mediatypes.js';
import type { Descriptor } from '../oci/types.js';
import type { Lease, Store } from '../store/index.js';
import type { ByteMeter, Vertex } from './events.js';

/** `sha256:0123456789ab`: how progress lines name a layer. */
export function layerLabel(digest: string): string {
  return digest.slice(0, 'sha256:'.length + 12);
}

/**
 * Makes the store's gzip form of every layer of `image` stored uncompressed, one layer at a time
 * (each compression already uses every core), each with its own meter; a layer the store has
 * compressed before costs nothing and shows nothing. Answers the gzip descriptors by diffID.
 */
export async function compressLayers(store: Store, image: Image, lease: Lease, vertex: Vertex): Promise<Map<Digest, Descriptor>> {
  const made = new Map<Digest, Descriptor>();
  for (const layer of await image.layers()) {
    if (layerCompression(await layer.mediaType()) !== 'none') continue;
    const diffID = await layer.diffID();
    if (made.has(diffID) || !(await store.hasBlob(diffID))) continue;
    const size = await layer.size();
    let meter: ByteMeter | undefined;
    const desc = await observeCompression(
      (p) => {
        meter ??= vertex.meter(`compressing ${layerLabel(diffID)}`, size);
        if (p.done) meter.finish(p.read);
        else meter.set(p.read);
      },
      () => store.compressedLayer(diffID, 'gzip', { lease }),
    );
    made.set(diffID, desc);
  }
  return made;
}

/** `stream` with every chunk counted on its way through. */
function counted(stream: Readable, onBytes: (n: number) => void): Readable {
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      onBytes(chunk.length);
      done(null, chunk);
    },
  });
  return pipeline(stream, counter, () => undefined) as unknown as Readable;
}

/** A layer whose streams count the bytes read from them. */
class CountedLayer implements Layer {
  constructor(
    private readonly layer: Layer,
    private readonly onBytes: (n: number) => void,
  ) {}
  digest(): Promise<Digest> {
    return this.layer.digest();
  }
  diffID(): Promise<Digest> {
    return this.layer.diffID();
  }
  size(): Promise<number> {
    return this.layer.size();
  }
  mediaType(): Promise<string> {
    return this.layer.mediaType();
  }
  async compressed(): Promise<Readable> {
    return counted(await this.layer.compressed(), this.onBytes);
  }
  async uncompressed(): Promise<Readable> {
    return counted(await this.layer.uncompressed(), this.onBytes);
  }
}

/** `image` with its layers' bytes counted as an exporter reads them. */
function countedImage(image: Image, onBytes: (n: number) => void): Image {
  return {
    mediaType: () => image.mediaType(),
    digest: () => image.digest(),
    manifest: () => image.manifest(),
    rawManifest: () => image.rawManifest(),
    configName: () => image.configName(),
    configFile: () => image.configFile(),
    rawConfigFile: () => image.rawConfigFile(),
    layers: async () => (await image.layers()).map((l) => new CountedLayer(l, onBytes)),
  };
}

export interface ExportProgress {
  /** The image to hand the exporter: its layers count what is read. */
  image: Image;
  /** For the OCI and docker writers: layers in the form the export needs, from the store, counted. */
  layerVariant: (layer: Layer, compression: Compression) => Promise<Layer | undefined>;
  /** The export is complete. */
  finish(): void;
}

/**
 * Counts the layer bytes an export writes under one meter, `writing DEST`: `form` says which bytes
 * the export reads, the layers as an OCI image holds them (`oci`: the gzip forms `compressLayers`
 * made, compressed ones as they are), uncompressed tars (`docker`, and a root filesystem: `rootfs`).
 * The total is known when the store knows every layer's size in that form.
 */
export async function exportProgress(
  store: Store,
  image: Image,
  form: 'oci' | 'docker' | 'rootfs',
  gzip: Map<Digest, Descriptor>,
  lease: Lease,
  vertex: Vertex,
  dest: string,
): Promise<ExportProgress> {
  let total: number | undefined = 0;
  const seen = new Set<Digest>();
  for (const layer of await image.layers()) {
    const mediaType = await layer.mediaType();
    const diffID = await layer.diffID();
    const stored = layerCompression(mediaType) === 'none';
    const id = form === 'oci' ? diffID : await layer.digest();
    if (seen.has(id)) continue;
    seen.add(id);
    let size: number | undefined;
    if (form === 'oci') size = stored ? gzip.get(diffID)?.size : await layer.size();
    else size = stored ? await layer.size() : await store.layout.blobSize(diffID);
    total = size === undefined || total === undefined ? undefined : total + size;
  }
  const meter = vertex.meter(`writing ${dest}`, total);
  const onBytes = (n: number): void => meter.add(n);
  const layerVariant = async (layer: Layer, compression: Compression): Promise<Layer | undefined> => {
    const diffID = await layer.diffID();
    if (compression === 'none') {
      const size = await store.layout.blobSize(diffID);
      if (size === undefined) return undefined;
      await lease.add(diffID);
      return new CountedLayer(new LayoutLayer(store.layout, { mediaType: MediaType.ociLayer, digest: diffID, size }, diffID), onBytes);
    }
    const desc = compression === 'gzip' ? gzip.get(diffID) : undefined;
    return desc ? new CountedLayer(new LayoutLayer(store.layout, desc, diffID), onBytes) : undefined;
  };
  return { image: countedImage(image, onBytes), layerVariant, finish: () => meter.finish() };
}

/**
 * Progress of pushing an image as `name`: one count of its blobs, those sent (or found in the
 * registry) plus the bytes of those on their way. Feed it the push's blob events and its upload
 * observer.
 */
export function pushProgress(vertex: Vertex, name: string): {
  onBlob(e: { type: string; digest?: string; status?: string; size?: number }): void;
  onUpload(blob: { digest: string }, sent: number): void;
  finish(): void;
} {
  let meter: ByteMeter | undefined;
  let done = 0;
  let total = 0;
  const sending = new Map<string, number>();
  const update = (): void => {
    let current = done;
    for (const n of sending.values()) current += n;
    meter ??= vertex.meter(`pushing ${name}`, total);
    meter.setTotal(total);
    meter.set(current);
  };
  return {
    onBlob(e) {
      if (e.type !== 'blob' || e.digest === undefined || e.size === undefined) return;
      if (e.status === 'pushing') total += e.size;
      else if (e.status === 'pushed' || e.status === 'exists' || e.status === 'mounted') {
        sending.delete(e.digest);
        done += e.size;
      } else return;
      update();
    },
    onUpload(blob, sent) {
      sending.set(blob.digest, sent);
      update();
    },
    finish() {
      meter?.finish();
    },
  };
}
