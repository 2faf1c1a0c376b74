/**
 * Archive round trips and refusals: what kiln writes it reads back with the same digests, and
 * damaged or foreign input is refused with a one-line typed error naming what is wrong.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { extract as tarExtract, pack as tarPack } from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KilnError } from '../../errors.js';
import { sha256, type Digest } from '../digest.js';
import type { Image } from '../image.js';
import { BlobVerificationError, memoryImage } from '../layout/index.js';
import { MediaType } from '../mediatypes.js';
import { hostPlatform } from '../platform.js';
import { ArchiveFormatError, DiffIDMismatchError, readImageArchive, writeDockerArchive, writeOciArchive, writeOciLayoutDir, type NamedImage } from './index.js';

const run = promisify(execFile);

type TarFile = { name: string; content?: string | Buffer; type?: 'file' | 'directory' | 'symlink' | 'link'; linkname?: string; mode?: number };

async function makeTar(files: Array<TarFile> | Record<string, string>): Promise<Buffer> {
  const list: TarFile[] = Array.isArray(files) ? files : Object.entries(files).map(([name, content]) => ({ name, content }));
  const p = tarPack();
  for (const f of list) {
    const type = f.type ?? 'file';
    const header = { name: f.name, type, mtime: new Date(0), mode: f.mode ?? (type === 'directory' ? 0o755 : 0o644), linkname: f.linkname };
    if (type === 'file') p.entry(header, f.content ?? '');
    else p.entry(header);
  }
  p.finalize();
  return collect(p as unknown as Readable);
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** Every entry of a tar: name → content. */
async function tarEntries(data: Buffer): Promise<Map<string, { type: string; content: Buffer }>> {
  const ex = tarExtract();
  const out = new Map<string, { type: string; content: Buffer }>();
  const done = (async () => {
    for await (const entry of ex) out.set(entry.header.name, { type: entry.header.type ?? 'file', content: await collect(entry as unknown as Readable) });
  })();
  ex.end(data);
  await done;
  return out;
}

async function toBuffer(write: (out: NodeJS.WritableStream & import('node:stream').Writable) => Promise<void>): Promise<Buffer> {
  const { PassThrough } = await import('node:stream');
  const out = new PassThrough();
  const [, data] = await Promise.all([write(out), collect(out)]);
  return data;
}

async function digests(image: Image): Promise<{ manifest: Digest; config: Digest; layers: Digest[]; diffIDs: Digest[] }> {
  const layers = await image.layers();
  return {
    manifest: await image.digest(),
    config: await image.configName(),
    layers: await Promise.all(layers.map((l) => l.digest())),
    diffIDs: (await image.configFile()).rootfs.diff_ids,
  };
}

async function uncompressedLayers(image: Image): Promise<Buffer[]> {
  return Promise.all((await image.layers()).map(async (l) => collect(await l.uncompressed())));
}

/** The error a promise rejects with (fails the test when it resolves). */
async function failure(p: Promise<unknown>): Promise<KilnError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(KilnError);
    expect((err as KilnError).describe()).not.toMatch(/\n/);
    return err as KilnError;
  }
  throw new Error('expected a failure');
}

let dir: string;
let base: Buffer;
let app: Buffer;
beforeEach(async () => {
  dir = await fsp.mkdtemp(join(tmpdir(), 'kiln-formats-'));
  base = await makeTar({ 'etc/os-release': 'ID=kiln\n', 'bin/sh': '#!/bin/true\n' });
  app = await makeTar({ 'app/main.js': 'console.log(1)\n' });
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

function gzImage(config: Record<string, unknown> = {}): Image {
  return memoryImage({
    layers: [
      { blob: gzipSync(base), mediaType: MediaType.ociLayerGzip },
      { blob: gzipSync(app), mediaType: MediaType.ociLayerGzip },
    ],
    config: { created: '2024-01-01T00:00:00Z', config: { Cmd: ['/bin/sh'] }, ...config },
  });
}

describe('OCI archive', () => {
  it('round-trips manifest, config and layer digests and names', async () => {
    const image = gzImage();
    const other = memoryImage({ layers: [{ blob: gzipSync(base), mediaType: MediaType.ociLayerGzip }] });
    const file = join(dir, 'out.tar');
    await writeOciArchive(
      [
        { image, names: ['kiln-test/app:1', 'docker.io/kiln-test/app:latest'] },
        { image: other, names: [] },
      ],
      createWriteStream(file),
    );
    const archive = await readImageArchive(file);
    try {
      expect(archive.format).toBe('oci');
      expect(archive.images).toHaveLength(2);
      const [a, b] = archive.images as [NamedImage, NamedImage];
      expect(a.names).toEqual(['docker.io/kiln-test/app:1', 'docker.io/kiln-test/app:latest']);
      expect(await digests(a.image)).toEqual(await digests(image));
      expect((await a.image.rawManifest()).equals(await image.rawManifest())).toBe(true);
      expect((await a.image.rawConfigFile()).equals(await image.rawConfigFile())).toBe(true);
      expect(await uncompressedLayers(a.image)).toEqual([base, app]);
      expect(b.names).toEqual([]);
      expect(await b.image.digest()).toBe(await other.digest());
    } finally {
      await archive.close();
    }
  });

  it('gzips uncompressed layers once, even when several images share them', async () => {
    const one = memoryImage({ layers: [{ blob: base }, { blob: app }] });
    const two = memoryImage({ layers: [{ blob: base }], config: { author: 'two' } });
    const data = await toBuffer((out) => writeOciArchive([{ image: one, names: ['one'] }, { image: two, names: ['two'] }], out));
    const entries = await tarEntries(data);
    const blobs = [...entries.keys()].filter((n) => n.startsWith('blobs/sha256/') && entries.get(n)!.type === 'file');
    // 2 gzip layers + 2 configs + 2 manifests: the shared layer is there once.
    expect(blobs).toHaveLength(6);
    for (const name of blobs) expect(sha256(entries.get(name)!.content)).toBe(`sha256:${name.slice('blobs/sha256/'.length)}`);

    const file = join(dir, 'two.tar');
    await fsp.writeFile(file, data);
    const archive = await readImageArchive(file);
    try {
      const [a, b] = archive.images as [NamedImage, NamedImage];
      const layersA = await a.image.layers();
      expect(await Promise.all(layersA.map((l) => l.mediaType()))).toEqual([MediaType.ociLayerGzip, MediaType.ociLayerGzip]);
      expect((await digests(a.image)).diffIDs).toEqual([sha256(base), sha256(app)]);
      expect((await b.image.layers())[0] && (await (await b.image.layers())[0]!.digest())).toBe(await layersA[0]!.digest());
      expect(await a.image.configName()).toBe(await one.configName());
      expect(await uncompressedLayers(a.image)).toEqual([base, app]);
    } finally {
      await archive.close();
    }
  });

  it('writes the same bytes for the same images', async () => {
    const images = [{ image: memoryImage({ layers: [{ blob: base }] }), names: ['same:1'] }];
    const first = await toBuffer((out) => writeOciArchive(images, out));
    const second = await toBuffer((out) => writeOciArchive(images, out));
    expect(sha256(first)).toBe(sha256(second));
  });

  it('keeps uncompressed layers with compression none, and zstd on request', async () => {
    const image = memoryImage({ layers: [{ blob: base }] });
    const plain = join(dir, 'plain.tar');
    await writeOciArchive([{ image, names: ['plain'] }], createWriteStream(plain), { compression: 'none' });
    let archive = await readImageArchive(plain);
    expect(await digests(archive.images[0]!.image)).toEqual(await digests(image));
    await archive.close();

    const zstd = join(dir, 'zstd.tar');
    await writeOciArchive([{ image: gzImage(), names: ['z'] }], createWriteStream(zstd), { compression: 'zstd', forceCompression: true });
    archive = await readImageArchive(zstd);
    const layers = await archive.images[0]!.image.layers();
    expect(await layers[0]!.mediaType()).toBe(MediaType.ociLayerZstd);
    expect(await uncompressedLayers(archive.images[0]!.image)).toEqual([base, app]);
    await archive.close();
  });

  it('rewrites Docker media types only when asked, and uses a caller-supplied layer variant', async () => {
    const gz = gzipSync(base);
    const rawConfig = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(base)] } }));
    const manifest = {
      schemaVersion: 2 as const,
      mediaType: MediaType.dockerManifest,
      config: { mediaType: MediaType.dockerConfig, digest: sha256(rawConfig), size: rawConfig.length },
      layers: [{ mediaType: MediaType.dockerLayerGzip, digest: sha256(gz), size: gz.length }],
    };
    const rawManifest = Buffer.from(JSON.stringify(manifest));
    const layer = memoryImage({ layers: [{ blob: gz, mediaType: MediaType.dockerLayerGzip }] });
    const docker: Image = {
      mediaType: async () => MediaType.dockerManifest,
      digest: async () => sha256(rawManifest),
      manifest: async () => manifest,
      rawManifest: async () => rawManifest,
      configName: async () => manifest.config.digest,
      configFile: async () => JSON.parse(rawConfig.toString()),
      rawConfigFile: async () => rawConfig,
      layers: () => layer.layers(),
    };
    const kept = join(dir, 'kept');
    await writeOciLayoutDir([{ image: docker, names: ['d:1'] }], kept);
    let archive = await readImageArchive(kept);
    expect(await archive.images[0]!.image.digest()).toBe(sha256(rawManifest));
    expect(await archive.images[0]!.image.mediaType()).toBe(MediaType.dockerManifest);

    const converted = join(dir, 'converted');
    const asked: string[] = [];
    await writeOciLayoutDir([{ image: docker, names: ['d:1'] }], converted, {
      ociMediaTypes: true,
      forceCompression: true,
      compression: 'none',
      layerVariant: async (l, compression) => {
        asked.push(`${await l.diffID()}:${compression}`);
        return (await memoryImage({ layers: [{ blob: base }] }).layers())[0];
      },
    });
    expect(asked).toEqual([`${sha256(base)}:none`]);
    archive = await readImageArchive(converted);
    const m = await archive.images[0]!.image.manifest();
    expect(m.mediaType).toBe(MediaType.ociManifest);
    expect(m.config).toEqual({ mediaType: MediaType.ociConfig, digest: sha256(rawConfig), size: rawConfig.length });
    expect(m.layers).toEqual([{ mediaType: MediaType.ociLayer, digest: sha256(base), size: base.length }]);
  });

  it('reads an OCI layout directory kiln wrote, with the same digests', async () => {
    const image = gzImage();
    const layoutDir = join(dir, 'layout');
    await writeOciLayoutDir([{ image, names: ['kiln-test/app:1'] }], layoutDir);
    await writeOciLayoutDir([{ image, names: ['kiln-test/app:2'] }], layoutDir);
    const archive = await readImageArchive(layoutDir);
    expect(archive.format).toBe('oci');
    expect(archive.images).toHaveLength(1);
    expect(archive.images[0]!.names).toEqual(['docker.io/kiln-test/app:1', 'docker.io/kiln-test/app:2']);
    expect(await digests(archive.images[0]!.image)).toEqual(await digests(image));
    expect(await uncompressedLayers(archive.images[0]!.image)).toEqual([base, app]);
    await expect(fsp.stat(join(layoutDir, '.tmp'))).rejects.toThrow();
    await archive.close();
  });

  it('takes the host platform from a multi-platform index', async () => {
    const host = hostPlatform();
    const mine = memoryImage({ layers: [{ blob: base }], config: { architecture: host.architecture, os: host.os } });
    const foreign = memoryImage({ layers: [{ blob: app }], config: { architecture: 'riscv64', os: 'linux' } });
    // An OCI layout with an index, written by hand.
    const blobs = new Map<string, Buffer>();
    const put = (b: Buffer) => {
      blobs.set(sha256(b), b);
      return { digest: sha256(b), size: b.length };
    };
    const manifests = [];
    for (const [img, platform] of [
      [mine, host],
      [foreign, { os: 'linux', architecture: 'riscv64' }],
    ] as const) {
      for (const l of await img.layers()) put(await collect(await l.compressed()));
      put(await img.rawConfigFile());
      manifests.push({ mediaType: MediaType.ociManifest, ...put(await img.rawManifest()), platform });
    }
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests }));
    const indexDesc = put(index);
    const files: TarFile[] = [
      { name: 'oci-layout', content: '{"imageLayoutVersion":"1.0.0"}' },
      { name: 'index.json', content: JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MediaType.ociIndex, ...indexDesc, annotations: { 'org.opencontainers.image.ref.name': 'multi:1' } }] }) },
      ...[...blobs].map(([d, content]) => ({ name: `blobs/sha256/${d.slice(7)}`, content })),
    ];
    const file = join(dir, 'multi.tar');
    await fsp.writeFile(file, await makeTar(files));
    const archive = await readImageArchive(file);
    expect(archive.images).toHaveLength(1);
    expect(archive.images[0]!.names).toEqual(['docker.io/library/multi:1']);
    expect(await archive.images[0]!.image.digest()).toBe(await mine.digest());
    await archive.close();
    const other = await readImageArchive(file, { platform: { os: 'linux', architecture: 'riscv64' } });
    expect(await other.images[0]!.image.digest()).toBe(await foreign.digest());
    await other.close();
    const err = await failure(readImageArchive(file, { platform: { os: 'linux', architecture: 's390x' } }));
    expect(err.message).toMatch(/no image for linux\/s390x/);
  });
});

describe('docker-archive', () => {
  it('round-trips config digest, diffIDs and names; layers are uncompressed as docker save writes them', async () => {
    const image = gzImage();
    const file = join(dir, 'docker.tar');
    await writeDockerArchive([{ image, names: ['busybox', 'registry.example:5000/team/app:v1'] }], createWriteStream(file));

    const entries = await tarEntries(await fsp.readFile(file));
    const manifestJson = JSON.parse(entries.get('manifest.json')!.content.toString()) as Array<{ Config: string; RepoTags: string[]; Layers: string[] }>;
    expect(manifestJson).toHaveLength(1);
    expect(manifestJson[0]!.RepoTags).toEqual(['busybox:latest', 'registry.example:5000/team/app:v1']);
    expect(manifestJson[0]!.Config).toBe(`blobs/sha256/${(await image.configName()).slice(7)}`);
    expect(manifestJson[0]!.Layers.map((l) => entries.get(l)!.content)).toEqual([base, app]);
    expect(JSON.parse(entries.get('repositories')!.content.toString())).toEqual({
      busybox: { latest: sha256(app).slice(7) },
      'registry.example:5000/team/app': { v1: sha256(app).slice(7) },
    });
    const index = JSON.parse(entries.get('index.json')!.content.toString()) as { manifests: Array<{ annotations: Record<string, string> }> };
    expect(index.manifests.map((m) => m.annotations)).toEqual([
      { 'io.containerd.image.name': 'docker.io/library/busybox:latest', 'org.opencontainers.image.ref.name': 'latest' },
      { 'io.containerd.image.name': 'registry.example:5000/team/app:v1', 'org.opencontainers.image.ref.name': 'v1' },
    ]);
    expect(entries.get('oci-layout')!.content.toString()).toBe('{"imageLayoutVersion":"1.0.0"}');

    const archive = await readImageArchive(file);
    expect(archive.format).toBe('docker');
    const [read] = archive.images as [NamedImage];
    expect(read.names).toEqual(['docker.io/library/busybox:latest', 'registry.example:5000/team/app:v1']);
    const d = await digests(read.image);
    expect(d.config).toBe(await image.configName());
    expect(d.diffIDs).toEqual((await digests(image)).diffIDs);
    expect(d.layers).toEqual(d.diffIDs);
    expect(await uncompressedLayers(read.image)).toEqual([base, app]);

    // Written again, the image keeps the manifest docker-archive gave it.
    const again = join(dir, 'again.tar');
    await writeDockerArchive(archive.images, createWriteStream(again));
    await archive.close();
    const second = await readImageArchive(again);
    expect(await second.images[0]!.image.digest()).toBe(d.manifest);
    await second.close();
  });

  it('reads a gzip-compressed archive from a stream', async () => {
    const image = gzImage();
    const data = await toBuffer((out) => writeDockerArchive([{ image, names: ['app:1'] }], out));
    const archive = await readImageArchive(Readable.from([gzipSync(data)]), { tmpDir: dir });
    expect(archive.images[0]!.names).toEqual(['docker.io/library/app:1']);
    expect(await archive.images[0]!.image.configName()).toBe(await image.configName());
    expect(await uncompressedLayers(archive.images[0]!.image)).toEqual([base, app]);
    const spooled = await fsp.readdir(dir);
    expect(spooled.some((n) => n.startsWith('kiln-archive-'))).toBe(true);
    await archive.close();
    expect((await fsp.readdir(dir)).some((n) => n.startsWith('kiln-archive-'))).toBe(false);
  });

  it('reads an xz-compressed archive', async () => {
    const image = gzImage();
    const plain = join(dir, 'x.tar');
    await writeDockerArchive([{ image, names: ['xz:1'] }], createWriteStream(plain));
    await run('xz', ['-z', plain]);
    const archive = await readImageArchive(`${plain}.xz`, { tmpDir: dir });
    expect(await archive.images[0]!.image.configName()).toBe(await image.configName());
    expect(await uncompressedLayers(archive.images[0]!.image)).toEqual([base, app]);
    await archive.close();
  });

  it('merges images that share a config, as docker does', async () => {
    const image = gzImage();
    const data = await toBuffer((out) => writeDockerArchive([{ image, names: ['a:1'] }, { image, names: ['b:2'] }], out));
    const manifestJson = JSON.parse((await tarEntries(data)).get('manifest.json')!.content.toString()) as unknown[];
    expect(manifestJson).toEqual([expect.objectContaining({ RepoTags: ['a:1', 'b:2'] })]);
  });

  it('reads the go-containerregistry form: gzip layers, config named by digest', async () => {
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(base), sha256(app)] } }));
    const gzBase = gzipSync(base);
    const gzApp = gzipSync(app);
    const file = join(dir, 'ggcr.tar');
    await fsp.writeFile(
      file,
      await makeTar([
        { name: `${sha256(config)}`, content: config },
        { name: `${sha256(gzBase).slice(7)}.tar.gz`, content: gzBase },
        { name: `${sha256(gzApp).slice(7)}.tar.gz`, content: gzApp },
        {
          name: 'manifest.json',
          content: JSON.stringify([{ Config: sha256(config), RepoTags: ['ggcr/app:1'], Layers: [`${sha256(gzBase).slice(7)}.tar.gz`, `${sha256(gzApp).slice(7)}.tar.gz`] }]),
        },
      ]),
    );
    const archive = await readImageArchive(file);
    const image = archive.images[0]!.image;
    expect(archive.images[0]!.names).toEqual(['docker.io/ggcr/app:1']);
    expect(await image.configName()).toBe(sha256(config));
    const layers = await image.layers();
    expect(await Promise.all(layers.map((l) => l.digest()))).toEqual([sha256(gzBase), sha256(gzApp)]);
    expect(await Promise.all(layers.map((l) => l.mediaType()))).toEqual([MediaType.ociLayerGzip, MediaType.ociLayerGzip]);
    expect(await uncompressedLayers(image)).toEqual([base, app]);
    await archive.close();
  });

  it('reads the legacy form: repositories, <id>/json and symlinked <id>/layer.tar', async () => {
    const id1 = 'a'.repeat(64);
    const id2 = 'b'.repeat(64);
    const file = join(dir, 'legacy.tar');
    await fsp.writeFile(
      file,
      await makeTar([
        { name: `${id1}/`, type: 'directory' },
        { name: `${id1}/json`, content: JSON.stringify({ id: id1, created: '2015-01-01T00:00:00Z', container_config: { Cmd: ['/bin/sh', '-c', '#(nop) ADD base'] }, os: 'linux', architecture: 'amd64' }) },
        { name: `${id1}/layer.tar`, content: base },
        { name: `${id1}/VERSION`, content: '1.0' },
        { name: `${id2}/`, type: 'directory' },
        { name: `${id2}/json`, content: JSON.stringify({ id: id2, parent: id1, created: '2015-01-02T00:00:00Z', config: { Cmd: ['/bin/sh'] }, container_config: { Cmd: ['/bin/sh', '-c', 'make'] }, os: 'linux', architecture: 'amd64', Size: 5 }) },
        { name: 'shared.tar', content: app },
        { name: `${id2}/layer.tar`, type: 'symlink', linkname: '../shared.tar' },
        { name: 'repositories', content: JSON.stringify({ 'legacy/app': { '1.0': id2 } }) },
      ]),
    );
    const archive = await readImageArchive(file);
    expect(archive.format).toBe('docker');
    const [read] = archive.images as [NamedImage];
    expect(read.names).toEqual(['docker.io/legacy/app:1.0']);
    const config = (await read.image.configFile()) as unknown as Record<string, unknown>;
    expect(config.rootfs).toEqual({ type: 'layers', diff_ids: [sha256(base), sha256(app)] });
    expect(config.history).toEqual([
      { created: '2015-01-01T00:00:00Z', created_by: '/bin/sh -c #(nop) ADD base' },
      { created: '2015-01-02T00:00:00Z', created_by: '/bin/sh -c make' },
    ]);
    expect(config).not.toHaveProperty('id');
    expect(config).not.toHaveProperty('parent');
    expect(config).not.toHaveProperty('Size');
    expect(config.config).toEqual({ Cmd: ['/bin/sh'] });
    expect(await uncompressedLayers(read.image)).toEqual([base, app]);
    await archive.close();
  });
});

describe('refusals', () => {
  /** An OCI archive as entries, so one can be altered. */
  async function ociEntries(): Promise<{ files: TarFile[]; image: Image }> {
    const image = gzImage();
    const data = await toBuffer((out) => writeOciArchive([{ image, names: ['bad:1'] }], out));
    const files: TarFile[] = [];
    for (const [name, e] of await tarEntries(data)) files.push({ name, type: e.type as TarFile['type'], content: e.content });
    return { files, image };
  }

  it('refuses a blob whose bytes do not match its digest, naming the blob', async () => {
    const { files, image } = await ociEntries();
    const layerDigest = (await image.manifest()).layers[1]!.digest;
    const victim = files.find((f) => f.name === `blobs/sha256/${layerDigest.slice(7)}`)!;
    const bytes = Buffer.from(victim.content as Buffer);
    bytes[bytes.length - 10]! ^= 0xff; // same size, different content
    victim.content = bytes;
    const file = join(dir, 'tampered.tar');
    await fsp.writeFile(file, await makeTar(files));
    const err = await failure(readImageArchive(file));
    expect(err).toBeInstanceOf(BlobVerificationError);
    expect(err.message).toContain(layerDigest);
    expect(err.message).toContain(file);
  });

  it('refuses a docker-archive layer that does not match its diffID, naming it', async () => {
    const data = await toBuffer((out) => writeDockerArchive([{ image: gzImage(), names: ['bad:1'] }], out));
    const files: TarFile[] = [];
    for (const [name, e] of await tarEntries(data)) {
      files.push({ name, type: e.type as TarFile['type'], content: e.content.equals(app) ? Buffer.concat([app.subarray(0, 600), Buffer.from('X'), app.subarray(601)]) : e.content });
    }
    const file = join(dir, 'bad-layer.tar');
    await fsp.writeFile(file, await makeTar(files));
    const err = await failure(readImageArchive(file));
    expect(err).toBeInstanceOf(DiffIDMismatchError);
    expect(err.message).toContain(sha256(app));
    expect(err.describe()).toMatch(/bad-layer\.tar: layer blobs\/sha256\/[a-f0-9]{64} does not unpack to the diffID its config names/);
  });

  it('checks compressed layers against their diffIDs as they are read', async () => {
    // A config that claims a different diffID for a gzip layer: only decompression can tell.
    const lying = memoryImage({ layers: [{ blob: gzipSync(base), mediaType: MediaType.ociLayerGzip }] });
    const config = JSON.parse((await lying.rawConfigFile()).toString()) as { rootfs: { diff_ids: string[] } };
    config.rootfs.diff_ids = [sha256(app)];
    const rawConfig = Buffer.from(JSON.stringify(config));
    const manifest = { ...(await lying.manifest()), config: { mediaType: MediaType.ociConfig, digest: sha256(rawConfig), size: rawConfig.length } };
    const rawManifest = Buffer.from(JSON.stringify(manifest));
    const gz = gzipSync(base);
    const file = join(dir, 'lying.tar');
    await fsp.writeFile(
      file,
      await makeTar([
        { name: 'oci-layout', content: '{"imageLayoutVersion":"1.0.0"}' },
        { name: 'index.json', content: JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MediaType.ociManifest, digest: sha256(rawManifest), size: rawManifest.length }] }) },
        { name: `blobs/sha256/${sha256(gz).slice(7)}`, content: gz },
        { name: `blobs/sha256/${sha256(rawConfig).slice(7)}`, content: rawConfig },
        { name: `blobs/sha256/${sha256(rawManifest).slice(7)}`, content: rawManifest },
      ]),
    );
    const archive = await readImageArchive(file);
    const [layer] = await archive.images[0]!.image.layers();
    expect(await collect(await layer!.compressed())).toEqual(gz);
    const err = await failure(collect(await layer!.uncompressed()));
    expect(err).toBeInstanceOf(BlobVerificationError);
    expect(err.message).toContain(sha256(app));
    expect(err.message).toMatch(/does not unpack to the diffID/);
    await archive.close();
  });

  it('refuses a truncated archive with one line naming the entry it ends in', async () => {
    const data = await toBuffer((out) => writeDockerArchive([{ image: gzImage(), names: ['cut:1'] }], out));
    const file = join(dir, 'cut.tar');
    await fsp.writeFile(file, data.subarray(0, Math.floor(data.length / 2)));
    const err = await failure(readImageArchive(file));
    expect(err).toBeInstanceOf(ArchiveFormatError);
    expect(err.describe()).toMatch(/truncated/);

    const gz = join(dir, 'cut.tar.gz');
    const zipped = gzipSync(data);
    await fsp.writeFile(gz, zipped.subarray(0, zipped.length - 100));
    const gzErr = await failure(readImageArchive(gz, { tmpDir: dir }));
    expect(gzErr).toBeInstanceOf(ArchiveFormatError);
    expect(gzErr.describe()).toMatch(/cut\.tar\.gz: .*gzip/);
    expect(await fsp.readdir(dir)).toEqual(['cut.tar', 'cut.tar.gz']);
  });

  it('refuses a garbage file, an empty file and a tar that holds no image', async () => {
    const garbage = join(dir, 'garbage.bin');
    await fsp.writeFile(garbage, Buffer.from('this is not an archive at all\n'.repeat(40)));
    const err = await failure(readImageArchive(garbage));
    expect(err).toBeInstanceOf(ArchiveFormatError);
    expect(err.describe()).toMatch(/garbage\.bin: not a tar archive/);

    const empty = join(dir, 'empty.tar');
    await fsp.writeFile(empty, '');
    expect((await failure(readImageArchive(empty))).describe()).toMatch(/not a tar archive|empty/);

    const other = join(dir, 'other.tar');
    await fsp.writeFile(other, await makeTar({ 'hello.txt': 'hi' }));
    expect((await failure(readImageArchive(other))).describe()).toMatch(/no manifest\.json .* or index\.json/);

    const missing = await failure(readImageArchive(join(dir, 'nope.tar')));
    expect(missing.describe()).toMatch(/nope\.tar: no such file/);
  });

  it('refuses a manifest.json that names a missing layer', async () => {
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(base)] } }));
    const file = join(dir, 'missing.tar');
    await fsp.writeFile(
      file,
      await makeTar([
        { name: 'config.json', content: config },
        { name: 'manifest.json', content: JSON.stringify([{ Config: 'config.json', RepoTags: ['x:1'], Layers: ['layer.tar'] }]) },
      ]),
    );
    const err = await failure(readImageArchive(file));
    expect(err.describe()).toMatch(/the layer "layer\.tar" is not in the archive/);
  });

  it('fails reading a layer whose archive file changed after it was opened', async () => {
    const image = memoryImage({ layers: [{ blob: base }] });
    const file = join(dir, 'changing.tar');
    await writeOciArchive([{ image, names: ['c:1'] }], createWriteStream(file), { compression: 'none' });
    const archive = await readImageArchive(file);
    const data = await fsp.readFile(file);
    const at = data.indexOf('ID=kiln');
    data[at] = 'X'.charCodeAt(0);
    await fsp.writeFile(file, data);
    const [layer] = await archive.images[0]!.image.layers();
    await expect(collect(await layer!.compressed())).rejects.toBeInstanceOf(BlobVerificationError);
    await archive.close();
  });
});

describe('streams', () => {
  it('reads an archive piped in, and the hash of what it reads matches the file', async () => {
    const file = join(dir, 'piped.tar');
    await writeOciArchive([{ image: gzImage(), names: ['p:1'] }], createWriteStream(file));
    const archive = await readImageArchive(createReadStream(file), { tmpDir: dir, name: 'stdin' });
    const layers = await archive.images[0]!.image.layers();
    for (const l of layers) {
      const h = createHash('sha256');
      await pipeline(await l.compressed(), async function* (src) {
        for await (const c of src) h.update(c as Buffer);
      });
      expect(`sha256:${h.digest('hex')}`).toBe(await l.digest());
    }
    await archive.close();
  });
});
