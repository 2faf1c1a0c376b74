/**
 * Writing images out: docker-archive (what `docker save` writes), OCI archive (a tar of an OCI
 * layout) and OCI layout directories.
 */
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline, type Readable, type Writable } from 'node:stream';
import { digestHex, sha256, type Digest } from '../digest.js';
import type { Image, Layer } from '../image.js';
import { OciLayout, VerifyingStream, writeImage } from '../layout/index.js';
import { MediaType, isManifestMediaType, layerCompression } from '../mediatypes.js';
import { parseReference } from '../reference.js';
import { Annotation, type Descriptor, type Index, type Manifest, type Platform } from '../types.js';
import { StaticImage } from './archive-image.js';
import { LayerConverter, hasDockerTypes, layerDescriptor, rebuiltManifest, tempFileMaterializer, type LayerCompressionOptions } from './convert.js';
import { ArchiveWriteError } from './errors.js';
import { dockerRepoTag, normalizedOrUndefined, unique } from './names.js';
import { ArchiveTarWriter } from './tarwriter.js';
import type { NamedImage } from './types.js';

export interface ArchiveStreamOptions {
  /** Where layers that must change form are held while the archive is written. Default: the OS temp dir. */
  tmpDir?: string;
  /** End `out` when the archive is complete (default true). */
  end?: boolean;
}

export interface DockerArchiveOptions extends ArchiveStreamOptions {
  /** A ready-made uncompressed form of a layer (the store's), instead of decompressing it here. */
  layerVariant?: LayerCompressionOptions['layerVariant'];
}

export interface OciWriteOptions extends LayerCompressionOptions {
  /** Rewrite manifests that use Docker media types to OCI ones (default false: keep them, and their digests). */
  ociMediaTypes?: boolean;
}

export type OciArchiveOptions = OciWriteOptions & ArchiveStreamOptions;

const LAYOUT_FILE = JSON.stringify({ imageLayoutVersion: '1.0.0' });

/** An image in its exported form: the documents to write and the layers with their final descriptors. */
interface PlannedImage {
  rawManifest: Buffer;
  manifestDigest: Digest;
  mediaType: string;
  rawConfig: Buffer;
  layers: Layer[];
  platform: Platform | undefined;
}

async function platformOf(image: Image): Promise<Platform | undefined> {
  try {
    const c = await image.configFile();
    const p: Platform = { architecture: c.architecture, os: c.os };
    if (c.variant) p.variant = c.variant;
    return p.architecture && p.os ? p : undefined;
  } catch {
    return undefined;
  }
}

async function withTempDir<T>(base: string | undefined, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await fsp.mkdtemp(join(base ?? tmpdir(), 'kiln-export-'));
  try {
    return await fn(dir);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/**
 * Plans an image for an OCI destination: layers converted by `converter` where the options say so,
 * the original manifest kept byte for byte when nothing changed.
 */
async function planOci(image: Image, converter: LayerConverter, opts: OciWriteOptions): Promise<PlannedImage> {
  const manifest = await image.manifest();
  const mediaType = await image.mediaType();
  if (!isManifestMediaType(mediaType)) throw new ArchiveWriteError(`image ${await image.digest()} has media type ${mediaType}, which is not an image manifest`);
  const layers = await image.layers();
  if (layers.length !== manifest.layers.length) throw new ArchiveWriteError(`image ${await image.digest()} has ${manifest.layers.length} layer descriptors but ${layers.length} layers`);
  const out: Layer[] = [];
  const descs: Descriptor[] = [];
  let changed = false;
  for (const [i, layer] of layers.entries()) {
    const target = converter.target(manifest.layers[i]!.mediaType);
    const converted = target === undefined ? layer : await converter.convert(layer, target);
    const desc = await layerDescriptor(converted, manifest.layers[i]);
    if (desc !== manifest.layers[i]) changed = true;
    out.push(converted);
    descs.push(desc);
  }
  const rawConfig = await image.rawConfigFile();
  if (!changed && !(opts.ociMediaTypes && hasDockerTypes(manifest, mediaType))) {
    return { rawManifest: await image.rawManifest(), manifestDigest: await image.digest(), mediaType, rawConfig, layers: out, platform: await platformOf(image) };
  }
  const m = rebuiltManifest(manifest, descs);
  const raw = Buffer.from(JSON.stringify(m));
  return { rawManifest: raw, manifestDigest: sha256(raw), mediaType: MediaType.ociManifest, rawConfig, layers: out, platform: await platformOf(image) };
}

/** The OCI ref name of an image named `full`: its tag, as the OCI spec and containerd have it. */
function ociRefName(full: string): string {
  return parseReference(full).tag ?? full;
}

/** An index.json entry for an image under `name` (the full name for containerd, `refName` of it for OCI). */
function indexEntry(p: PlannedImage, name: string | undefined, refName: (full: string) => string): Descriptor {
  const d: Descriptor = { mediaType: p.mediaType, digest: p.manifestDigest, size: p.rawManifest.length };
  if (name) d.annotations = { [Annotation.containerdImageName]: name, [Annotation.refName]: refName(name) };
  return d;
}

/** Streams a blob into the archive once (by digest), checking it against its descriptor on the way. */
async function writeBlob(tar: ArchiveTarWriter, written: Set<Digest>, desc: { digest: Digest; size: number }, open: () => Promise<Readable>): Promise<void> {
  if (written.has(desc.digest)) return;
  const body = pipeline(await open(), new VerifyingStream(desc.digest, desc.size, 'the image being exported'), () => undefined) as unknown as Readable;
  await tar.stream(`blobs/sha256/${digestHex(desc.digest)}`, desc.size, body);
  written.add(desc.digest);
}

async function writeDocBlob(tar: ArchiveTarWriter, written: Set<Digest>, raw: Buffer): Promise<Digest> {
  const digest = sha256(raw);
  if (!written.has(digest)) {
    await tar.file(`blobs/sha256/${digestHex(digest)}`, raw);
    written.add(digest);
  }
  return digest;
}

async function writeTar(out: Writable, opts: ArchiveStreamOptions, body: (tar: ArchiveTarWriter) => Promise<void>): Promise<void> {
  const tar = new ArchiveTarWriter(out, { end: opts.end ?? true });
  try {
    await body(tar);
    await tar.finish();
  } catch (err) {
    tar.abort(err as Error);
    throw err;
  }
}

// ------------------------------------------------------------------------------ OCI archive

/**
 * An OCI archive: `oci-layout`, the blobs, and `index.json` listing every image once per name, as
 * BuildKit's and docker's exporters list them: `io.containerd.image.name` carries the full
 * normalised name (what `kiln load` and containerd's importer restore) and
 * `org.opencontainers.image.ref.name` the tag (what skopeo's `oci-archive:FILE:TAG` finds). Layers
 * stored uncompressed are gzip-compressed by default, each once however many images share it.
 */
export async function writeOciArchive(images: NamedImage[], out: Writable, options: OciArchiveOptions = {}): Promise<void> {
  await withTempDir(options.tmpDir, async (dir) => {
    const converter = new LayerConverter(tempFileMaterializer(dir), options);
    const written = new Set<Digest>();
    const entries: Descriptor[] = [];
    try {
      await writeTar(out, options, async (tar) => {
        await tar.file('oci-layout', LAYOUT_FILE);
        await tar.directory('blobs');
        await tar.directory('blobs/sha256');
        for (const { image, names } of images) {
          const plan = await planOci(image, converter, options);
          for (const layer of plan.layers) {
            await writeBlob(tar, written, { digest: await layer.digest(), size: await layer.size() }, () => layer.compressed());
          }
          await writeDocBlob(tar, written, plan.rawConfig);
          await writeDocBlob(tar, written, plan.rawManifest);
          const named = fullNames(names);
          for (const name of named.length ? named : [undefined]) entries.push(indexEntry(plan, name, ociRefName));
          // Converted layers are in the archive now; their temp files are not needed again.
          await converter.disposeAll();
        }
        const index: Index = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: entries };
        await tar.file('index.json', JSON.stringify(index));
      });
    } finally {
      await converter.disposeAll();
    }
  });
}

// ------------------------------------------------------------------------------ OCI layout directory

/**
 * Writes images into the OCI layout at `dir` (created when missing; images already there stay),
 * naming each as `writeOciArchive` does. Blobs are verified as they are written.
 */
export async function writeOciLayoutDir(images: NamedImage[], dir: string, options: OciWriteOptions = {}): Promise<void> {
  const layout = await OciLayout.open(dir, { create: true });
  // Converted layers go straight into the layout: nothing is held in a temp file.
  const converter = new LayerConverter(async (content) => {
    const w = await layout.writeBlob(content);
    return { digest: w.digest, size: w.size, open: () => layout.openBlob(w), dispose: async () => undefined };
  }, options);
  for (const { image, names } of images) {
    const plan = await planOci(image, converter, options);
    const manifest = JSON.parse(plan.rawManifest.toString('utf8')) as Manifest;
    const configFile = await image.configFile();
    const planned = new StaticImage({ manifest: plan.rawManifest, config: plan.rawConfig }, { manifest, config: configFile }, plan.layers, plan.mediaType);
    const desc = await writeImage(layout, planned);
    const named = fullNames(names);
    for (const name of named) await layout.addManifest(desc, { refName: ociRefName(name), annotations: { [Annotation.containerdImageName]: name } });
    if (!named.length) {
      const index = await layout.readIndex();
      if (!index.manifests.some((d) => d.digest === desc.digest)) await layout.addManifest(desc);
    }
  }
  await layout.removeTempDirIfEmpty();
}

/** Names in their full normalised form (`docker.io/library/busybox:latest`). */
function fullNames(names: string[]): string[] {
  return unique(
    names.map((n) => {
      const full = normalizedOrUndefined(n);
      if (!full) throw new ArchiveWriteError(`"${n}" is not a valid image name`);
      return full;
    }),
  );
}

// ------------------------------------------------------------------------------ docker-archive

interface DockerManifestItem {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

/**
 * What `docker save` (25 and newer) writes: uncompressed layers, the config and an OCI manifest as
 * `blobs/sha256/<hex>`, `manifest.json` naming them (what every `docker load` reads), `index.json`
 * and `oci-layout` (what containerd-based loaders read), and the legacy `repositories` map. Images
 * with the same config are one image in docker's model and are written once, with all their names.
 */
export async function writeDockerArchive(images: NamedImage[], out: Writable, options: DockerArchiveOptions = {}): Promise<void> {
  // Merge by image ID (the config digest), as docker does.
  const merged = new Map<Digest, NamedImage>();
  for (const { image, names } of images) {
    const id = await image.configName();
    const seen = merged.get(id);
    if (seen) seen.names = unique([...seen.names, ...names]);
    else merged.set(id, { image, names: [...names] });
  }
  await withTempDir(options.tmpDir, async (dir) => {
    const converter = new LayerConverter(tempFileMaterializer(dir), options.layerVariant ? { layerVariant: options.layerVariant } : {});
    const written = new Set<Digest>();
    const items: DockerManifestItem[] = [];
    const entries: Descriptor[] = [];
    const repositories: Record<string, Record<string, string>> = {};
    try {
      await writeTar(out, options, async (tar) => {
        await tar.directory('blobs');
        await tar.directory('blobs/sha256');
        for (const { image, names } of merged.values()) {
          const manifest = await image.manifest();
          const layers = await image.layers();
          const diffIDs = (await image.configFile()).rootfs.diff_ids;
          if (layers.length !== diffIDs.length) throw new ArchiveWriteError(`image ${await image.digest()} has ${layers.length} layers but its config lists ${diffIDs.length} diffIDs`);
          const layerDescs: Descriptor[] = [];
          for (const layer of layers) {
            const plain = await converter.convert(layer, 'none');
            const desc = { digest: await plain.digest(), size: await plain.size() };
            await writeBlob(tar, written, desc, () => plain.compressed());
            layerDescs.push({ mediaType: MediaType.ociLayer, ...desc });
          }
          await converter.disposeAll();
          const rawConfig = await image.rawConfigFile();
          const configDigest = await writeDocBlob(tar, written, rawConfig);
          // The image's own manifest when it already describes exactly these uncompressed layers
          // (its digest survives a save/load round trip), else a fresh OCI manifest for them.
          const own = manifest.layers.every((l, i) => layerCompression(l.mediaType) === 'none' && l.digest === layerDescs[i]!.digest);
          const rawManifest = own
            ? await image.rawManifest()
            : Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: MediaType.ociConfig, digest: configDigest, size: rawConfig.length }, layers: layerDescs } satisfies Manifest));
          await writeDocBlob(tar, written, rawManifest);
          const plan: PlannedImage = {
            rawManifest,
            manifestDigest: sha256(rawManifest),
            mediaType: own ? await image.mediaType() : MediaType.ociManifest,
            rawConfig,
            layers,
            platform: await platformOf(image),
          };
          const repoTags: string[] = [];
          const named = fullNames(names);
          for (const name of named) {
            const tag = dockerRepoTag(name);
            if (!tag) continue;
            repoTags.push(tag);
            const ref = parseReference(name);
            const repo = tag.slice(0, tag.length - ref.tag!.length - 1);
            (repositories[repo] ??= {})[ref.tag!] = digestHex(diffIDs[diffIDs.length - 1] ?? configDigest);
          }
          for (const name of named.length ? named : [undefined]) {
            const e = indexEntry(plan, name, ociRefName);
            if (plan.platform) e.platform = plan.platform;
            entries.push(e);
          }
          items.push({ Config: `blobs/sha256/${digestHex(configDigest)}`, RepoTags: repoTags, Layers: layerDescs.map((d) => `blobs/sha256/${digestHex(d.digest)}`) });
        }
        const index: Index = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: entries };
        await tar.file('index.json', JSON.stringify(index));
        await tar.file('manifest.json', `${JSON.stringify(items)}\n`);
        await tar.file('oci-layout', LAYOUT_FILE);
        if (Object.keys(repositories).length) await tar.file('repositories', `${JSON.stringify(repositories)}\n`);
      });
    } finally {
      await converter.disposeAll();
    }
  });
}
