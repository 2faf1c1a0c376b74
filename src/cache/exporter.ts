/**
 * `--cache-to`: the build's steps leave for registries and directories while the build runs.
 *
 * Each step hands its record to the exporter as soon as its layer is committed (or found cached);
 * the exporter compresses the layer (the store remembers the result, so an image push later sends
 * the same blob) and sends it to every target at once, under a small concurrency limit. A registry
 * is asked first (HEAD) and a blob that is already there costs nothing; a blob kiln imported from
 * another repository of the same registry is mounted from there instead of uploaded; a layer that
 * was imported but never needed locally is streamed from where it came, never unpacked. Uploads
 * use the registry client, so they retry and resume as image pushes do.
 *
 * What the build ends with is only the cache config (the records) and the manifest naming every
 * blob; each step's transfer is reported with its bytes and time as it finishes.
 */
import { resolve as resolvePath } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import pLimit from 'p-limit';
import { KilnError } from '../errors.js';
import { sha256, type Digest } from '../oci/digest.js';
import { MediaType } from '../oci/mediatypes.js';
import { Annotation, type Descriptor, type Manifest } from '../oci/types.js';
import type { Lease, Store } from '../store/index.js';
import type { Registries, UploadSource } from '../registry/index.js';
import { mountCandidates, storeUploadSource, streamUploadSource, type BlobOrigin } from '../registry/upload-sources.js';
import { CacheMediaType, type CacheConfig, type CacheMountEntry, type CacheRecordEntry } from './format.js';
import type { CacheImporter } from './importer.js';
import type { CacheMode, CacheToSpec } from './spec.js';

/** One committed step, as the engine reports it. */
export interface ExportStep {
  key: Digest;
  record: unknown;
  step: string;
  empty: boolean;
  layer: { desc: Descriptor; diffID: Digest };
  /** The stage filesystem's layers after the step, base first (the step's own is the last). */
  chain: ReadonlyArray<{ diffID: Digest }>;
  stage: number;
  /** The progress name of the step (`[build 2/4] RUN make`). */
  name: string;
  /**
   * A step looked up by another key than `key` (a COPY --from=STAGE, see CopyContentKey): that key and
   * its record, exported too, leading to `key`, so an importing build finds the step without running it.
   */
  lookup?: { key: Digest; record: unknown };
}

export interface ExportEvent {
  target: string;
  step: string;
  digest: Digest;
  bytes: number;
  status: 'pushed' | 'exists' | 'mounted' | 'written';
  durationMs: number;
}

export interface ExportOptions {
  store: Store;
  lease: Lease;
  registries: Registries;
  importer?: CacheImporter;
  /** Stages whose steps are in the final image (mode=min, inline). */
  finalStages: ReadonlySet<number>;
  onTransfer: (e: ExportEvent) => void;
  warn: (message: string) => void;
}

/** A compressed blob to send and how to read it. */
interface BlobToSend {
  desc: Descriptor;
  source: UploadSource;
  /** A registry repository that holds it (to mount from). */
  origin?: BlobOrigin;
}

interface Target {
  label: string;
  mode: CacheMode;
  spec: Extract<CacheToSpec, { type: 'registry' | 'local' }>;
  put(blob: BlobToSend): Promise<{ status: ExportEvent['status']; bytes: number }>;
  commit(config: Buffer, manifest: Buffer): Promise<Digest>;
}

interface Exported {
  entry: Omit<CacheRecordEntry, 'layer' | 'chain'> & { chain: Digest[] };
  stage: number;
  blob: Promise<Descriptor>;
}

export class CacheExporter {
  private readonly limit = pLimit(4);
  private readonly steps = new Map<Digest, Exported>();
  private readonly blobs = new Map<Digest, Promise<BlobToSend>>();
  private readonly sent = new Map<string, Promise<void>>();
  private readonly mountIds = new Set<string>();
  /** Transfer failures per target label. */
  private readonly failures = new Map<string, unknown>();
  /** Every transfer started, awaited before the manifests are written. */
  private readonly pending: Array<Promise<unknown>> = [];

  private constructor(
    private readonly targets: Target[],
    private readonly inline: boolean,
    private readonly opts: ExportOptions,
  ) {}

  static async create(specs: readonly CacheToSpec[], opts: ExportOptions): Promise<CacheExporter> {
    const targets: Target[] = [];
    for (const spec of specs) {
      if (spec.type === 'registry') targets.push(await registryTarget(spec, opts.registries));
      else if (spec.type === 'local') targets.push(await localTarget(spec));
    }
    return new CacheExporter(targets, specs.some((s) => s.type === 'inline'), opts);
  }

  get labels(): string[] {
    return this.targets.map((t) => t.label);
  }

  /** Whether layers leave the store (so are worth compressing as they are written). */
  get sendsLayers(): boolean {
    return this.targets.length > 0;
  }

  /** Records a committed step and starts sending its layer to the targets that want it. */
  step(s: ExportStep): void {
    const rec = s.record as { kind?: string; mounts?: Array<Record<string, unknown>> };
    if (rec?.kind === 'run') {
      for (const m of rec.mounts ?? []) if (m.type === 'cache') this.mountIds.add(String(m.cacheId || m.target));
    }
    const final = this.opts.finalStages.has(s.stage);
    const seen = this.steps.get(s.key);
    // The same step in two stages: it counts as the final stage's when either is.
    if (seen && (this.opts.finalStages.has(seen.stage) || !final)) return;
    const wanting = this.targets.filter((t) => (t.mode === 'max' && !seen) || final);
    const blob = wanting.length > 0 ? this.prepare(s.layer.diffID) : undefined;
    const entry = { key: s.key, record: s.record, step: s.step, empty: s.empty, diffID: s.layer.diffID, size: s.layer.desc.size, chain: s.chain.map((l) => l.diffID) };
    const desc = blob ? blob.then((b) => b.desc) : Promise.resolve(s.layer.desc);
    desc.catch(() => undefined); // a failure is reported by the transfer that needed it
    this.steps.set(s.key, { entry, stage: s.stage, blob: desc });
    if (s.lookup) this.steps.set(s.lookup.key, { entry: { ...entry, key: s.lookup.key, record: s.lookup.record, resultKey: s.key }, stage: s.stage, blob: desc });
    const committed = Date.now();
    if (blob) for (const t of wanting) this.track(this.send(t, s.name, blob, committed), t);
  }

  private track(p: Promise<unknown>, target: Target): void {
    this.pending.push(p);
    p.catch((err: unknown) => {
      if (!this.failures.has(target.label)) this.failures.set(target.label, err);
    });
  }

  /** The layer's gzip blob: from the store (compressed once, remembered), else from the cache it was imported from. */
  private prepare(diffID: Digest): Promise<BlobToSend> {
    let p = this.blobs.get(diffID);
    if (!p) {
      p = this.limit(async () => {
        const { store, lease, importer } = this.opts;
        const remote = importer?.remoteLayer(diffID);
        if (!(await store.hasBlob(diffID)) && remote && !(await store.hasBlob(remote.blob.digest))) {
          const origin = remote.origin;
          return {
            desc: remote.blob,
            source: streamUploadSource(remote.blob, () => origin.open(remote.blob)),
            ...(origin.registry ? { origin: { registry: origin.registry.client.registry, repository: origin.registry.repository } } : {}),
          };
        }
        const desc = await store.compressedLayer(diffID, 'gzip', { lease });
        return storeBlob(store, desc, remote?.origin.registry ? { registry: remote.origin.registry.client.registry, repository: remote.origin.registry.repository } : undefined);
      });
      this.blobs.set(diffID, p);
    }
    return p;
  }

  /** Sends a step's blob to one target; the time reported runs from the step's commit (compression included). */
  private send(target: Target, name: string, blob: Promise<BlobToSend>, committed: number): Promise<void> {
    return blob.then((b) => {
      const id = `${target.label}\u0000${b.desc.digest}`;
      let p = this.sent.get(id);
      if (!p) {
        p = this.limit(async () => {
          const r = await target.put(b);
          this.opts.onTransfer({ target: target.label, step: name, digest: b.desc.digest, bytes: r.bytes, status: r.status, durationMs: Date.now() - committed });
        });
        this.sent.set(id, p);
      }
      return p;
    });
  }

  /**
   * Waits for every transfer, then writes each target's cache manifest. Answers the inline cache
   * for the final image (its records indexing `finalLayers`) when `type=inline` was asked for.
   */
  async finish(finalLayers: ReadonlyArray<{ diffID: Digest }>, log: (target: string, line: string) => void): Promise<{ inline?: CacheConfig }> {
    await Promise.allSettled(this.pending);
    for (const target of this.targets) {
      try {
        await this.commit(target, log);
      } catch (err) {
        // ignore-error=true (buildx's option): a cache that could not be written is a warning.
        if (!target.spec.ignoreError) throw exportError(err);
        this.opts.warn(`cache export to ${target.label} failed: ${exportError(err).message.replace(/^cache export failed: /, '')}`);
      }
    }
    if (!this.inline) return {};
    // Inline: the final stage's steps whose layer sits where the final image has it.
    const records: CacheRecordEntry[] = [];
    for (const s of this.steps.values()) {
      if (!this.opts.finalStages.has(s.stage)) continue;
      const at = s.entry.chain.length - 1;
      if (at < 0 || finalLayers[at]?.diffID !== s.entry.diffID) continue;
      if (!s.entry.chain.every((d, i) => finalLayers[i]?.diffID === d)) continue;
      records.push({ ...s.entry, layer: at, chain: s.entry.chain.map((d, i) => ({ diffID: d, layer: i })) });
    }
    return { inline: { version: 1, records, mounts: [] } };
  }


  /** Writes one target's cache manifest once its blobs are all there. */
  private async commit(target: Target, log: (target: string, line: string) => void): Promise<void> {
    const failed = this.failures.get(target.label);
    if (failed !== undefined) throw failed;
    // Sorted by key: the same steps give the same config and manifest, which then cost nothing to send.
    const chosen = [...this.steps.values()]
      .filter((s) => target.mode === 'max' || this.opts.finalStages.has(s.stage))
      .sort((x, y) => (x.entry.key < y.entry.key ? -1 : x.entry.key > y.entry.key ? 1 : 0));
    const layers: Descriptor[] = [];
    const index = new Map<Digest, number>();
    const records: CacheRecordEntry[] = [];
    for (const s of chosen) {
      const desc = await s.blob;
      if (!index.has(desc.digest)) {
        index.set(desc.digest, layers.length);
        layers.push({ mediaType: desc.mediaType, digest: desc.digest, size: desc.size });
      }
      records.push({ ...s.entry, layer: index.get(desc.digest)!, chain: [] });
    }
    // Each chain element names the cache's layer for it when the cache has one.
    const byDiff = new Map<Digest, number>();
    for (const r of records) byDiff.set(r.diffID, r.layer);
    for (const r of records) {
      const s = this.steps.get(r.key)!;
      r.chain = s.entry.chain.map((d) => (byDiff.has(d) ? { diffID: d, layer: byDiff.get(d)! } : { diffID: d }));
    }
    const mounts: CacheMountEntry[] = [];
    if (target.spec.mounts) {
      const { exportMount } = await import('./mounts.js');
      for (const id of [...this.mountIds].sort()) {
        const m = await exportMount(this.opts.store, id, target.spec.mountsMaxSize, this.opts.lease);
        if (m.kind === 'skipped') {
          this.opts.warn(`cache mount ${id} not exported: ${m.reason}`);
          continue;
        }
        const desc: Descriptor = { mediaType: CacheMediaType.mount, digest: m.digest, size: m.size };
        const started = Date.now();
        const r = await target.put(storeBlob(this.opts.store, desc));
        this.opts.onTransfer({ target: target.label, step: `cache mount ${id}`, digest: m.digest, bytes: r.bytes, status: r.status, durationMs: Date.now() - started });
        mounts.push({ id, layer: layers.length, size: m.files });
        layers.push(desc);
      }
    }
    const config: CacheConfig = { version: 1, records, mounts };
    const rawConfig = Buffer.from(JSON.stringify(config));
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: CacheMediaType.config, digest: sha256(rawConfig), size: rawConfig.length },
      layers,
    };
    const digest = await target.commit(rawConfig, Buffer.from(JSON.stringify(manifest)));
    log(target.label, `exported ${records.length} cache records${mounts.length ? ` and ${mounts.length} cache mounts` : ''} to ${target.label} (${digest})`);
  }

  /** Lets pending transfers fail quietly (the build failed; nothing will be committed). */
  abandon(): void {
    this.failures.clear();
  }
}

function exportError(err: unknown): KilnError {
  if (err instanceof KilnError) return new KilnError('CACHE_EXPORT_FAILED', `cache export failed: ${err.message}`, { cause: err, ...(err.hint ? { hint: err.hint } : {}) });
  return new KilnError('CACHE_EXPORT_FAILED', `cache export failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

function storeBlob(store: Store, desc: Descriptor, origin?: BlobOrigin): BlobToSend {
  return { desc, source: storeUploadSource(store, desc), ...(origin ? { origin } : {}) };
}

async function registryTarget(spec: Extract<CacheToSpec, { type: 'registry' }>, registries: Registries): Promise<Target> {
  const { normalizeReference } = await import('../oci/reference.js');
  const { uploadBlob, putManifest } = await import('../registry/index.js');
  const ref = normalizeReference(spec.ref);
  const client = registries.get(ref.domain);
  const repository = ref.path;
  return {
    label: spec.ref,
    mode: spec.mode,
    spec,
    async put(blob) {
      const mountFrom = mountCandidates(client, repository, blob.origin ? [blob.origin] : []);
      const outcome = await uploadBlob(client, repository, blob.source, { mountFrom });
      if (outcome.kind === 'exists') return { status: 'exists', bytes: 0 };
      if (outcome.kind === 'mounted') return { status: 'mounted', bytes: 0 };
      return { status: 'pushed', bytes: blob.desc.size };
    },
    async commit(config, manifest) {
      const configDigest = sha256(config);
      await uploadBlob(client, repository, streamUploadSource({ digest: configDigest, size: config.length }, async () => Readable.from([config])));
      return putManifest(client, repository, ref.digest ?? ref.tag ?? 'latest', manifest, MediaType.ociManifest);
    },
  };
}

async function localTarget(spec: Extract<CacheToSpec, { type: 'local' }>): Promise<Target> {
  const { OciLayout } = await import('../oci/layout/index.js');
  const layout = await OciLayout.open(resolvePath(spec.dest), { create: true });
  return {
    label: spec.dest,
    mode: spec.mode,
    spec,
    async put(blob) {
      if (await layout.hasBlob(blob.desc.digest)) return { status: 'exists', bytes: 0 };
      await layout.writeBlob(await blob.source.open(0), { expected: { digest: blob.desc.digest, size: blob.desc.size } });
      return { status: 'written', bytes: blob.desc.size };
    },
    async commit(config, manifest) {
      await layout.writeBlob(config, { expected: { digest: sha256(config), size: config.length } });
      const written = await layout.writeBlob(manifest);
      const desc: Descriptor = { mediaType: MediaType.ociManifest, digest: written.digest, size: written.size };
      // One cache per directory: the new manifest replaces the previous one.
      await layout.updateIndex((index) => ({ ...index, manifests: [{ ...desc, annotations: { [Annotation.refName]: 'latest' } }] }));
      return written.digest;
    },
  };
}

/**
 * Stores a layer tar as it is produced and, in the same pass, its gzip variant (recorded as the
 * layer's, so the export finds it made): compression overlaps the step instead of following it.
 */
export async function writeLayerCompressed(store: Store, tar: Readable, lease: Lease): Promise<{ digest: Digest; size: number }> {
  const { defaultLayerCodec } = await import('../store/index.js');
  const { layerMediaType } = await import('../oci/mediatypes.js');
  const codec = await defaultLayerCodec();
  const plain = new PassThrough();
  const forGzip = new PassThrough();
  tar.pipe(plain);
  tar.pipe(forGzip);
  const fail = (err: Error): void => {
    plain.destroy(err);
    forGzip.destroy(err);
  };
  tar.on('error', fail);
  try {
    const [written, gz] = await Promise.all([store.writeBlob(plain, { lease }), store.writeBlob(await codec.compress(forGzip, 'gzip'), { lease })]);
    await store.recordCompressed({ diffID: written.digest, compression: 'gzip', digest: gz.digest, size: gz.size, mediaType: layerMediaType('gzip'), uncompressedSize: written.size });
    return written;
  } catch (err) {
    tar.destroy();
    fail(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
}
