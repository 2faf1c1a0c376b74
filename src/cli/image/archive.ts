/**
 * `kiln save` and `kiln load`: images to and from docker-archive and OCI archive tars.
 *
 * Loading is all or nothing. Every blob of every image in the archive is first written into the
 * store (each verified against its digest and size, each layer's uncompressed content against the
 * config's diffID), pinned by a lease so a concurrent prune cannot remove it; only then are the
 * images named. A damaged archive therefore adds no image, and a load that is killed leaves only
 * unreferenced blobs, an expired lease and temp files of a dead process, all of which the next
 * `kiln prune` removes.
 */
import { openStoreForCommand } from '../store.js';
import { PassThrough, Readable, Transform, Writable, pipeline as streamPipeline } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { KilnError, UsageError } from '../../errors.js';
import type { Digest } from '../../oci/digest.js';
import type { Image, Layer } from '../../oci/image.js';
import { decompress } from '../../oci/layer/index.js';
import { BlobVerificationError, LayoutLayer, VerifyingStream } from '../../oci/layout/index.js';
import { MediaType, type Compression } from '../../oci/mediatypes.js';
import { parsePlatform } from '../../oci/platform.js';
import { formatReference, normalizeName, parseReference } from '../../oci/reference.js';
import { type Lease, type Store } from '../../store/index.js';
import { Catalog } from './catalog.js';
import { ArchiveError } from './errors.js';
import { checkInputFile, withStoreWorkDir, writeFileAtomically, writeToStdout } from './io.js';
import { displayRef, familiar } from './names.js';

export interface SaveOptions {
  output?: string;
  format: string;
  compression?: string;
  platform?: string;
}

interface NamedImage {
  image: Image;
  names: string[];
}

/**
 * The images `refs` name, with the names to record for them. A repository without a tag
 * (`kiln save busybox`) stands for every stored tag of it, as `docker save` does; an image named by
 * ID is saved without names.
 */
async function selectForSave(catalog: Catalog, refs: string[]): Promise<NamedImage[]> {
  const byDigest = new Map<Digest, NamedImage>();
  const add = (image: Image, digest: Digest, name: string | undefined): void => {
    let entry = byDigest.get(digest);
    if (!entry) {
      entry = { image, names: [] };
      byDigest.set(digest, entry);
    }
    if (name && !entry.names.includes(name)) entry.names.push(name);
  };
  for (const ref of refs) {
    const repository = repositoryOnly(ref);
    if (repository) {
      let matched = false;
      for (const rec of await catalog.records()) {
        for (const name of rec.names) {
          if (!name.startsWith(`${repository}:`) || name.includes('@')) continue;
          const info = await catalog.describe(rec);
          if (info.problem || !info.image) throw info.problem ?? new ArchiveError(`${familiar(name)}: cannot read the image`);
          add(info.image, rec.digest, name);
          matched = true;
        }
      }
      if (matched) continue;
    }
    const { image, name } = await catalog.find(ref, 'save', displayRef(ref));
    if (image.problem || !image.image) throw image.problem ?? new ArchiveError(`${ref}: cannot read the image`);
    add(image.image, image.record.digest, name);
  }
  return [...byDigest.values()];
}

/** `docker.io/library/busybox` for `busybox`; undefined when the reference has a tag or digest. */
function repositoryOnly(ref: string): string | undefined {
  try {
    const parsed = parseReference(ref);
    if (parsed.tag !== undefined || parsed.digest !== undefined) return undefined;
    return formatReference(parsed);
  } catch {
    return undefined;
  }
}

export async function runSave(root: string, refs: string[], options: SaveOptions): Promise<void> {
  const format = options.format.toLowerCase();
  if (format !== 'docker' && format !== 'oci') throw new UsageError(`invalid --format "${options.format}": expected docker or oci`);
  const compression = (options.compression ?? 'none').toLowerCase();
  if (compression !== 'none' && compression !== 'gzip' && compression !== 'zstd') {
    throw new UsageError(`invalid --compression "${options.compression}": expected none, gzip or zstd`);
  }
  if (options.compression !== undefined && format !== 'oci') {
    throw new UsageError('--compression applies to --format oci only (docker-archives hold uncompressed layers)');
  }
  if (!options.output && process.stdout.isTTY) {
    throw new UsageError('cowardly refusing to save to a terminal. Use the -o flag or redirect');
  }
  const store = await openStoreForCommand(root);
  const catalog = new Catalog(store, options.platform ? parsePlatform(options.platform) : undefined);
  const images = await selectForSave(catalog, refs);
  const formats = await import('../../oci/formats/index.js');
  const save = async (work: string, lease: Lease): Promise<void> => {
    // Pinned while they are read, so a prune or rmi running meanwhile cannot pull them away.
    for (const { image } of images) {
      const manifest = await image.manifest();
      await lease.add(await image.digest(), manifest.config.digest, ...manifest.layers.map((l) => l.digest));
    }
    const common = { tmpDir: work, layerVariant: storeLayerVariant(store, lease) };
    const produce = (out: Writable): Promise<void> =>
      format === 'oci'
        ? formats.writeOciArchive(images, out, { ...common, compression: compression as Compression })
        : formats.writeDockerArchive(images, out, common);
    if (options.output) await writeFileAtomically(options.output, produce);
    else await writeToStdout(produce);
  };
  await withStoreWorkDir(store, 'save', (work) => store.withLease((lease) => save(work, lease), { label: 'save' }));
}

/**
 * Layers in another compression than stored come from the store when it has them (the
 * uncompressed blob, or a compressed variant it made and recorded before, or makes now and
 * keeps), so repeated saves do not compress the same layer again.
 */
function storeLayerVariant(store: Store, lease: Lease): (layer: Layer, compression: Compression) => Promise<Layer | undefined> {
  return async (layer, compression) => {
    const diffID = await layer.diffID();
    if (compression === 'none') {
      const size = await store.layout.blobSize(diffID);
      if (size === undefined) return undefined;
      await lease.add(diffID);
      return new LayoutLayer(store.layout, { mediaType: MediaType.ociLayer, digest: diffID, size }, diffID);
    }
    const desc = await store.compressedLayer(diffID, compression, { lease });
    return new LayoutLayer(store.layout, desc, diffID);
  };
}

export interface LoadOptions {
  input?: string;
  quiet?: boolean;
}

export async function runLoad(root: string, options: LoadOptions): Promise<void> {
  if (options.input === undefined && process.stdin.isTTY) {
    throw new UsageError('requested load from stdin, but stdin is empty', { hint: 'give the archive with -i FILE or redirect it to standard input' });
  }
  if (options.input !== undefined) await checkInputFile(options.input);
  const where = options.input ?? 'stdin';
  const store = await openStoreForCommand(root);
  const { readImageArchive } = await import('../../oci/formats/index.js');
  let storing = false;
  const load = async (work: string, lease: Lease): Promise<string[]> => {
    const archive = await readImageArchive(options.input ?? process.stdin, { tmpDir: work, name: where });
    try {
      if (!archive.images.length) throw new ArchiveError(`${where}: the archive holds no images`);
      // Names are checked before anything is written, so a bad one cannot leave a partial load.
      const named = archive.images.map(({ image, names }) => ({ image, names: names.map((n) => archiveName(where, n)) }));
      storing = true;
      for (const { image } of named) await storeVerified(store, image, lease);
      const lines: string[] = [];
      for (const { image, names } of named) {
        await store.putImage(image, { names, lease });
        if (names.length) for (const n of names) lines.push(`Loaded image: ${familiar(n)}`);
        else lines.push(`Loaded image ID: ${await image.configName()}`);
      }
      return lines;
    } finally {
      await archive.close();
    }
  };
  let lines: string[];
  try {
    lines = await withStoreWorkDir(store, 'load', (work) => store.withLease((lease) => load(work, lease), { label: 'load' }));
  } catch (err) {
    // Blobs of the images that did verify are unreferenced now that the lease is gone: collect
    // them, so a failed load leaves the store as it found it.
    if (storing) await store.gc().catch(() => undefined);
    throw err;
  }
  process.stdout.write(lines.map((l) => `${l}\n`).join(''));
}

function archiveName(where: string, name: string): string {
  try {
    return normalizeName(name);
  } catch (err) {
    throw new ArchiveError(`${where}: the archive names an image "${name.slice(0, 200)}", which is not a valid reference`, { cause: err });
  }
}

/**
 * Writes an image's blobs into the store under `lease`, each checked against its descriptor, and
 * each layer's uncompressed bytes (compression told by the bytes) against the config's diffID. A
 * layer is checked while it is written: its blob only becomes visible once both its digest and its
 * diffID are right. A layer the store already has is checked from the store's copy. The manifest
 * goes last, so it never names a blob that is missing.
 */
async function storeVerified(store: Store, image: Image, lease: Lease): Promise<void> {
  const manifest = await image.manifest();
  const config = await image.configFile();
  const layers = await image.layers();
  const digest = await image.digest();
  const diffIDs = config.rootfs?.diff_ids ?? [];
  if (diffIDs.length !== manifest.layers.length || layers.length !== manifest.layers.length) {
    throw new ArchiveError(`image ${digest}: its manifest lists ${manifest.layers.length} layers but its config has ${diffIDs.length} diffIDs`);
  }
  for (const [i, desc] of manifest.layers.entries()) {
    const diffID = diffIDs[i]!;
    await lease.add(desc.digest, diffID);
    const expected = { expected: { digest: desc.digest, size: desc.size }, lease };
    try {
      if (desc.digest === diffID) {
        // Uncompressed: the digest check is the diffID check.
        await store.writeBlob(await layers[i]!.compressed(), expected);
      } else if (await store.hasBlob(desc.digest)) {
        await pipeline(diffIdCheck(await store.openBlob(desc), diffID, desc.digest), discard());
      } else {
        await store.writeBlob(diffIdGate(await layers[i]!.compressed(), diffID, desc.digest), expected);
      }
    } catch (err) {
      if (err instanceof DiffIdMismatch) {
        throw new ArchiveError(`image ${digest}: layer ${desc.digest} does not unpack to its diffID ${diffID}: ${err.message}`, {
          cause: err,
          hint: 'the archive is damaged or was written wrongly; save or copy the image again',
        });
      }
      throw err;
    }
  }
  await store.writeBlob(await image.rawConfigFile(), { expected: { digest: manifest.config.digest, size: manifest.config.size }, lease });
  const raw = await image.rawManifest();
  await store.writeBlob(raw, { expected: { digest, size: raw.length }, lease });
}

class DiffIdMismatch extends Error {}

/** The uncompressed content of `blob`, failing with DiffIdMismatch unless it hashes to `diffID`. */
function diffIdCheck(blob: Readable, diffID: Digest, digest: Digest): Readable {
  const verifier = new VerifyingStream(diffID, undefined, `layer ${digest}`);
  const out = new PassThrough();
  // `out` stays outside the pipeline so that it fails with the mapped error, not the raw one.
  streamPipeline(decompress(blob), verifier, (err) => {
    if (!err) return;
    const actual = err instanceof BlobVerificationError ? err.problem.actualDigest : undefined;
    out.destroy(actual ? new DiffIdMismatch(`it unpacks to ${actual}`) : err instanceof KilnError ? new DiffIdMismatch(err.message) : err);
  });
  verifier.pipe(out);
  return out;
}

/**
 * Passes `blob` through unchanged while a copy is decompressed and hashed; the stream ends only
 * once the uncompressed content has proved to be `diffID`, and fails otherwise, so a blob write
 * fed by it never commits a layer whose diffID is wrong.
 */
function diffIdGate(blob: Readable, diffID: Digest, digest: Digest): Readable {
  const copy = new PassThrough();
  const checked = pipeline(diffIdCheck(copy, diffID, digest), discard());
  const gate: Transform = new Transform({
    transform(chunk: Buffer, _enc, done) {
      if (copy.write(chunk)) done(null, chunk);
      else copy.once('drain', () => done(null, chunk));
    },
    flush(done) {
      copy.end();
      checked.then(() => done(), (err: Error) => done(err));
    },
  });
  // A copy that fails early (not gzip after all, say) stops the gate at once: nothing drains it.
  checked.catch((err: Error) => gate.destroy(err));
  streamPipeline(blob, gate, (err) => {
    if (err) copy.destroy(err);
  });
  return gate;
}

function discard(): Writable {
  return new Writable({ write: (_chunk, _enc, done) => done() });
}

