import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256, type Digest } from '../digest.js';
import { MediaType } from '../mediatypes.js';
import { Annotation } from '../types.js';
import {
  BlobNotFoundError,
  BlobVerificationError,
  LayoutError,
  LayoutRootIndex,
  OciLayout,
  RefNotFoundError,
  memoryImage,
  resolveLayoutRef,
  writeImage,
} from './index.js';

async function makeTar(files: Record<string, string>): Promise<Buffer> {
  const p = pack();
  for (const [name, content] of Object.entries(files)) p.entry({ name, mtime: new Date(0), mode: 0o644 }, content);
  p.finalize();
  const parts: Buffer[] = [];
  for await (const c of p) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** A stream that yields `data` in `chunks` pieces with a pause between them. */
function slowStream(data: Buffer, chunks: number, pauseMs: number): Readable {
  const size = Math.ceil(data.length / chunks);
  return Readable.from(
    (async function* () {
      for (let off = 0; off < data.length; off += size) {
        yield data.subarray(off, off + size);
        await sleep(pauseMs);
      }
    })(),
  );
}

let dir: string;
beforeEach(async () => {
  dir = await fsp.mkdtemp(join(tmpdir(), 'kiln-layout-'));
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

describe('OciLayout', () => {
  it('creates a layout that it (and the spec) recognise', async () => {
    const layout = await OciLayout.open(join(dir, 'l'), { create: true });
    expect(JSON.parse(await fsp.readFile(join(layout.dir, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    expect(await layout.readIndex()).toEqual({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] });
    expect((await fsp.stat(join(layout.dir, 'blobs', 'sha256'))).isDirectory()).toBe(true);
    // Opening again (or concurrently) leaves existing files alone.
    await fsp.writeFile(join(layout.dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [] }));
    await Promise.all([OciLayout.open(layout.dir, { create: true }), OciLayout.open(layout.dir, { create: true })]);
    expect(await layout.readIndex()).toEqual({ schemaVersion: 2, manifests: [] });
  });

  it('refuses a directory that is not a layout', async () => {
    await expect(OciLayout.open(dir)).rejects.toBeInstanceOf(LayoutError);
    await fsp.writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"2.0.0"}');
    await expect(OciLayout.open(dir)).rejects.toThrow(/unsupported imageLayoutVersion/);
  });

  it('writes a blob once, verified, and reads it back verified', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const data = Buffer.from('hello blob');
    const digest = sha256(data);
    const first = await layout.writeBlob(data, { expected: { digest, size: data.length } });
    expect(first).toEqual({ digest, size: data.length, written: true });
    const ino = (await fsp.stat(layout.blobPath(digest))).ino;
    const again = await layout.writeBlob(Readable.from([data]), { expected: { digest, size: data.length } });
    expect(again.written).toBe(false);
    const unnamed = await layout.writeBlob(data);
    expect(unnamed).toEqual({ digest, size: data.length, written: false });
    expect((await fsp.stat(layout.blobPath(digest))).ino).toBe(ino);
    expect(await layout.readBlob({ digest, size: data.length })).toEqual(data);
    expect(await layout.listBlobs()).toEqual([digest]);
    expect(await fsp.readdir(layout.tmpDir)).toEqual([]);
  });

  it('refuses content that does not match its digest, names the blob and leaves nothing', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const claimed = sha256('something else');
    const err = await layout.writeBlob(Buffer.from('actual content'), { expected: { digest: claimed } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlobVerificationError);
    expect((err as BlobVerificationError).message).toContain(claimed);
    expect((err as BlobVerificationError).message).toContain(sha256('actual content'));
    expect(await layout.hasBlob(claimed)).toBe(false);
    expect(await layout.listBlobs()).toEqual([]);
    expect(await fsp.readdir(layout.tmpDir)).toEqual([]);

    // Oversize content fails as soon as it passes the expected size.
    const big = Buffer.alloc(1 << 20, 1);
    const oversize = await layout.writeBlob(big, { expected: { digest: sha256(big), size: 10 } }).catch((e: unknown) => e);
    expect(oversize).toBeInstanceOf(BlobVerificationError);
    expect((oversize as Error).message).toMatch(/expected 10/);
    expect(await layout.listBlobs()).toEqual([]);
    expect(await fsp.readdir(layout.tmpDir)).toEqual([]);
  });

  it('never shows a partial blob to a concurrent reader', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const data = Buffer.alloc(4 << 20);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i);
    const digest = sha256(data);
    const path = layout.blobPath(digest);
    let writing = true;
    let observedComplete = 0;
    let observedAbsent = 0;
    const reader = (async () => {
      while (writing) {
        try {
          const content = await fsp.readFile(path);
          // Whenever the name exists, the content is whole.
          expect(content.length).toBe(data.length);
          expect(createHash('sha256').update(content).digest('hex')).toBe(digest.slice(7));
          observedComplete++;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          observedAbsent++;
        }
        await sleep(1);
      }
    })();
    await layout.writeBlob(slowStream(data, 64, 3), { expected: { digest, size: data.length } });
    await sleep(20);
    writing = false;
    await reader;
    expect(observedAbsent).toBeGreaterThan(10);
    expect(observedComplete).toBeGreaterThan(0);
  });

  it('fails a read of a corrupted blob with an error naming it', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const data = Buffer.from('original content');
    const { digest } = await layout.writeBlob(data);
    await fsp.chmod(layout.blobPath(digest), 0o644);
    await fsp.writeFile(layout.blobPath(digest), 'tampered content'); // same length
    const stream = await layout.openBlob({ digest, size: data.length });
    const err = await collect(stream).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlobVerificationError);
    expect((err as Error).message).toContain(digest);
    await expect(layout.openBlob({ digest, size: 3 })).rejects.toBeInstanceOf(BlobVerificationError);
    await expect(layout.openBlob({ digest: sha256('absent') })).rejects.toBeInstanceOf(BlobNotFoundError);
  });

  it('writes an image and reads it back as lazy Image values', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const base = await makeTar({ 'etc/os-release': 'ID=test\n' });
    const app = await makeTar({ 'app/run.sh': 'echo hi\n' });
    const image = memoryImage({
      layers: [{ blob: base }, { blob: gzipSync(app), mediaType: MediaType.ociLayerGzip }],
      config: { config: { Cmd: ['/app/run.sh'] } },
    });
    const desc = await writeImage(layout, image, { refName: 'example.com/app:v1' });
    expect(desc.digest).toBe(await image.digest());
    const index = await layout.readIndex();
    expect(index.manifests).toEqual([{ ...desc, annotations: { [Annotation.refName]: 'example.com/app:v1' } }]);

    const read = await resolveLayoutRef(layout, 'example.com/app:v1');
    expect(await read.digest()).toBe(desc.digest);
    expect((await read.configFile()).config?.Cmd).toEqual(['/app/run.sh']);
    const layers = await read.layers();
    expect(await layers[0]!.diffID()).toBe(sha256(base));
    expect(await collect(await layers[0]!.uncompressed())).toEqual(base);
    expect(await layers[1]!.diffID()).toBe(sha256(app));
    expect(await collect(await layers[1]!.uncompressed())).toEqual(app);
    expect(await collect(await layers[1]!.compressed())).toEqual(gzipSync(app));
    // Every call opens a fresh stream.
    expect(await collect(await layers[0]!.uncompressed())).toEqual(base);

    // Only entry: resolvable without a ref, and by digest; the root index lists it.
    expect(await (await resolveLayoutRef(layout, undefined)).digest()).toBe(desc.digest);
    expect(await (await resolveLayoutRef(layout, desc.digest)).digest()).toBe(desc.digest);
    await expect(resolveLayoutRef(layout, 'nope')).rejects.toBeInstanceOf(RefNotFoundError);
    const root = new LayoutRootIndex(layout);
    expect(await (await root.image(desc.digest)).configName()).toBe(await image.configName());
  });

  it('verifies the uncompressed stream of a compressed layer against its diffID', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const tar = await makeTar({ a: 'a' });
    const wrongDiff = await makeTar({ b: 'b' });
    const image = memoryImage({ layers: [{ blob: gzipSync(tar), mediaType: MediaType.ociLayerGzip }] });
    const desc = await writeImage(layout, image);
    // Rewrite the config to claim a different diffID: the layer must then fail to read.
    const manifest = await image.manifest();
    const config = { ...(await image.configFile()), rootfs: { type: 'layers' as const, diff_ids: [sha256(wrongDiff)] } };
    const rawConfig = Buffer.from(JSON.stringify(config));
    const cfg = await layout.writeBlob(rawConfig);
    const forged = Buffer.from(JSON.stringify({ ...manifest, config: { ...manifest.config, digest: cfg.digest, size: cfg.size } }));
    const forgedDesc = await layout.writeBlob(forged);
    const img = await resolveLayoutRef(layout, forgedDesc.digest).catch(() => undefined);
    expect(img).toBeUndefined(); // not listed in index.json
    await layout.addManifest({ mediaType: MediaType.ociManifest, digest: forgedDesc.digest, size: forgedDesc.size }, { refName: 'forged' });
    const layer = (await (await resolveLayoutRef(layout, 'forged')).layers())[0]!;
    const err = await collect(await layer.uncompressed()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlobVerificationError);
    expect((err as Error).message).toContain(sha256(wrongDiff));
    expect(desc.digest).not.toBe(forgedDesc.digest);
  });

  it('adds and removes index entries by ref name, replacing index.json atomically', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const a = memoryImage({ layers: [{ blob: await makeTar({ a: '1' }) }] });
    const b = memoryImage({ layers: [{ blob: await makeTar({ b: '2' }) }] });
    const da = await writeImage(layout, a, { refName: 'x:1' });
    const db = await writeImage(layout, b, { refName: 'x:2' });
    await layout.addManifest(db, { refName: 'x:1' }); // moves the name
    const names = (await layout.readIndex()).manifests.map((d) => [d.annotations?.[Annotation.refName], d.digest]);
    expect(names).toEqual([
      ['x:2', db.digest],
      ['x:1', db.digest],
    ]);
    expect(await layout.removeRef('x:2')).toBe(1);
    expect(await layout.removeManifest(db.digest)).toBe(1);
    expect((await layout.readIndex()).manifests).toEqual([]);
    expect(da.digest).not.toBe(db.digest);
    // Readers racing with many rewrites always parse a complete index.json.
    let stop = false;
    const reader = (async () => {
      let reads = 0;
      while (!stop) {
        await layout.readIndex();
        reads++;
        await sleep(0);
      }
      return reads;
    })();
    for (let i = 0; i < 50; i++) await layout.addManifest(da, { refName: `tag:${i}` });
    stop = true;
    expect(await reader).toBeGreaterThan(0);
    expect((await layout.readIndex()).manifests).toHaveLength(50);
  });

  it('names only verified digests as blob paths', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    expect(() => layout.blobPath('sha256:../../etc/passwd' as Digest)).toThrow(LayoutError);
  });
});
