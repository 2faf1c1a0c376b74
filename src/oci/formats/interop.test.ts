/**
 * Conformance against independent implementations: skopeo (containers/image) reads the
 * docker-archives, OCI archives and layouts kiln writes, umoci unpacks kiln's layouts to the expected
 * root filesystem, and what skopeo writes reads back through kiln with the same digests.
 */
import { execFile } from 'node:child_process';
import { createWriteStream, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { pack as tarPack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256, type Digest } from '../digest.js';
import type { Image } from '../image.js';
import { memoryImage } from '../layout/index.js';
import { MediaType } from '../mediatypes.js';
import { readImageArchive, writeDockerArchive, writeOciArchive, writeOciLayoutDir } from './index.js';

const run = promisify(execFile);

/** Runs a tool the tests depend on; its absence fails the test with the Debian package to install. */
async function tool(command: 'skopeo' | 'umoci', ...args: string[]): Promise<string> {
  try {
    return (await run(command, args, { maxBuffer: 64 << 20 })).stdout;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`${command} is not installed; these tests need it: apt-get install -y ${command} (Debian package "${command}")`);
    }
    throw new Error(`${command} ${args.join(' ')} failed: ${(err as { stderr?: string }).stderr ?? String(err)}`);
  }
}

type Entry = { name: string; content?: string; type?: 'file' | 'directory' | 'symlink'; mode?: number; uid?: number; gid?: number; linkname?: string };

async function makeTar(entries: Entry[]): Promise<Buffer> {
  const p = tarPack();
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = { name: e.name, type, mtime: new Date(1_600_000_000_000), mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644), uid: e.uid ?? 0, gid: e.gid ?? 0, linkname: e.linkname };
    if (type === 'file') p.entry(header, e.content ?? '');
    else p.entry(header);
  }
  p.finalize();
  const parts: Buffer[] = [];
  for await (const c of p as unknown as Readable) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

let dir: string;
let image: Image;
const NAME = 'docker.io/kiln-test/app:1';
/** The OCI ref name kiln gives NAME in its OCI archives and layouts: the tag, as BuildKit and docker do. */
const TAG = '1';

beforeAll(async () => {
  dir = await fsp.mkdtemp(join(tmpdir(), 'kiln-interop-'));
  const lower = await makeTar([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/motd', content: 'hello from kiln\n' },
    { name: 'etc/gone', content: 'deleted above\n' },
    { name: 'opt/', type: 'directory' },
    { name: 'opt/cache/', type: 'directory', mode: 0o750 },
    { name: 'opt/cache/old', content: 'hidden by an opaque dir above\n' },
    { name: 'usr/', type: 'directory' },
    { name: 'usr/bin/', type: 'directory' },
    { name: 'usr/bin/tool', content: '#!/bin/sh\necho tool\n', mode: 0o4755, uid: 1000, gid: 1000 },
    { name: 'usr/bin/link', type: 'symlink', linkname: 'tool' },
  ]);
  const upper = await makeTar([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/.wh.gone' },
    { name: 'opt/cache/', type: 'directory', mode: 0o700, uid: 33, gid: 33 },
    { name: 'opt/cache/.wh..wh..opq' },
    { name: 'opt/cache/new', content: 'fresh\n', mode: 0o600, uid: 33, gid: 33 },
  ]);
  image = memoryImage({
    layers: [
      { blob: gzipSync(lower), mediaType: MediaType.ociLayerGzip },
      { blob: gzipSync(upper), mediaType: MediaType.ociLayerGzip },
    ],
    config: { architecture: 'amd64', os: 'linux', created: '2024-02-03T04:05:06Z', config: { Cmd: ['/usr/bin/tool'], Labels: { made: 'by-kiln' } } },
  });
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

async function diffIDsOf(img: Image): Promise<Digest[]> {
  return (await img.configFile()).rootfs.diff_ids;
}

/** The digests skopeo itself sees at `ref`: its raw manifest's, and the config and layers that manifest names. */
async function skopeoView(ref: string): Promise<{ manifest: Digest; config: Digest; layers: Digest[] }> {
  const raw = await tool('skopeo', 'inspect', '--raw', ref);
  const m = JSON.parse(raw) as { config: { digest: Digest }; layers: Array<{ digest: Digest }> };
  return { manifest: sha256(raw), config: m.config.digest, layers: m.layers.map((l) => l.digest) };
}

async function kilnView(img: Image): Promise<{ manifest: Digest; config: Digest; layers: Digest[] }> {
  return { manifest: await img.digest(), config: await img.configName(), layers: await Promise.all((await img.layers()).map((l) => l.digest())) };
}

describe('skopeo reads what kiln writes', () => {
  it('skopeo inspect and copy accept kiln docker-archives', async () => {
    const file = join(dir, 'docker.tar');
    await writeDockerArchive([{ image, names: [NAME] }], createWriteStream(file));
    const info = JSON.parse(await tool('skopeo', 'inspect', `docker-archive:${file}`)) as { Architecture: string; Os: string; Layers: string[]; Labels: Record<string, string> };
    expect(info.Architecture).toBe('amd64');
    expect(info.Os).toBe('linux');
    expect(info.Labels).toEqual({ made: 'by-kiln' });
    expect(info.Layers).toEqual(await diffIDsOf(image));
    const config = JSON.parse(await tool('skopeo', 'inspect', '--config', `docker-archive:${file}`)) as unknown;
    expect(config).toEqual(await image.configFile());

    const layout = join(dir, 'from-docker-archive');
    await tool('skopeo', 'copy', `docker-archive:${file}`, `oci:${layout}:x`);
    const back = await readImageArchive(layout);
    expect(back.images).toHaveLength(1);
    expect(back.images[0]!.names).toEqual(['docker.io/library/x:latest']);
    // skopeo rewrites the config when it turns docker types into OCI ones; the content survives.
    expect(await kilnView(back.images[0]!.image)).toEqual(await skopeoView(`oci:${layout}:x`));
    expect(await diffIDsOf(back.images[0]!.image)).toEqual(await diffIDsOf(image));
    await back.close();
  });

  it('skopeo inspect and copy accept kiln OCI archives, keeping the manifest', async () => {
    const file = join(dir, 'oci.tar');
    await writeOciArchive([{ image, names: [NAME] }], createWriteStream(file));
    const info = JSON.parse(await tool('skopeo', 'inspect', `oci-archive:${file}:${TAG}`)) as { Digest: string; Layers: string[] };
    expect(info.Digest).toBe(await image.digest());
    expect(info.Layers).toEqual((await image.manifest()).layers.map((l) => l.digest));

    const out = join(dir, 'from-oci-archive');
    await tool('skopeo', 'copy', `oci-archive:${file}:${TAG}`, `dir:${out}`);
    const manifest = await fsp.readFile(join(out, 'manifest.json'));
    expect(sha256(manifest)).toBe(await image.digest());
    for (const l of (await image.manifest()).layers) {
      expect(sha256(await fsp.readFile(join(out, l.digest.slice(7))))).toBe(l.digest);
    }
  });

  it('skopeo reads kiln OCI layout directories', async () => {
    const layout = join(dir, 'layout-for-skopeo');
    await writeOciLayoutDir([{ image, names: [NAME, 'other:2'] }], layout);
    const info = JSON.parse(await tool('skopeo', 'inspect', `oci:${layout}:2`)) as { Digest: string };
    expect(info.Digest).toBe(await image.digest());
  });
});

describe('kiln reads what skopeo writes', () => {
  let source: string;
  beforeAll(async () => {
    source = join(dir, 'source.tar');
    await writeOciArchive([{ image, names: [NAME] }], createWriteStream(source));
  });

  it('an OCI layout directory, with the same digests', async () => {
    const layout = join(dir, 'skopeo-layout');
    await tool('skopeo', 'copy', `oci-archive:${source}:${TAG}`, `oci:${layout}:${NAME}`);
    const back = await readImageArchive(layout);
    expect(back.format).toBe('oci');
    expect(back.images[0]!.names).toEqual([NAME]);
    expect(await kilnView(back.images[0]!.image)).toEqual(await skopeoView(`oci:${layout}:${NAME}`));
    expect(await back.images[0]!.image.digest()).toBe(await image.digest());
    await back.close();
  });

  it('an OCI archive, with the same digests', async () => {
    const file = join(dir, 'skopeo-oci.tar');
    await tool('skopeo', 'copy', `oci-archive:${source}:${TAG}`, `oci-archive:${file}:${NAME}`);
    const back = await readImageArchive(file);
    expect(back.format).toBe('oci');
    expect(back.images[0]!.names).toEqual([NAME]);
    expect(await kilnView(back.images[0]!.image)).toEqual(await skopeoView(`oci-archive:${file}:${NAME}`));
    expect(await back.images[0]!.image.digest()).toBe(await image.digest());
    await back.close();
  });

  it('a docker-archive, with the same config and diffIDs', async () => {
    const file = join(dir, 'skopeo-docker.tar');
    await tool('skopeo', 'copy', `oci-archive:${source}:${TAG}`, `docker-archive:${file}:kiln-test/app:1`);
    const back = await readImageArchive(file);
    expect(back.format).toBe('docker');
    expect(back.images[0]!.names).toEqual([NAME]);
    const seen = await skopeoView(`docker-archive:${file}`);
    expect(await back.images[0]!.image.configName()).toBe(seen.config);
    expect(await diffIDsOf(back.images[0]!.image)).toEqual(seen.layers);
    expect(await diffIDsOf(back.images[0]!.image)).toEqual(await diffIDsOf(image));
    for (const layer of await back.images[0]!.image.layers()) {
      const chunks: Buffer[] = [];
      for await (const c of await layer.uncompressed()) chunks.push(c as Buffer);
      expect(sha256(Buffer.concat(chunks))).toBe(await layer.diffID());
    }
    await back.close();
  });
});

describe('umoci unpacks kiln layouts', () => {
  it('gives the expected rootfs: files, modes, owners, whiteouts across layers', async () => {
    const layout = join(dir, 'layout-for-umoci');
    await writeOciLayoutDir([{ image, names: [NAME] }], layout);
    const bundle = join(dir, 'bundle');
    const root = process.geteuid?.() === 0;
    await tool('umoci', 'unpack', ...(root ? [] : ['--rootless']), '--image', `${layout}:${TAG}`, bundle);
    const rootfs = join(bundle, 'rootfs');
    expect(await fsp.readFile(join(rootfs, 'etc/motd'), 'utf8')).toBe('hello from kiln\n');
    await expect(fsp.lstat(join(rootfs, 'etc/gone'))).rejects.toThrow(/ENOENT/);
    await expect(fsp.lstat(join(rootfs, 'opt/cache/old'))).rejects.toThrow(/ENOENT/);
    expect(await fsp.readFile(join(rootfs, 'opt/cache/new'), 'utf8')).toBe('fresh\n');
    expect(await fsp.readlink(join(rootfs, 'usr/bin/link'))).toBe('tool');
    const tool_ = await fsp.stat(join(rootfs, 'usr/bin/tool'));
    const cache = await fsp.stat(join(rootfs, 'opt/cache'));
    const fresh = await fsp.stat(join(rootfs, 'opt/cache/new'));
    expect(fresh.mode & 0o7777).toBe(0o600);
    expect(cache.mode & 0o7777).toBe(0o700);
    if (root) {
      expect(tool_.mode & 0o7777).toBe(0o4755);
      expect([tool_.uid, tool_.gid]).toEqual([1000, 1000]);
      expect([fresh.uid, fresh.gid]).toEqual([33, 33]);
      expect([cache.uid, cache.gid]).toEqual([33, 33]);
    }
    expect(tool_.mtimeMs).toBe(1_600_000_000_000);
  });
});
