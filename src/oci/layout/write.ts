/**
 * Copying images into a layout: every blob verified on the way in, children before parents (layers
 * and config before the manifest, manifests before their index), so a document is never present
 * while something it names is missing.
 */
import pLimit from 'p-limit';
import type { Digest } from '../digest.js';
import type { Image, ImageIndex } from '../image.js';
import { MediaType, isIndexMediaType } from '../mediatypes.js';
import type { Descriptor } from '../types.js';
import { LayoutError } from './errors.js';
import type { OciLayout } from './layout.js';

export interface WriteImageOptions {
  /** Layers copied at once (default 3). */
  concurrency?: number;
  /** Passed to every blob write: runs before a verified blob becomes visible. */
  beforeCommit?: (digest: Digest, size: number) => Promise<void>;
  /** Also list the image in index.json under this ref name (replacing what had that name). */
  refName?: string;
  annotations?: Record<string, string>;
}

/** Writes an image's layers, config and manifest into `layout`; returns the manifest descriptor. */
export async function writeImage(layout: OciLayout, image: Image, opts: WriteImageOptions = {}): Promise<Descriptor> {
  const manifest = await image.manifest();
  const layers = await image.layers();
  if (layers.length !== manifest.layers.length) {
    throw new LayoutError(layout.dir, `image ${await image.digest()} has ${manifest.layers.length} layer descriptors but ${layers.length} layers`);
  }
  const limit = pLimit(opts.concurrency ?? 3);
  const commit = opts.beforeCommit ? { beforeCommit: opts.beforeCommit } : {};
  await Promise.all(
    manifest.layers.map((desc, i) =>
      limit(async () => {
        if (await layout.hasBlob(desc.digest)) {
          await opts.beforeCommit?.(desc.digest, desc.size);
          return;
        }
        await layout.writeBlob(await layers[i]!.compressed(), { expected: { digest: desc.digest, size: desc.size }, ...commit });
      }),
    ),
  );
  await layout.writeBlob(await image.rawConfigFile(), { expected: { digest: manifest.config.digest, size: manifest.config.size }, ...commit });
  const raw = await image.rawManifest();
  const digest = await image.digest();
  await layout.writeBlob(raw, { expected: { digest, size: raw.length }, ...commit });
  const desc: Descriptor = { mediaType: await image.mediaType(), digest, size: raw.length };
  if (opts.refName !== undefined || opts.annotations) await layout.addManifest(desc, pick(opts));
  return desc;
}

/** Writes an index and everything it lists (images and nested indexes); returns its descriptor. */
export async function writeImageIndex(layout: OciLayout, index: ImageIndex, opts: WriteImageOptions = {}): Promise<Descriptor> {
  const doc = await index.indexManifest();
  const inner: WriteImageOptions = { ...opts };
  delete inner.refName;
  delete inner.annotations;
  for (const child of doc.manifests) {
    if (isIndexMediaType(child.mediaType)) await writeImageIndex(layout, await index.imageIndex(child.digest), inner);
    else await writeImage(layout, await index.image(child.digest), inner);
  }
  const raw = await index.rawManifest();
  const digest = await index.digest();
  await layout.writeBlob(raw, {
    expected: { digest, size: raw.length },
    ...(opts.beforeCommit ? { beforeCommit: opts.beforeCommit } : {}),
  });
  const desc: Descriptor = { mediaType: (await index.mediaType()) || MediaType.ociIndex, digest, size: raw.length };
  if (opts.refName !== undefined || opts.annotations) await layout.addManifest(desc, pick(opts));
  return desc;
}

function pick(opts: WriteImageOptions): { refName?: string; annotations?: Record<string, string> } {
  const out: { refName?: string; annotations?: Record<string, string> } = {};
  if (opts.refName !== undefined) out.refName = opts.refName;
  if (opts.annotations) out.annotations = opts.annotations;
  return out;
}
