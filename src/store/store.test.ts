import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256, type Digest } from '../oci/digest.js';
import type { Image } from '../oci/image.js';
import { BlobVerificationError } from '../oci/layout/errors.js';
import { memoryImage } from '../oci/layout/memory.js';
import { MediaType } from '../oci/mediatypes.js';
import { Annotation } from '../oci/types.js';
import {
  AmbiguousImageError,
  ImageConflictError,
  ImageNotFoundError,
  defaultLayerCodec,
  defaultStoreRoot,
  openStore,
  type LayerCodec,
  type Store,
} from './index.js';
import { normalizeName } from '../oci/reference.js';

async function makeTar(files: Record<string, string>): Promise<Buffer> {
  const p = pack();
  for (const [name, content] of Object.entries(files)) p.entry({ name, mtime: new Date(0), mode: 0o644, uid: 0, gid: 0 }, content);
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

/** Reads every blob of an image through its verifying streams. */
async function verifyImage(image: Image): Promise<void> {
  await image.configFile();
  for (const layer of await image.layers()) await collect(await layer.compressed());
}

/** A codec that counts calls, delegating to the real layer module. */
function countingCodec(): LayerCodec & { extracts: number; compressions: number } {
  const counts = { extracts: 0, compressions: 0 };
  return Object.assign(counts, {
    async extract(tar: Readable, dir: string) {
      counts.extracts++;
      await (await defaultLayerCodec()).extract(tar, dir);
    },
    async compress(tar: Readable, compression: 'gzip' | 'zstd') {
      counts.compressions++;
      return (await defaultLayerCodec()).compress(tar, compression);
    },
  });
}

const here = resolve(import.meta.dirname);

/** Runs a TypeScript snippet in a child process (with the store module importable as `store`). */
function child(script: string, args: string[], onStdout?: (line: string, kill: () => void) => void): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return (async () => {
    const file = join(dir, `child-${Math.random().toString(36).slice(2)}.mts`);
    const prelude = [
      `import * as store from ${JSON.stringify(pathToFileURL(join(here, 'index.ts')).href)};`,
      `import * as layout from ${JSON.stringify(pathToFileURL(join(here, '../oci/layout/index.ts')).href)};`,
      `import { pack } from ${JSON.stringify(pathToFileURL(createRequire(import.meta.url).resolve('tar-stream')).href)};`,
      `void store; void layout; void pack;`,
    ].join('\n');
    await fsp.writeFile(file, `${prelude}\n${script}\n`);
    return new Promise((resolveRun, reject) => {
      // One process (no tsx launcher in between), so a SIGKILL hits the writer itself.
      const proc = spawn(process.execPath, ['--import', 'tsx', file, ...args], { cwd: resolve(here, '../..'), stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      let buf = '';
      proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      proc.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          onStdout?.(line, () => proc.kill('SIGKILL'));
        }
      });
      proc.on('error', reject);
      proc.on('close', (code, signal) => resolveRun({ code, signal, stderr }));
    });
  })();
}

let dir: string;
let root: string;
beforeEach(async () => {
  dir = await fsp.mkdtemp(join(tmpdir(), 'kiln-store-'));
  root = join(dir, 'root');
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

describe('store root', () => {
  it('follows KILN_ROOT, then XDG_DATA_HOME, then the home directory', () => {
    expect(defaultStoreRoot({ KILN_ROOT: '/x/y' })).toBe('/x/y');
    const realRoot = process.geteuid?.() === 0;
    // Real root uses /var/lib/kiln; everyone else their data directory.
    expect(defaultStoreRoot({ XDG_DATA_HOME: '/data' })).toBe(realRoot ? '/var/lib/kiln' : '/data/kiln');
    if (!realRoot) expect(defaultStoreRoot({ HOME: '/home/u' })).toBe('/home/u/.local/share/kiln');
  });
});

describe('references', () => {
  it('normalises names like Docker', () => {
    expect(normalizeName('busybox')).toBe('docker.io/library/busybox:latest');
    expect(normalizeName('user/app:1.0')).toBe('docker.io/user/app:1.0');
    expect(normalizeName('localhost:5000/app')).toBe('localhost:5000/app:latest');
    expect(normalizeName('ghcr.io/o/app@sha256:' + 'a'.repeat(64))).toBe('ghcr.io/o/app@sha256:' + 'a'.repeat(64));
    expect(normalizeName('index.docker.io/library/alpine:3')).toBe('docker.io/library/alpine:3');
    expect(() => normalizeName('Busybox')).toThrow(/lowercase/);
    expect(() => normalizeName('app:bad tag')).toThrow(/invalid reference format/);
  });
});

describe('image records', () => {
  let store: Store;
  let a: Image;
  let b: Image;
  beforeEach(async () => {
    store = await openStore({ root });
    a = memoryImage({ layers: [{ blob: await makeTar({ 'a.txt': 'a' }) }] });
    b = memoryImage({ layers: [{ blob: await makeTar({ 'b.txt': 'b' }) }] });
  });

  it('stores an image as an OCI layout entry named by its normalised name', async () => {
    const rec = await store.putImage(a, { names: ['busybox'] });
    expect(rec.names).toEqual(['docker.io/library/busybox:latest']);
    expect(rec.dangling).toBe(false);
    const index = JSON.parse(await fsp.readFile(join(root, 'index.json'), 'utf8'));
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0].annotations[Annotation.refName]).toBe('docker.io/library/busybox:latest');
    expect(index.manifests[0].annotations[Annotation.containerdImageName]).toBe('docker.io/library/busybox:latest');
    const image = await store.resolve('busybox:latest');
    expect(await image.digest()).toBe(await a.digest());
    await verifyImage(image);
    expect(await (await store.resolve(await a.digest())).digest()).toBe(await a.digest());
    expect(await (await store.resolve((await a.digest()).slice(7, 19))).digest()).toBe(await a.digest());
  });

  it('tags, moves names, leaves replaced images dangling, and removes like docker rmi', async () => {
    const da = await a.digest();
    const db = await b.digest();
    await store.putImage(a, { names: ['app:1'] });
    await store.tag('app:1', 'app:latest');
    expect((await store.lookup('app')).names).toEqual(['docker.io/library/app:1', 'docker.io/library/app:latest']);
    // A new build under an existing name takes the name; the old image keeps its other name.
    await store.putImage(b, { names: ['app:latest'] });
    expect((await store.lookup('app:latest')).digest).toBe(db);
    expect((await store.lookup('app:1')).digest).toBe(da);
    // Losing the last name leaves the image dangling, not gone.
    await store.putImage(b, { names: ['app:1'] });
    const recA = (await store.images()).find((r) => r.digest === da)!;
    expect(recA.dangling).toBe(true);
    expect(recA.names).toEqual([]);

    await expect(store.remove(db)).rejects.toBeInstanceOf(ImageConflictError);
    expect(await store.remove('app:1')).toEqual({ untagged: ['docker.io/library/app:1'], deleted: [] });
    expect(await store.remove('app')).toEqual({ untagged: ['docker.io/library/app:latest'], deleted: [db] });
    await expect(store.resolve('app')).rejects.toBeInstanceOf(ImageNotFoundError);
    expect(await store.remove(da.slice(7, 15))).toEqual({ untagged: [], deleted: [da] });
    expect(await store.images()).toEqual([]);
  });

  it('records images by digest only, and untag keeps them', async () => {
    const rec = await store.putImage(a);
    expect(rec.dangling).toBe(true);
    expect((await store.putImage(a)).digest).toBe(rec.digest);
    expect(await store.images()).toHaveLength(1);
    await store.tag(rec.digest, 'x');
    expect(await store.untag('x')).toEqual({ untagged: 'docker.io/library/x:latest', digest: rec.digest });
    expect((await store.images())[0]!.dangling).toBe(true);
    await expect(store.untag('x')).rejects.toBeInstanceOf(ImageNotFoundError);
  });

  it('stores an image pulled by digest under name@digest', async () => {
    const d = await a.digest();
    await store.putImage(a, { names: [`ghcr.io/o/app@${d}`] });
    expect((await store.lookup(`ghcr.io/o/app@${d}`)).names).toEqual([`ghcr.io/o/app@${d}`]);
    await expect(store.putImage(b, { names: [`ghcr.io/o/app@${d}`] })).rejects.toThrow(/digest/);
  });

  it('refuses ambiguous ID prefixes', async () => {
    const images: Image[] = [];
    for (let i = 0; i < 40; i++) images.push(memoryImage({ layers: [{ blob: await makeTar({ [`f${i}`]: String(i) }) }] }));
    for (const img of images) await store.putImage(img);
    const digests = await Promise.all(images.map((i) => i.digest()));
    const first = digests.map((d) => d[7]!);
    const shared = first.find((c, i) => first.indexOf(c) !== i)!;
    await expect(store.lookup(shared)).rejects.toBeInstanceOf(AmbiguousImageError);
  });

  it('resolves a platform from a multi-platform index', async () => {
    const { writeImage } = await import('../oci/layout/write.js');
    const amd = memoryImage({ layers: [{ blob: await makeTar({ amd: '1' }) }], config: { architecture: 'amd64' } });
    const arm = memoryImage({ layers: [{ blob: await makeTar({ arm: '1' }) }], config: { architecture: 'arm64' } });
    const da = await writeImage(store.layout, amd);
    const dr = await writeImage(store.layout, arm);
    const rawIndex = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.ociIndex,
        manifests: [
          { ...da, platform: { os: 'linux', architecture: 'amd64' } },
          { ...dr, platform: { os: 'linux', architecture: 'arm64' } },
        ],
      }),
    );
    const { LayoutIndex } = await import('../oci/layout/image.js');
    const written = await store.layout.writeBlob(rawIndex);
    await store.putImage(new LayoutIndex(store.layout, { digest: written.digest, size: written.size, mediaType: MediaType.ociIndex }), { names: ['multi'] });
    expect(await (await store.resolve('multi', { platform: { os: 'linux', architecture: 'arm64' } })).digest()).toBe(dr.digest);
    expect(await (await store.resolve('multi', { platform: { os: 'linux', architecture: 'amd64' } })).digest()).toBe(da.digest);
    const missing = await store.resolve('multi', { platform: { os: 'linux', architecture: 's390x' } }).catch((e: unknown) => e);
    expect((missing as { describe(): string }).describe()).toMatch(/linux\/s390x.*linux\/amd64, linux\/arm64/);
    // The index keeps both children alive through prune.
    const gc = await store.prune({});
    expect(gc.blobsRemoved).toBe(0);
  });
});

describe('garbage collection and leases', () => {
  it('prunes dangling images, or all with `all`, and sweeps their content', async () => {
    const store = await openStore({ root });
    const shared = await makeTar({ 'base.txt': 'base' });
    const a = memoryImage({ layers: [{ blob: shared }, { blob: await makeTar({ a: 'a' }) }] });
    const b = memoryImage({ layers: [{ blob: shared }, { blob: await makeTar({ b: 'b' }) }] });
    await store.putImage(a, { names: ['keep'] });
    await store.putImage(b);
    const before = (await store.layout.listBlobs()).length;
    expect(before).toBe(7); // 2 manifests, 2 configs, 3 layers

    const dangling = await store.prune();
    expect(dangling.imagesRemoved.map((r) => r.digest)).toEqual([await b.digest()]);
    expect(dangling.blobsRemoved).toBe(3); // b's manifest, config, own layer; the shared layer stays
    await verifyImage(await store.resolve('keep'));

    const all = await store.prune({ all: true });
    expect(all.imagesRemoved.map((r) => r.names)).toEqual([['docker.io/library/keep:latest']]);
    expect(await store.layout.listBlobs()).toEqual([]);
    expect(await store.images()).toEqual([]);
  });

  it('never removes leased content, and forgets leases of dead processes', async () => {
    const store = await openStore({ root });
    const img = memoryImage({ layers: [{ blob: await makeTar({ a: 'a' }) }] });
    const lease = await store.createLease({ label: 'build' });
    await store.putImage(img, { lease });
    const loose = await store.writeBlob(Buffer.from('work in progress'), { lease });
    await store.remove(await img.digest());

    const pruned = await store.prune({ all: true });
    expect(pruned.blobsRemoved).toBe(0);
    expect(await store.hasBlob(loose.digest)).toBe(true);
    await verifyImage(await store.resolve(await img.digest()));
    expect((await store.leases()).map((l) => [l.id, l.expired])).toEqual([[lease.id, false]]);

    // A lease file of a process that has exited protects nothing.
    await lease.release();
    const dead = spawn('true');
    await new Promise((r) => dead.on('close', r));
    const stale = { id: 'stale', pid: dead.pid, start: '1', hostname: (await import('node:os')).hostname(), created: new Date().toISOString(), digests: [loose.digest] };
    await fsp.writeFile(join(root, 'leases', 'stale.json'), JSON.stringify(stale));
    expect((await store.leases())[0]!.expired).toBe(true);
    const swept = await store.gc();
    expect(swept.leasesExpired).toBe(1);
    expect(await store.layout.listBlobs()).toEqual([]);
    expect(await fsp.readdir(join(root, 'leases'))).toEqual([]);
  });

  it('pins an image for a running build while the store is pruned', async () => {
    const store = await openStore({ root });
    const base = memoryImage({ layers: [{ blob: await makeTar({ base: '1' }) }] });
    await store.putImage(base, { names: ['base'] });
    const lease = await store.createLease({ label: 'build' });
    // The build depends on the base image: its manifest digest is enough to pin everything below.
    await lease.add(await base.digest());
    await store.remove('base');
    expect((await store.prune({ all: true })).blobsRemoved).toBe(0);
    await verifyImage(await store.resolve(await base.digest()));
    await lease.release();
    expect((await store.gc()).blobsRemoved).toBe(3);
  });

  it('reports disk usage per image and per area', async () => {
    const store = await openStore({ root });
    const shared = await makeTar({ 'base.txt': 'base' });
    const a = memoryImage({ layers: [{ blob: shared }, { blob: await makeTar({ a: 'a' }) }] });
    const b = memoryImage({ layers: [{ blob: shared }] });
    await store.putImage(a, { names: ['a'] });
    await store.putImage(b, { names: ['b'] });
    await fsp.writeFile(join(store.cacheDir, 'entry'), Buffer.alloc(1000));
    const du = await store.du();
    const ua = du.images.find((i) => i.names.includes('docker.io/library/a:latest'))!;
    const ub = du.images.find((i) => i.names.includes('docker.io/library/b:latest'))!;
    expect(ua.size).toBe(ua.uniqueSize + shared.length);
    expect(ub.uniqueSize).toBe(ub.size - shared.length);
    expect(du.blobs.count).toBe(6);
    expect(du.buildCache.size).toBe(1000);
    expect(du.total).toBe(du.blobs.size + du.snapshots.size + du.buildCache.size + du.temp.size);
  });
});

describe('layers: compression and snapshots', () => {
  it('compresses a layer once and keeps the variant while the layer is used', async () => {
    const codec = countingCodec();
    const store = await openStore({ root, layerCodec: codec });
    const tar = await makeTar({ 'hello.txt': 'hello world\n'.repeat(100) });
    const img = memoryImage({ layers: [{ blob: tar }] });
    await store.putImage(img, { names: ['app'] });
    const diffID = sha256(tar);
    const [g1, g2] = await Promise.all([store.compressedLayer(diffID, 'gzip'), store.compressedLayer(diffID, 'gzip')]);
    const g3 = await store.compressedLayer(diffID, 'gzip');
    expect(codec.compressions).toBe(1);
    expect(g1).toEqual(g2);
    expect(g3).toEqual(g1);
    expect(g1.mediaType).toBe(MediaType.ociLayerGzip);
    expect(gunzipSync(await store.readBlob(g1))).toEqual(tar);
    expect(await store.compressedLayer(diffID, 'none')).toEqual({ mediaType: MediaType.ociLayer, digest: diffID, size: tar.length });

    // A second store process finds the record instead of compressing again.
    const again = await openStore({ root, layerCodec: codec });
    expect(await again.compressedLayer(diffID, 'gzip')).toEqual(g1);
    expect(codec.compressions).toBe(1);

    // The variant lives as long as an image has the layer.
    expect((await store.prune({})).blobsRemoved).toBe(0);
    await store.remove('app');
    await store.prune({});
    expect(await store.layout.listBlobs()).toEqual([]);
    expect(await fsp.readdir(join(root, 'compressed'))).toEqual([]);
  });

  it('records the diffIDs of compressed layers it stores', async () => {
    const store = await openStore({ root });
    const tar = await makeTar({ x: 'x' });
    const gz = gzipSync(tar);
    await store.putImage(memoryImage({ layers: [{ blob: gz, mediaType: MediaType.ociLayerGzip }] }), { names: ['pulled'] });
    expect(await store.compressedLayer(sha256(tar), 'gzip')).toEqual({ mediaType: MediaType.ociLayerGzip, digest: sha256(gz), size: gz.length });
    expect(await collect(await store.openUncompressed(sha256(tar)))).toEqual(tar);
  });

  it('shares one snapshot between images with the same layer and gives short lowerdirs', async () => {
    const codec = countingCodec();
    const store = await openStore({ root, layerCodec: codec });
    const base = await makeTar({ 'etc/base': 'base\n' });
    const one = await makeTar({ 'one.txt': '1\n' });
    const two = await makeTar({ 'two.txt': '2\n' });
    const a = memoryImage({ layers: [{ blob: base }, { blob: one }] });
    const b = memoryImage({ layers: [{ blob: gzipSync(base), mediaType: MediaType.ociLayerGzip }, { blob: two }] });
    await store.putImage(a, { names: ['a'] });
    await store.putImage(b, { names: ['b'] });
    const lease = await store.createLease({ label: 'run' });
    const [la, lb] = await Promise.all([
      store.lowerDirs(await store.resolve('a'), { lease }),
      store.lowerDirs(await store.resolve('b'), { lease }),
    ]);
    expect(codec.extracts).toBe(3); // base once, one, two
    // Topmost layer first; the base snapshot is literally the same directory.
    expect(la.absolute[1]).toBe(lb.absolute[1]);
    expect(la.absolute[1]).toBe(join(root, 'snapshots', sha256(base).slice(7), 'fs'));
    expect(la.lowerdirs).toEqual([`l/${sha256(one).slice(7, 19)}`, `l/${sha256(base).slice(7, 19)}`]);
    expect(la.option).toBe(`lowerdir=${la.lowerdirs.join(':')}`);
    expect(await fsp.readFile(join(la.cwd, la.lowerdirs[1]!, 'etc/base'), 'utf8')).toBe('base\n');
    expect(await fsp.readFile(join(lb.cwd, lb.lowerdirs[0]!, 'two.txt'), 'utf8')).toBe('2\n');
    // 300 layers would still fit the 4 KB mount option limit.
    expect(la.lowerdirs[0]!.length + 1).toBeLessThanOrEqual(4096 / 250);
    await lease.release();

    // Removing b frees its own snapshot; the shared one stays for a.
    await store.remove('b');
    const gc = await store.prune({});
    expect(gc.snapshotsRemoved).toBe(1);
    expect((await fsp.readdir(join(root, 'snapshots'))).sort()).toEqual([sha256(base).slice(7), sha256(one).slice(7)].sort());
    expect((await fsp.readdir(join(root, 'l'))).sort()).toEqual([sha256(base).slice(7, 19), sha256(one).slice(7, 19)].sort());
    // Snapshots exist only while something uses their layer.
    await store.remove('a');
    await store.prune({});
    expect(await fsp.readdir(join(root, 'snapshots'))).toEqual([]);
    expect(await fsp.readdir(join(root, 'l'))).toEqual([]);
  });

  it('mounts a repeated layer once, at its topmost position', async () => {
    const store = await openStore({ root });
    const x = await makeTar({ x: 'x' });
    const y = await makeTar({ y: 'y' });
    const img = memoryImage({ layers: [{ blob: x }, { blob: y }, { blob: x }] });
    await store.putImage(img, { names: ['rep'] });
    const l = await store.lowerDirs(await store.resolve('rep'));
    expect(l.lowerdirs).toEqual([`l/${sha256(x).slice(7, 19)}`, `l/${sha256(y).slice(7, 19)}`]);
  });

  it('refuses a snapshot whose stream does not match the diffID and leaves nothing', async () => {
    const store = await openStore({ root });
    const tar = await makeTar({ a: 'a' });
    const claimed = sha256('other') as Digest;
    const err = await store.snapshotFor(claimed, async () => Readable.from([tar])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlobVerificationError);
    expect(await fsp.readdir(join(root, 'snapshots'))).toEqual([]);
    expect(await fsp.readdir(join(root, 'tmp'))).toEqual([]);
  });
});

describe('several processes', () => {
  const writer = `
    const [root, id, count] = process.argv.slice(2);
    const s = await store.openStore({ root });
    async function tar(files: Record<string, string>): Promise<Buffer> {
      const p = pack();
      for (const [name, content] of Object.entries(files)) p.entry({ name, mtime: new Date(0) }, content);
      p.finalize();
      const parts: Buffer[] = [];
      for await (const c of p) parts.push(c as Buffer);
      return Buffer.concat(parts);
    }
    const shared = await tar({ shared: 'same in every process' });
    for (let i = 0; i < Number(count); i++) {
      const img = layout.memoryImage({ layers: [{ blob: shared }, { blob: await tar({ own: id + '-' + i, pad: 'x'.repeat(50000 + i) }) }] });
      await s.putImage(img, { names: ['w' + id + ':' + i, 'shared:latest'] });
      if (i % 3 === 0) await s.prune({});
    }
  `;

  it('two writers and a pruner on one store end consistent', async () => {
    await openStore({ root });
    const count = 8;
    const runs = await Promise.all([child(writer, [root, '1', String(count)]), child(writer, [root, '2', String(count)])]);
    for (const r of runs) expect(r.stderr).toBe('');
    for (const r of runs) expect(r.code).toBe(0);
    const store = await openStore({ root });
    const images = await store.images();
    const names = images.flatMap((r) => r.names);
    for (const id of ['1', '2']) for (let i = 0; i < count; i++) expect(names).toContain(`docker.io/library/w${id}:${i}`);
    expect(names.filter((n) => n === 'docker.io/library/shared:latest')).toHaveLength(1);
    for (const rec of images) await verifyImage(await store.resolve(rec.digest));
    const pruned = await store.prune({});
    expect(pruned.blobsRemoved).toBe(0);
    expect(pruned.problems).toEqual([]);
    expect(await fsp.readdir(join(root, 'tmp'))).toEqual([]);
    expect(await fsp.readdir(join(root, 'leases'))).toEqual([]);
  }, 120_000);

  it('a writer killed with SIGKILL mid-write leaves a working store whose prune removes the debris', async () => {
    const store = await openStore({ root });
    const kept = memoryImage({ layers: [{ blob: await makeTar({ kept: 'yes' }) }] });
    await store.putImage(kept, { names: ['kept'] });
    const script = `
      const [root] = process.argv.slice(2);
      const s = await store.openStore({ root });
      const { Readable } = await import('node:stream');
      const { setTimeout: sleep } = await import('node:timers/promises');
      const big = Buffer.alloc(8 << 20, 7);
      const base = layout.memoryImage({ layers: [{ blob: big }] });
      // The same image, but its layer trickles in and never finishes before the kill.
      const slow = { ...base, layers: async () => (await base.layers()).map((l) => ({ ...l,
        digest: () => l.digest(), diffID: () => l.diffID(), size: () => l.size(), mediaType: () => l.mediaType(),
        uncompressed: () => l.uncompressed(),
        compressed: async () => Readable.from((async function* () {
          for (let off = 0; ; off += 65536) {
            yield big.subarray(off % big.length, (off % big.length) + 65536);
            if (off === 65536 * 4) console.log('writing');
            await sleep(20);
          }
        })()),
      })) };
      await s.putImage(slow, { names: ['never'] });
    `;
    const run = await child(script, [root], (line, kill) => {
      if (line === 'writing') kill();
    });
    expect(run.signal).toBe('SIGKILL');
    expect((await fsp.readdir(join(root, 'tmp'))).length).toBeGreaterThan(0);
    expect((await fsp.readdir(join(root, 'leases'))).length).toBe(1);

    const after = await openStore({ root });
    expect((await after.images()).flatMap((r) => r.names)).toEqual(['docker.io/library/kept:latest']);
    const pruned = await after.prune({});
    expect(pruned.tempRemoved).toBeGreaterThan(0);
    expect(pruned.leasesExpired).toBe(1);
    expect(await fsp.readdir(join(root, 'tmp'))).toEqual([]);
    expect(await fsp.readdir(join(root, 'leases'))).toEqual([]);
    // Only the kept image's blobs remain, intact.
    expect((await after.layout.listBlobs()).length).toBe(3);
    await verifyImage(await after.resolve('kept'));
  }, 60_000);
});
