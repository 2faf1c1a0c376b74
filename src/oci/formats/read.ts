/**
 * Reading image archives: docker-archive (`docker save`, skopeo, go-containerregistry; the legacy
 * `repositories` + `<id>/json` form too), OCI archives (a tar of an OCI layout) and OCI layout
 * directories, plain or compressed, from a path or a stream.
 *
 * Verification: for tars, every blob an image uses is checked against its descriptor (size and
 * digest) when the archive is opened, from the digests taken while indexing; a docker-archive's
 * uncompressed layers are checked against the config's diffIDs the same way. Compressed layers are
 * checked against their diffIDs whenever they are decompressed (a second full decompression just to
 * check would double the cost of every load). Layout directories are checked lazily by the layout
 * reader: documents when read, layers as they stream.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { isDigest, sha256, type Digest } from '../digest.js';
import type { Image } from '../image.js';
import { BlobNotFoundError, BlobVerificationError, OciLayout, imageFor, parseIndex } from '../layout/index.js';
import { statOrUndefined } from '../layout/fs.js';
import { MediaType, isIndexMediaType, isManifestMediaType, layerMediaType } from '../mediatypes.js';
import { chooseIndexEntry, formatPlatform, hostPlatform, offeredPlatforms } from '../platform.js';
import type { Descriptor, ImageConfig, Index, Manifest, Platform } from '../types.js';
import { ArchiveLayer, StaticImage } from './archive-image.js';
import { decompressAs, sniffCompression, SNIFF_BYTES } from './compression.js';
import { ArchiveEntryMissingError, ArchiveFormatError, DiffIDMismatchError, printable } from './errors.js';
import { nameOfIndexEntry, normalizedOrUndefined, unique } from './names.js';
import { openArchiveSource, type TarArchive, type TarEntry } from './tarindex.js';
import type { ArchiveFormat, NamedImage } from './types.js';

export interface ReadArchiveOptions {
  /** Where a compressed archive or a stream is spooled (decompressed) while it is read. Default: the OS temp dir. */
  tmpDir?: string;
  /** Which image of a multi-platform index to take. Default: this host's platform. */
  platform?: Platform;
  /** How messages name the source (e.g. `stdin`). Default: the path, or `<stream>`. */
  name?: string;
}

export interface ImageArchive {
  format: ArchiveFormat;
  images: NamedImage[];
  /** Releases the temp files behind the images; they cannot be read afterwards. */
  close(): Promise<void>;
}

export async function readImageArchive(pathOrStream: string | Readable, options: ReadArchiveOptions = {}): Promise<ImageArchive> {
  const source = await openArchiveSource(pathOrStream, options);
  const platform = options.platform ?? hostPlatform();
  try {
    if (source.kind === 'dir') {
      return { format: 'oci', images: await readLayoutDir(source.path, source.where, platform), close: source.close };
    }
    const a = source.archive;
    // docker ≥25 archives hold both manifest.json and an OCI layout. manifest.json decides, as it
    // does for `docker load`; the OCI manifests beside it are reused where they match.
    if (a.file('manifest.json')) return { format: 'docker', images: await readDockerArchive(a), close: source.close };
    if (a.file('index.json')) return { format: 'oci', images: await readOciArchive(a, platform), close: source.close };
    if (a.file('repositories')) return { format: 'docker', images: await readLegacyDockerArchive(a), close: source.close };
    throw new ArchiveFormatError(
      source.where,
      a.size === 0 ? 'the archive is empty' : 'not an image archive: it has no manifest.json (docker-archive) or index.json (OCI archive)',
    );
  } catch (err) {
    await source.close();
    throw err;
  }
}

// ------------------------------------------------------------------------------ helpers

function parseJson<T>(raw: Buffer, what: string, where: string): T {
  try {
    return JSON.parse(raw.toString('utf8')) as T;
  } catch (err) {
    throw new ArchiveFormatError(where, `${what} is not valid JSON`, { cause: err });
  }
}

function requireFile(a: TarArchive, name: string, what: string): TarEntry {
  const e = a.file(name);
  if (!e) throw new ArchiveEntryMissingError(a.where, name, what);
  return e;
}

/** The blob `desc` names in an OCI layout inside the archive, checked against the descriptor. */
function blobEntry(a: TarArchive, desc: { digest: Digest; size?: number }): TarEntry {
  const e = a.file(`blobs/sha256/${desc.digest.slice('sha256:'.length)}`);
  if (!e) throw new BlobNotFoundError(desc.digest, a.where, { hint: 'the archive is incomplete; save or copy the image again' });
  if (desc.size !== undefined && e.size !== desc.size) {
    throw new BlobVerificationError(desc.digest, a.where, { expectedSize: desc.size, actualSize: e.size });
  }
  if (e.digest !== desc.digest) throw new BlobVerificationError(desc.digest, a.where, { actualDigest: e.digest! });
  return e;
}

/** A digest an entry's own name claims (`blobs/sha256/<hex>`, `<hex>.json`, `sha256:<hex>`). */
function digestNamedBy(path: string): Digest | undefined {
  const m = /(?:^|\/)blobs\/sha256\/([a-f0-9]{64})$/.exec(path) ?? /(?:^|\/)([a-f0-9]{64})\.json$/.exec(path) ?? /^sha256:([a-f0-9]{64})$/.exec(path);
  return m ? (`sha256:${m[1]}` as Digest) : undefined;
}

function checkNamedDigest(a: TarArchive, path: string, e: TarEntry): void {
  const named = digestNamedBy(path);
  if (named && named !== e.digest) {
    throw new BlobVerificationError(named, `${a.where} (entry ${printable(path)})`, { actualDigest: e.digest!, expectedSize: e.size, actualSize: e.size });
  }
}

function checkConfig(raw: unknown, what: string, where: string): ImageConfig {
  const c = raw as ImageConfig;
  if (typeof c !== 'object' || c === null || typeof c.rootfs !== 'object' || c.rootfs === null || !Array.isArray(c.rootfs.diff_ids)) {
    throw new ArchiveFormatError(where, `${what} is not an image config (no rootfs.diff_ids)`);
  }
  for (const d of c.rootfs.diff_ids) {
    if (!isDigest(d)) throw new ArchiveFormatError(where, `${what} lists an invalid diffID ${JSON.stringify(d).slice(0, 100)}`);
  }
  return c;
}

/** Merges entries naming the same image (by manifest digest), keeping the names of each. */
async function groupByDigest(items: Array<{ image: Image; names: string[] }>): Promise<NamedImage[]> {
  const byDigest = new Map<Digest, NamedImage>();
  for (const item of items) {
    const digest = await item.image.digest();
    const seen = byDigest.get(digest);
    if (seen) seen.names = unique([...seen.names, ...item.names]);
    else byDigest.set(digest, { image: item.image, names: unique(item.names) });
  }
  return [...byDigest.values()];
}

// ------------------------------------------------------------------------------ docker-archive

interface DockerManifestItem {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

async function readDockerArchive(a: TarArchive): Promise<NamedImage[]> {
  const items = parseJson<unknown>(await a.read(a.file('manifest.json')!), 'manifest.json', a.where);
  if (!Array.isArray(items)) throw new ArchiveFormatError(a.where, 'manifest.json is not a list of images');
  const embedded = new EmbeddedManifests(a);
  const out: Array<{ image: Image; names: string[] }> = [];
  for (const [i, value] of items.entries()) {
    const item = value as DockerManifestItem;
    if (typeof item !== 'object' || item === null || typeof item.Config !== 'string' || !Array.isArray(item.Layers) || !item.Layers.every((l) => typeof l === 'string')) {
      throw new ArchiveFormatError(a.where, `manifest.json item ${i} has no Config or Layers`);
    }
    const cfgEntry = requireFile(a, item.Config, 'the image config');
    checkNamedDigest(a, item.Config, cfgEntry);
    const rawConfig = await a.read(cfgEntry);
    const config = checkConfig(parseJson(rawConfig, `config ${item.Config}`, a.where), `config ${item.Config}`, a.where);
    const diffIDs = config.rootfs.diff_ids;
    if (diffIDs.length !== item.Layers.length) {
      throw new ArchiveFormatError(a.where, `manifest.json lists ${item.Layers.length} layers for config ${item.Config}, which has ${diffIDs.length} diffIDs`);
    }
    const layerDescs: Descriptor[] = [];
    const entries: TarEntry[] = [];
    for (const [n, path] of item.Layers.entries()) {
      const e = requireFile(a, path, 'the layer');
      const compression = sniffCompression(await a.head(e, SNIFF_BYTES));
      if (compression === 'xz' || compression === 'bzip2') {
        throw new ArchiveFormatError(a.where, `layer "${printable(path)}" is ${compression}-compressed, which image layers cannot be`, {
          hint: 'decompress the layer in the archive, or save the image again',
        });
      }
      // An uncompressed layer is its own diffID: check it now, from the digest taken while indexing.
      if (compression === 'none' && e.digest !== diffIDs[n]) throw new DiffIDMismatchError(diffIDs[n]!, path, a.where, e.digest!);
      checkNamedDigest(a, path, e);
      layerDescs.push({ mediaType: layerMediaType(compression), digest: e.digest!, size: e.size });
      entries.push(e);
    }
    const configDigest = cfgEntry.digest!;
    const doc =
      (await embedded.find(configDigest, layerDescs)) ?? synthesizedManifest({ mediaType: MediaType.ociConfig, digest: configDigest, size: rawConfig.length }, layerDescs);
    const layers = entries.map((e, n) => new ArchiveLayer(a, e, doc.manifest.layers[n]!, diffIDs[n]!));
    const names: string[] = [];
    for (const tag of item.RepoTags ?? []) {
      const name = typeof tag === 'string' ? normalizedOrUndefined(tag) : undefined;
      if (!name) throw new ArchiveFormatError(a.where, `manifest.json names an image ${JSON.stringify(tag).slice(0, 200)}, which is not a valid reference`);
      names.push(name);
    }
    out.push({ image: new StaticImage({ manifest: doc.raw, config: rawConfig }, { manifest: doc.manifest, config }, layers, doc.mediaType), names });
  }
  return groupByDigest(out);
}

function synthesizedManifest(config: Descriptor, layers: Descriptor[]): { raw: Buffer; manifest: Manifest; mediaType: string } {
  const manifest: Manifest = { schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers };
  return { raw: Buffer.from(JSON.stringify(manifest)), manifest, mediaType: MediaType.ociManifest };
}

/**
 * The OCI manifests docker ≥25 also puts in its archives (`index.json` + `blobs/`). When one
 * describes exactly the config and layer blobs of a manifest.json item it is used as is, so the
 * image keeps the manifest digest docker gave it; otherwise (older docker, other tools, or a manifest
 * that does not match) the manifest is made from manifest.json.
 */
class EmbeddedManifests {
  private docs: Promise<Array<{ raw: Buffer; manifest: Manifest; mediaType: string }>> | undefined;
  constructor(private readonly a: TarArchive) {}

  async find(config: Digest, layers: Descriptor[]): Promise<{ raw: Buffer; manifest: Manifest; mediaType: string } | undefined> {
    this.docs ??= this.load();
    return (await this.docs).find(
      (d) =>
        d.manifest.config.digest === config &&
        d.manifest.layers.length === layers.length &&
        d.manifest.layers.every((l, i) => l.digest === layers[i]!.digest && l.size === layers[i]!.size && sameCompression(l.mediaType, layers[i]!.mediaType)),
    );
  }

  private async load(): Promise<Array<{ raw: Buffer; manifest: Manifest; mediaType: string }>> {
    const out: Array<{ raw: Buffer; manifest: Manifest; mediaType: string }> = [];
    const indexEntry = this.a.file('index.json');
    if (!indexEntry) return out;
    // Anything odd here only means the embedded manifests are not used.
    try {
      const index = JSON.parse((await this.a.read(indexEntry)).toString('utf8')) as Index;
      for (const d of Array.isArray(index.manifests) ? index.manifests : []) {
        if (!isDigest(d?.digest) || !isManifestMediaType(d.mediaType)) continue;
        const e = this.a.file(`blobs/sha256/${d.digest.slice(7)}`);
        if (!e || e.digest !== d.digest) continue;
        const raw = await this.a.read(e);
        const manifest = JSON.parse(raw.toString('utf8')) as Manifest;
        if (manifest?.schemaVersion !== 2 || !manifest.config || !Array.isArray(manifest.layers)) continue;
        out.push({ raw, manifest, mediaType: d.mediaType });
      }
    } catch {
      return out;
    }
    return out;
  }
}

function sameCompression(a: string, b: string): boolean {
  const norm = (t: string) => (t === 'application/vnd.docker.image.rootfs.diff.tar' ? MediaType.ociLayer : t === MediaType.dockerLayerGzip ? MediaType.ociLayerGzip : t);
  return norm(a) === norm(b);
}

// ------------------------------------------------------------------------------ legacy docker-archive

interface V1Json {
  id?: string;
  parent?: string;
  created?: string;
  author?: string;
  comment?: string;
  container_config?: { Cmd?: string[] | null };
  os?: string;
  architecture?: string;
  [key: string]: unknown;
}

/**
 * Archives from docker before 1.10: `repositories` maps names to v1 image IDs, each `<id>/` holds the
 * v1 `json` (with its parent's ID) and `layer.tar`. The image config is made from the top v1 JSON
 * with rootfs and history added, as docker's loader does.
 */
async function readLegacyDockerArchive(a: TarArchive): Promise<NamedImage[]> {
  const repos = parseJson<Record<string, Record<string, string>>>(await a.read(a.file('repositories')!), 'repositories', a.where);
  if (typeof repos !== 'object' || repos === null) throw new ArchiveFormatError(a.where, 'repositories is not an object');
  const images = new Map<string, Image>();
  const out: Array<{ image: Image; names: string[] }> = [];
  for (const [repo, tags] of Object.entries(repos)) {
    for (const [tag, id] of Object.entries(tags ?? {})) {
      const name = normalizedOrUndefined(`${repo}:${tag}`);
      if (!name || typeof id !== 'string') throw new ArchiveFormatError(a.where, `repositories names an image ${JSON.stringify(`${repo}:${tag}`)}, which is not a valid reference`);
      let image = images.get(id);
      if (!image) {
        image = await legacyImage(a, id);
        images.set(id, image);
      }
      out.push({ image, names: [name] });
    }
  }
  return groupByDigest(out);
}

async function legacyImage(a: TarArchive, topID: string): Promise<Image> {
  const chain: Array<{ id: string; json: V1Json; layer: TarEntry }> = [];
  const seen = new Set<string>();
  for (let id: string | undefined = topID; id; ) {
    if (seen.has(id) || !/^[a-f0-9]{64}$/.test(id)) throw new ArchiveFormatError(a.where, `repositories or ${printable(id)}/json names an invalid or looping parent`);
    seen.add(id);
    const json: V1Json = parseJson<V1Json>(await a.read(requireFile(a, `${id}/json`, 'the v1 image JSON')), `${id}/json`, a.where);
    chain.unshift({ id, json, layer: requireFile(a, `${id}/layer.tar`, 'the layer') });
    id = typeof json.parent === 'string' && json.parent ? json.parent : undefined;
  }
  const diffIDs: Digest[] = [];
  const layerDescs: Descriptor[] = [];
  const history: Array<Record<string, string>> = [];
  for (const { json, layer, id } of chain) {
    const compression = sniffCompression(await a.head(layer, SNIFF_BYTES));
    if (compression === 'xz' || compression === 'bzip2') throw new ArchiveFormatError(a.where, `layer ${id}/layer.tar is ${compression}-compressed, which image layers cannot be`);
    // Old archives carry no diffIDs: they are computed here, which is also the layer's check.
    diffIDs.push(compression === 'none' ? layer.digest! : await hashStream(decompressAs(a.open(layer), compression), `${a.where} (${id}/layer.tar)`));
    layerDescs.push({ mediaType: layerMediaType(compression), digest: layer.digest!, size: layer.size });
    const h: Record<string, string> = {};
    if (json.author) h.author = json.author;
    if (json.created) h.created = json.created;
    const cmd = json.container_config?.Cmd;
    if (Array.isArray(cmd) && cmd.length) h.created_by = cmd.join(' ');
    if (json.comment) h.comment = json.comment;
    history.push(h);
  }
  const top = { ...chain[chain.length - 1]!.json };
  for (const k of ['id', 'parent', 'Size', 'parent_id', 'layer_id', 'throwaway']) delete top[k];
  top.os ||= 'linux';
  top.architecture ||= 'amd64';
  top.rootfs = { type: 'layers', diff_ids: diffIDs };
  top.history = history;
  // Keys sorted, as docker's loader marshals the config from a map.
  const sorted = Object.fromEntries(Object.keys(top).sort().map((k) => [k, top[k]]));
  const rawConfig = Buffer.from(JSON.stringify(sorted));
  const config = sorted as unknown as ImageConfig;
  const doc = synthesizedManifest({ mediaType: MediaType.ociConfig, digest: sha256(rawConfig), size: rawConfig.length }, layerDescs);
  const layers = chain.map(({ layer }, i) => new ArchiveLayer(a, layer, layerDescs[i]!, diffIDs[i]!));
  return new StaticImage({ manifest: doc.raw, config: rawConfig }, { manifest: doc.manifest, config }, layers, doc.mediaType);
}

async function hashStream(stream: Readable, where: string): Promise<Digest> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of stream) hash.update(chunk as Buffer);
  } catch (err) {
    if (err instanceof Error && !(err as { code?: unknown }).code) throw new ArchiveFormatError(where, err.message, { cause: err });
    throw err;
  }
  return `sha256:${hash.digest('hex')}`;
}

// ------------------------------------------------------------------------------ OCI archive

async function readOciArchive(a: TarArchive, platform: Platform): Promise<NamedImage[]> {
  const layoutFile = a.file('oci-layout');
  if (layoutFile) {
    const version = parseJson<{ imageLayoutVersion?: unknown }>(await a.read(layoutFile), 'oci-layout', a.where)?.imageLayoutVersion;
    if (typeof version !== 'string' || !/^1\.\d+\.\d+$/.test(version)) {
      throw new ArchiveFormatError(a.where, `unsupported imageLayoutVersion ${JSON.stringify(version)}`);
    }
  }
  const index = parseIndex(await a.read(a.file('index.json')!), a.where);
  const out: Array<{ image: Image; names: string[] }> = [];
  for (const desc of index.manifests) {
    const image = await ociImage(a, desc, platform, 0);
    if (!image) continue;
    const name = nameOfIndexEntry(desc);
    out.push({ image, names: name ? [name] : [] });
  }
  return groupByDigest(out);
}

/** The image `desc` designates (through indexes, by platform); undefined for artifacts that are not images. */
async function ociImage(a: TarArchive, desc: Descriptor, platform: Platform, depth: number): Promise<Image | undefined> {
  if (depth > 8) throw new ArchiveFormatError(a.where, `indexes nested too deeply at ${desc.digest}`);
  const raw = await a.read(blobEntry(a, desc));
  const doc = parseJson<{ mediaType?: string; manifests?: unknown; config?: Descriptor; layers?: unknown }>(raw, `blob ${desc.digest}`, a.where);
  const mediaType = isIndexMediaType(desc.mediaType) || isManifestMediaType(desc.mediaType) ? desc.mediaType : doc.mediaType ?? (Array.isArray(doc.manifests) ? MediaType.ociIndex : MediaType.ociManifest);
  if (isIndexMediaType(mediaType)) {
    const child = parseIndex(raw, a.where);
    const chosen = chooseIndexEntry(child.manifests, platform);
    if (!chosen) {
      throw new ArchiveFormatError(a.where, `index ${desc.digest} has no image for ${formatPlatform(platform)}`, {
        hint: `it offers: ${offeredPlatforms(child.manifests)}; choose one of those platforms`,
      });
    }
    return ociImage(a, chosen, platform, depth + 1);
  }
  const manifest = doc as Manifest;
  if (manifest.schemaVersion !== 2 || typeof manifest.config !== 'object' || manifest.config === null || !Array.isArray(manifest.layers)) {
    throw new ArchiveFormatError(a.where, `blob ${desc.digest} is not an image manifest`);
  }
  // Signatures, SBOMs and other artifacts can sit in the same index; they are not images to load.
  if (manifest.config.mediaType !== MediaType.ociConfig && manifest.config.mediaType !== MediaType.dockerConfig) return undefined;
  const rawConfig = await a.read(blobEntry(a, manifest.config));
  const config = checkConfig(parseJson(rawConfig, `config ${manifest.config.digest}`, a.where), `config ${manifest.config.digest}`, a.where);
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new ArchiveFormatError(a.where, `image ${desc.digest} lists ${manifest.layers.length} layers but its config has ${config.rootfs.diff_ids.length} diffIDs`);
  }
  const layers = manifest.layers.map((l, i) => {
    if (!l || !isDigest(l.digest) || typeof l.size !== 'number') throw new ArchiveFormatError(a.where, `manifest ${desc.digest} lists an invalid layer descriptor`);
    return new ArchiveLayer(a, blobEntry(a, l), l, config.rootfs.diff_ids[i]!);
  });
  return new StaticImage({ manifest: raw, config: rawConfig }, { manifest, config }, layers, mediaType);
}

// ------------------------------------------------------------------------------ OCI layout directory

async function readLayoutDir(path: string, where: string, platform: Platform): Promise<NamedImage[]> {
  if (!(await statOrUndefined(`${path}/oci-layout`)) && (await statOrUndefined(`${path}/manifest.json`))) {
    throw new ArchiveFormatError(where, 'an unpacked docker-archive directory cannot be read in place', { hint: 'pass the docker-archive tar itself' });
  }
  const layout = await OciLayout.open(path);
  const index = await layout.readIndex();
  const out: Array<{ image: Image; names: string[] }> = [];
  for (const desc of index.manifests) {
    const image = await imageFor(layout, desc, platform);
    const manifest = await image.manifest();
    if (manifest.config.mediaType !== MediaType.ociConfig && manifest.config.mediaType !== MediaType.dockerConfig) continue;
    await image.configFile();
    // Documents are verified as they are read; layers are checked for presence and size now and
    // for content as they stream.
    for (const l of await image.layers()) {
      const digest = await l.digest();
      const expected = await l.size();
      const size = await layout.blobSize(digest);
      if (size === undefined) throw new BlobNotFoundError(digest, where);
      if (size !== expected) throw new BlobVerificationError(digest, where, { expectedSize: expected, actualSize: size });
    }
    const name = nameOfIndexEntry(desc);
    out.push({ image, names: name ? [name] : [] });
  }
  return groupByDigest(out);
}
