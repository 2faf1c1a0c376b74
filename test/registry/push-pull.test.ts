/**
 * Push and pull against Debian's real docker-registry in each auth mode, checked with skopeo: what
 * kiln pushes skopeo reads and copies with the same digests, what skopeo pushes kiln pulls with the
 * same digests, and nothing is sent or fetched twice.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gunzipSync } from 'node:zlib';
import { sha256 } from '../../src/oci/digest.js';
import { memoryImage } from '../../src/oci/layout/index.js';
import { MediaType } from '../../src/oci/mediatypes.js';
import type { ImageIndex } from '../../src/oci/image.js';
import type { Index, Manifest } from '../../src/oci/types.js';
import {
  NotFoundError,
  Registries,
  fetchManifest,
  pullImage,
  pushImage,
  remoteImage,
  type Credential,
  type RegistryOptions,
} from '../../src/registry/index.js';
import { openStore } from '../../src/store/index.js';
import { requireDebianPackage, startFaultProxy, startRegistry, writeTinyOciImage, type AuthMode, type RegistryServer } from '../helpers/registry/index.js';
import { skopeo, skopeoCreds, storeWithImage, tempDir } from './util.js';

requireDebianPackage('skopeo', '/usr/bin/skopeo');

describe.each<AuthMode>(['none', 'basic', 'token'])('registry with auth %s', (mode) => {
  let reg: RegistryServer;
  let work: string;
  let opts: RegistryOptions;

  beforeAll(async () => {
    reg = await startRegistry({ mode });
    work = await tempDir();
    const credential: Credential | undefined = reg.username ? { kind: 'basic', username: reg.username, password: reg.password! } : undefined;
    // Credentials given directly, and no docker config of the machine's user in the way.
    opts = { env: { HOME: work, PATH: process.env.PATH }, ...(credential ? { credentials: credential } : {}) };
  });
  afterAll(async () => {
    await reg?.stop();
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  it('pushes a stored image with gzip layers that skopeo reads and copies with the same digests', async () => {
    const { store } = await storeWithImage('app:1');
    const local = await store.resolve('app:1');
    const ref = `${reg.host}/kiln/app:1`;
    const lines: string[] = [];
    const pushed = await pushImage(local, ref, { ...opts, store, onEvent: (e) => lines.push(`${e.type}:${'status' in e ? e.status : e.digest}`) });
    expect(pushed.blobs).toEqual({ pushed: 2, mounted: 0, existed: 0 });
    // Layers left the store gzip-compressed: a new manifest, with its own digest.
    expect(pushed.digest).not.toBe(await local.digest());

    const inspected = await skopeo(['inspect', '--tls-verify=false', ...skopeoCreds(reg), `docker://${ref}`], work);
    expect(inspected.code, inspected.stderr).toBe(0);
    const info = JSON.parse(inspected.stdout) as { Digest: string; Layers: string[]; Architecture: string };
    expect(info.Digest).toBe(pushed.digest);
    expect(info.Architecture).toBe('amd64');

    const raw = await skopeo(['inspect', '--raw', '--tls-verify=false', ...skopeoCreds(reg), `docker://${ref}`], work);
    const manifest = JSON.parse(raw.stdout) as Manifest;
    expect(sha256(raw.stdout)).toBe(pushed.digest);
    expect(manifest.layers.map((l) => l.mediaType)).toEqual([MediaType.ociLayerGzip]);
    expect(manifest.config.digest).toBe(await local.configName());
    expect(info.Layers).toEqual(manifest.layers.map((l) => l.digest));

    const dest = join(work, `copy-${mode}`);
    const copied = await skopeo(['copy', '--insecure-policy', '--src-tls-verify=false', ...skopeoCreds(reg, '--src-creds'), `docker://${ref}`, `oci:${dest}:app`], work);
    expect(copied.code, copied.stderr).toBe(0);
    const index = JSON.parse(await fsp.readFile(join(dest, 'index.json'), 'utf8')) as Index;
    expect(index.manifests[0]!.digest).toBe(pushed.digest);
    const layerBlob = await fsp.readFile(join(dest, 'blobs', 'sha256', manifest.layers[0]!.digest.slice(7)));
    expect(sha256(gunzipSync(layerBlob))).toBe((await local.configFile()).rootfs.diff_ids[0]);

    // The store remembers the pushed manifest as the repository's digest, beside the local image.
    const rec = await store.lookup(`${ref.replace(/:1$/, '')}@${pushed.digest}`);
    expect(rec.digest).toBe(pushed.digest);
    expect((await store.lookup('app:1')).digest).toBe(await local.digest());
  });

  it('pulls what skopeo pushed, with the same digests, and fetches nothing twice', async () => {
    const tiny = await writeTinyOciImage(join(work, `tiny-${mode}`), { tag: 'v1', files: { 'hello.txt': `hello ${mode}\n` } });
    const ref = `${reg.host}/kiln/tiny:v1`;
    const up = await skopeo(['copy', '--insecure-policy', '--dest-tls-verify=false', ...skopeoCreds(reg, '--dest-creds'), tiny.ref, `docker://${ref}`], work);
    expect(up.code, up.stderr).toBe(0);

    const store = await openStore({ root: await tempDir('kiln-store-') });
    const events: string[] = [];
    const pulled = await pullImage(ref, store, { ...opts, onEvent: (e) => e.type === 'blob' && events.push(`${e.kind}:${e.status}`) });
    expect(pulled.digest).toBe(tiny.manifest.digest);
    expect(pulled.manifestDigest).toBe(tiny.manifest.digest);
    expect(pulled.name).toBe(ref);
    expect(pulled.downloaded).toBe(2);
    expect(await pulled.image.configName()).toBe(tiny.config.digest);
    for (const [digest, bytes] of tiny.blobs) expect(await store.readBlob({ digest: digest as `sha256:${string}` })).toEqual(bytes);
    expect((await store.lookup(ref)).digest).toBe(tiny.manifest.digest);
    expect(events).toEqual(['config:downloading', 'config:done', 'layer:downloading', 'layer:done']);

    const again = await pullImage(ref, store, opts);
    expect(again.downloaded).toBe(0);
    expect(again.upToDate).toBe(true);

    // By digest: recorded under repo@digest.
    const byDigest = await pullImage(`${reg.host}/kiln/tiny@${tiny.manifest.digest}`, store, opts);
    expect(byDigest.name).toBe(`${reg.host}/kiln/tiny@${tiny.manifest.digest}`);
    expect(byDigest.downloaded).toBe(0);
  });

  it('re-pushes without sending a blob byte, and mounts blobs into another repository', async () => {
    const proxy = await startFaultProxy(reg.url);
    try {
      const { store } = await storeWithImage('again:1', { extraLayerBytes: 300_000 });
      const local = await store.resolve('again:1');
      const ref = `${proxy.host}/kiln/again:1`;
      const first = await pushImage(local, ref, { ...opts, store });
      expect(first.blobs.pushed).toBe(3);
      const before = proxy.stats.bytesToServer;
      const mark = proxy.requests.length;
      const second = await pushImage(local, ref, { ...opts, store });
      expect(second.digest).toBe(first.digest);
      expect(second.blobs).toEqual({ pushed: 0, mounted: 0, existed: 3 });
      expect(proxy.stats.bytesToServer - before).toBe(0);
      expect(proxy.requests.slice(mark).filter((r) => r.method !== 'HEAD' && r.method !== 'GET')).toEqual([]);

      // Another repository on the same registry: the store knows where the blobs are, so they are mounted.
      const third = await pushImage(local, `${proxy.host}/kiln/other:1`, { ...opts, store });
      expect(third.digest).toBe(first.digest);
      expect(third.blobs).toEqual({ pushed: 0, mounted: 3, existed: 0 });
      expect(proxy.requests.some((r) => r.method === 'POST' && r.path.includes('mount=') && r.status === 201)).toBe(true);
    } finally {
      await proxy.stop();
    }
  });

  it('pushes an index with its images and pulls the platform asked for', async () => {
    const image = (arch: string) =>
      memoryImage({ layers: [{ blob: Buffer.from(`layer for ${arch} ${mode}`) }], config: { architecture: arch, os: 'linux' } });
    const amd = image('amd64');
    const arm = image('arm64');
    const children = await Promise.all(
      [amd, arm].map(async (img, i) => ({
        mediaType: MediaType.ociManifest,
        digest: await img.digest(),
        size: (await img.rawManifest()).length,
        platform: { os: 'linux', architecture: i === 0 ? 'amd64' : 'arm64' },
      })),
    );
    const doc: Index = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: children };
    const raw = Buffer.from(JSON.stringify(doc));
    const index: ImageIndex = {
      mediaType: async () => MediaType.ociIndex,
      digest: async () => sha256(raw),
      indexManifest: async () => doc,
      rawManifest: async () => raw,
      image: async (d) => (d === children[0]!.digest ? amd : arm),
      imageIndex: async () => {
        throw new Error('no nested index');
      },
    };
    const ref = `${reg.host}/kiln/multi:1`;
    const pushed = await pushImage(index, ref, opts);
    expect(pushed.digest).toBe(sha256(raw));
    expect(pushed.mediaType).toBe(MediaType.ociIndex);
    const got = await skopeo(['inspect', '--raw', '--tls-verify=false', ...skopeoCreds(reg), `docker://${ref}`], work);
    expect(sha256(got.stdout)).toBe(pushed.digest);

    const store = await openStore({ root: await tempDir('kiln-store-') });
    const pulled = await pullImage(ref, store, { ...opts, platform: 'linux/arm64' });
    expect(pulled.digest).toBe(pushed.digest);
    expect(pulled.manifestDigest).toBe(children[1]!.digest);
    expect((await pulled.image.configFile()).architecture).toBe('arm64');

    // Read without storing.
    const registries = new Registries(opts);
    try {
      const remote = await remoteImage(ref, { ...opts, registries, platform: { os: 'linux', architecture: 'amd64' } });
      expect(await remote.digest()).toBe(children[0]!.digest);
      const [layer] = await remote.layers();
      const chunks: Buffer[] = [];
      for await (const c of await layer!.uncompressed()) chunks.push(c as Buffer);
      expect(Buffer.concat(chunks).toString()).toBe(`layer for amd64 ${mode}`);
    } finally {
      await registries.close();
    }
  });

  it('says NotFoundError in one line for an unknown repository or tag', async () => {
    const store = await openStore({ root: await tempDir('kiln-store-') });
    const unknownRepo = pullImage(`${reg.host}/kiln/nosuch:1`, store, opts);
    await expect(unknownRepo).rejects.toBeInstanceOf(NotFoundError);
    const err = (await unknownRepo.catch((e: unknown) => e)) as NotFoundError;
    expect(err.describe()).not.toContain('\n');
    expect(err.describe()).toContain(reg.host);
    expect(err.message).toMatch(/kiln\/nosuch:1/);

    const { store: s2 } = await storeWithImage('x:1');
    await pushImage(await s2.resolve('x:1'), `${reg.host}/kiln/known:1`, { ...opts, store: s2 });
    const unknownTag = await pullImage(`${reg.host}/kiln/known:nope`, store, opts).catch((e: unknown) => e);
    expect(unknownTag).toBeInstanceOf(NotFoundError);
    expect((unknownTag as NotFoundError).message).toMatch(/kiln\/known:nope not found: manifest unknown/);
    expect(await store.images()).toEqual([]);
  });

  it('fetches manifests with the Accept list and verifies them', async () => {
    const tiny = await writeTinyOciImage(join(work, `tiny2-${mode}`), { tag: 'v2' });
    await skopeo(['copy', '--insecure-policy', '--dest-tls-verify=false', ...skopeoCreds(reg, '--dest-creds'), tiny.ref, `docker://${reg.host}/kiln/acc:v2`], work);
    const registries = new Registries(opts);
    try {
      const m = await fetchManifest(registries.get(reg.host), 'kiln/acc', 'v2');
      expect(m.digest).toBe(tiny.manifest.digest);
      expect(m.mediaType).toBe(MediaType.ociManifest);
      expect(gunzipSync(tiny.blobs.get(tiny.layer.digest)!).length).toBeGreaterThan(0);
    } finally {
      await registries.close();
    }
  });
});
