/**
 * Pushing an image (or an index and its images) to a registry: blobs first — layers in parallel,
 * then the config — and the manifest last with its exact media type, so the registry never holds a
 * manifest that names a missing blob. An index goes after all its children, each put by digest.
 *
 * Layers leave the store gzip-compressed: an uncompressed layer is swapped for the store's gzip
 * variant (`store.compressedLayer`, made once and remembered), and the manifest is rewritten to list
 * the compressed descriptors. That is a new manifest with its own digest, which the store records as
 * `repo@<pushed digest>` (docker's "repo digest"), leaving the name's local image as it was. Since
 * the compression is deterministic and remembered, pushing again yields the same bytes, so the
 * registry already has everything and nothing is sent twice.
 *
 * Per blob: HEAD (present → nothing to send), else a cross-repository mount when kiln has seen the
 * blob in another repository of the same registry, else an upload (see blobs.ts).
 */
import { Readable } from 'node:stream';
import pLimit from 'p-limit';
import { sha256, type Digest } from '../oci/digest.js';
import type { Image, ImageIndex, Layer } from '../oci/image.js';
import { LayoutIndex } from '../oci/layout/index.js';
import { MediaType, isIndexMediaType, layerCompression, layerMediaType } from '../oci/mediatypes.js';
import { repositoryName, type Reference } from '../oci/reference.js';
import type { Descriptor, Index, Manifest } from '../oci/types.js';
import type { Lease, Store } from '../store/index.js';
import { BlobRecord } from './blob-record.js';
import { uploadBlob, type UploadOptions, type UploadOutcome, type UploadSource } from './blobs.js';
import { Registries, type RegistryClient, type RegistryOptions } from './client.js';
import { RegistryProtocolError } from './errors.js';
import { headManifest, putManifest } from './manifest.js';
import { RemoteLayer, referenceOf } from './remote.js';
import { mountCandidates, storeUploadSource, streamUploadSource, type BlobOrigin } from './upload-sources.js';
import { repositoryScope } from './auth/authenticator.js';

/**
 * Progress of a push. A layer's events carry its `diffID`, the same in all of them, which is how
 * docker names layers in push output. `preparing` comes for every layer before any is compressed
 * (a large layer can take a while), so its `digest` and `size` are the layer's as stored; the later
 * events name the blob as pushed.
 */
export type PushEvent =
  | {
      type: 'blob';
      digest: Digest;
      kind: 'layer' | 'config';
      status: 'preparing' | 'pushing' | 'pushed' | 'exists' | 'mounted';
      size: number;
      from?: string;
      diffID?: Digest;
    }
  | { type: 'manifest'; digest: Digest; size: number; mediaType: string; reference: string; skipped: boolean };

export interface PushOptions extends RegistryOptions, Omit<UploadOptions, 'mountFrom'> {
  /**
   * The store the image comes from: uncompressed layers are pushed as its gzip variants, blobs are
   * read straight from its files, and the repositories blobs were seen in are remembered there.
   */
  store?: Store;
  /** Compression for layers that are stored uncompressed (default gzip; needs `store`). */
  compression?: 'gzip' | 'none';
  /** Blobs uploaded at once (default 5, as docker). */
  concurrency?: number;
  registries?: Registries;
  lease?: Lease;
  /** Record `repo@<pushed digest>` in the store (default true when a store is given). */
  recordDigest?: boolean;
  onEvent?: (event: PushEvent) => void;
}

export interface PushResult {
  reference: Reference;
  /** Digest of the manifest (or index) the registry now serves for the reference. */
  digest: Digest;
  size: number;
  mediaType: string;
  blobs: { pushed: number; mounted: number; existed: number };
}

interface PushContext {
  client: RegistryClient;
  repository: string;
  opts: PushOptions;
  lease: Lease | undefined;
  record: BlobRecord | undefined;
  limit: ReturnType<typeof pLimit>;
  /** One upload per digest per push, however many images share it. */
  uploads: Map<Digest, Promise<UploadOutcome>>;
  counts: PushResult['blobs'];
  emit: (e: PushEvent) => void;
  /** Manifests written to the store (for recording the pushed digest). */
  storeWrites: Array<{ raw: Buffer; digest: Digest }>;
}

function isImageIndex(x: Image | ImageIndex): x is ImageIndex {
  return typeof (x as ImageIndex).indexManifest === 'function';
}

/** Pushes `image` (or an index with its images) as `ref`. */
export async function pushImage(image: Image | ImageIndex, ref: string | Reference, opts: PushOptions = {}): Promise<PushResult> {
  const reference = referenceOf(ref);
  const registries = opts.registries ?? new Registries(opts);
  const lease = opts.store ? (opts.lease ?? (await opts.store.createLease({ label: `push ${repositoryName(reference)}` }))) : undefined;
  try {
    const ctx: PushContext = {
      client: registries.get(reference.domain),
      repository: reference.path,
      opts,
      lease,
      record: opts.store ? await BlobRecord.open(opts.store.root, opts.store.tmpDir) : undefined,
      limit: pLimit(opts.concurrency ?? 5),
      uploads: new Map(),
      counts: { pushed: 0, mounted: 0, existed: 0 },
      emit: opts.onEvent ?? (() => undefined),
      storeWrites: [],
    };
    const target = reference.tag ?? reference.digest ?? 'latest';
    const pushed = isImageIndex(image) ? await pushIndexDoc(ctx, image, target) : await pushImageDoc(ctx, image, target);
    if (reference.digest && !reference.tag && pushed.digest !== reference.digest) {
      throw new RegistryProtocolError(`the image's digest is ${pushed.digest}, not the ${reference.digest} the reference names`, { registry: reference.domain });
    }
    if (opts.store && opts.recordDigest !== false) await recordPushed(opts.store, reference, pushed, ctx, lease);
    await ctx.record?.save().catch(() => undefined);
    return { reference, digest: pushed.digest, size: pushed.size, mediaType: pushed.mediaType, blobs: ctx.counts };
  } finally {
    if (lease && !opts.lease) await lease.release();
    if (!opts.registries) await registries.close();
  }
}

/** Names the pushed manifest `repo@digest` in the store (its blobs are all there: they were just pushed from it). */
async function recordPushed(store: Store, reference: Reference, pushed: Descriptor, ctx: PushContext, lease: Lease | undefined): Promise<void> {
  for (const w of ctx.storeWrites) await store.writeBlob(w.raw, { expected: { digest: w.digest, size: w.raw.length }, ...(lease ? { lease } : {}) });
  // Only when every blob the manifest names is in the store (an image pushed from elsewhere may not be).
  const complete = async (desc: Descriptor): Promise<boolean> => {
    if (!(await store.hasBlob(desc.digest))) return false;
    const doc = JSON.parse((await store.readBlob(desc)).toString('utf8')) as Partial<Manifest & Index>;
    if (Array.isArray(doc.manifests)) {
      for (const m of doc.manifests) if (!(await complete(m))) return false;
      return true;
    }
    for (const d of [doc.config, ...(doc.layers ?? [])]) if (d && !(await store.hasBlob(d.digest))) return false;
    return true;
  };
  if (!(await complete(pushed))) return;
  const name = `${repositoryName(reference)}@${pushed.digest}`;
  const source = isIndexMediaType(pushed.mediaType) ? new LayoutIndex(store.layout, pushed) : await store.resolve(pushed.digest);
  await store.putImage(source, { names: [name], ...(lease ? { lease } : {}) });
}

/** The blob to push for one layer and its descriptor in the pushed manifest. */
async function layerSource(ctx: PushContext, layer: Layer, desc: Descriptor, docker: boolean): Promise<{ desc: Descriptor; source: UploadSource; mountFrom: string[] }> {
  const store = ctx.opts.store;
  let out: Descriptor = desc;
  const compression = layerCompression(desc.mediaType);
  if (store && compression === 'none' && (ctx.opts.compression ?? 'gzip') === 'gzip') {
    const diffID = await layer.diffID();
    if (!(await store.hasBlob(diffID))) {
      // An image from elsewhere: bring the layer in so the store can compress it (and remember that).
      await store.writeBlob(await layer.uncompressed(), { expected: { digest: diffID }, ...(ctx.lease ? { lease: ctx.lease } : {}) });
    }
    const gz = await store.compressedLayer(diffID, 'gzip', ctx.lease ? { lease: ctx.lease } : {});
    out = { ...desc, mediaType: layerMediaType('gzip', docker ? 'docker' : 'oci'), digest: gz.digest, size: gz.size };
  }
  const origins: BlobOrigin[] = [];
  if (layer instanceof RemoteLayer && out.digest === desc.digest) origins.push({ registry: layer.client.registry, repository: layer.repository });
  for (const repository of ctx.record?.repositories(out.digest, ctx.client.registry) ?? []) origins.push({ registry: ctx.client.registry, repository });
  const mountFrom = mountCandidates(ctx.client, ctx.repository, origins);
  const source = await blobSource(ctx, out, () => layer.compressed());
  return { desc: out, source, mountFrom };
}

/** Reads a blob from the store's file when it is there (ranges without re-reading), else from `open`. */
async function blobSource(ctx: PushContext, desc: Descriptor, open: () => Promise<Readable>): Promise<UploadSource> {
  const store = ctx.opts.store;
  if (store && (await store.hasBlob(desc.digest))) return storeUploadSource(store, desc);
  return streamUploadSource(desc, open);
}

async function pushBlob(ctx: PushContext, kind: 'layer' | 'config', source: UploadSource, mountFrom: string[], diffID?: Digest): Promise<void> {
  let running = ctx.uploads.get(source.digest);
  if (!running) {
    const named = diffID ? { diffID } : {};
    running = ctx.limit(async () => {
      ctx.emit({ type: 'blob', digest: source.digest, kind, status: 'pushing', size: source.size, ...named });
      const upload: UploadOptions = { mountFrom };
      if (ctx.opts.monolithicMax !== undefined) upload.monolithicMax = ctx.opts.monolithicMax;
      if (ctx.opts.chunkSize !== undefined) upload.chunkSize = ctx.opts.chunkSize;
      const outcome = await uploadBlob(ctx.client, ctx.repository, source, upload);
      if (outcome.kind === 'exists') ctx.counts.existed++;
      else if (outcome.kind === 'mounted') ctx.counts.mounted++;
      else ctx.counts.pushed++;
      ctx.emit({
        type: 'blob',
        digest: source.digest,
        kind,
        status: outcome.kind === 'exists' ? 'exists' : outcome.kind === 'mounted' ? 'mounted' : 'pushed',
        size: source.size,
        ...(outcome.kind === 'mounted' ? { from: outcome.from } : {}),
        ...named,
      });
      ctx.record?.add(source.digest, ctx.client.registry, ctx.repository);
      return outcome;
    });
    ctx.uploads.set(source.digest, running);
  }
  await running;
}

/** Pushes one image's blobs and manifest; `target` is the tag or digest to put it under. */
async function pushImageDoc(ctx: PushContext, image: Image, target: string): Promise<Descriptor> {
  const manifest = await image.manifest();
  const layers = await image.layers();
  if (layers.length !== manifest.layers.length) {
    throw new RegistryProtocolError(`the image has ${manifest.layers.length} layer descriptors but ${layers.length} layers`, { registry: ctx.client.registry });
  }
  const mediaType = await image.mediaType();
  const docker = mediaType === MediaType.dockerManifest;
  const diffIDs = await Promise.all(layers.map((layer) => layer.diffID()));
  // Said before compressing: gzipping a large stored layer is most of a first push's time.
  const announced = new Set<Digest>();
  diffIDs.forEach((diffID, i) => {
    if (announced.has(diffID)) return;
    announced.add(diffID);
    const desc = manifest.layers[i]!;
    ctx.emit({ type: 'blob', digest: desc.digest, kind: 'layer', status: 'preparing', size: desc.size, diffID });
  });
  // Compression runs under the same limit as uploads, so a large image does not compress everything at once.
  const prepared = await Promise.all(layers.map((layer, i) => ctx.limit(() => layerSource(ctx, layer, manifest.layers[i]!, docker))));
  await Promise.all(prepared.map((p, i) => pushBlob(ctx, 'layer', p.source, p.mountFrom, diffIDs[i])));
  const rawConfig = await image.rawConfigFile();
  const configSource = await blobSource(ctx, manifest.config, async () => Readable.from([rawConfig]));
  const configFrom = ctx.record?.repositories(manifest.config.digest, ctx.client.registry).filter((r) => r !== ctx.repository) ?? [];
  await pushBlob(ctx, 'config', configSource, configFrom);

  const changed = prepared.some((p, i) => p.desc.digest !== manifest.layers[i]!.digest);
  const raw = changed ? Buffer.from(JSON.stringify({ ...manifest, layers: prepared.map((p) => p.desc) })) : await image.rawManifest();
  const digest = changed ? sha256(raw) : await image.digest();
  if (changed) ctx.storeWrites.push({ raw, digest });
  await putDocument(ctx, raw, digest, mediaType, target);
  return { mediaType, digest, size: raw.length };
}

/** Pushes every child of an index (by digest), then the index itself. */
async function pushIndexDoc(ctx: PushContext, index: ImageIndex, target: string): Promise<Descriptor> {
  const doc = await index.indexManifest();
  const children: Descriptor[] = [];
  for (const child of doc.manifests) {
    const pushed = isIndexMediaType(child.mediaType)
      ? await pushIndexDoc(ctx, await index.imageIndex(child.digest), child.digest)
      : await pushImageDoc(ctx, await index.image(child.digest), child.digest);
    children.push({ ...child, mediaType: pushed.mediaType, digest: pushed.digest, size: pushed.size });
  }
  const changed = children.some((c, i) => c.digest !== doc.manifests[i]!.digest);
  const mediaType = (await index.mediaType()) || MediaType.ociIndex;
  const raw = changed ? Buffer.from(JSON.stringify({ ...doc, manifests: children })) : await index.rawManifest();
  const digest = changed ? sha256(raw) : await index.digest();
  if (changed) ctx.storeWrites.push({ raw, digest });
  await putDocument(ctx, raw, digest, mediaType, target);
  return { mediaType, digest, size: raw.length };
}

/** PUTs a manifest unless the registry already serves exactly it under `target`. */
async function putDocument(ctx: PushContext, raw: Buffer, digest: Digest, mediaType: string, target: string): Promise<void> {
  // A child pushed by digest under a changed manifest would carry a stale digest; push by the new one.
  const ref = target.startsWith('sha256:') ? digest : target;
  const have = await headManifest(ctx.client, ctx.repository, ref, [repositoryScope(ctx.repository, 'pull,push')]);
  const skipped = have?.digest === digest;
  if (!skipped) await putManifest(ctx.client, ctx.repository, ref, raw, mediaType);
  ctx.emit({ type: 'manifest', digest, size: raw.length, mediaType, reference: ref, skipped });
}
