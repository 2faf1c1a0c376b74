/**
 * Pull and push through a fault-injecting proxy in front of the real registry: 5xx, 429 with
 * Retry-After, connections cut mid-body in either direction, an upload session lost mid-way. Each
 * must end with verified digests in bounded time, or fail fast with the typed error. Also a
 * registry serving corrupt blobs and malformed manifests.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256, type Digest } from '../../src/oci/digest.js';
import {
  DigestMismatchError,
  ManifestInvalidError,
  RateLimitedError,
  Registries,
  RegistryUnavailableError,
  blobExists,
  downloadBlob,
  pullImage,
  pushImage,
  uploadBlob,
  type RegistryOptions,
} from '../../src/registry/index.js';
import { openStore } from '../../src/store/index.js';
import { startFaultProxy, startRegistry, type FaultProxy, type RegistryServer } from '../helpers/registry/index.js';
import { registryBlobPath, skopeo, storeWithImage, tempDir } from './util.js';

/** Quick retries so the suite stays fast; the bounds are what is under test. */
const FAST: RegistryOptions = { retry: { attempts: 6, baseDelayMs: 50, maxDelayMs: 500, budgetMs: 20_000 }, env: { PATH: process.env.PATH } };

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('through a faulty network', () => {
  let reg: RegistryServer;
  let proxy: FaultProxy;
  let work: string;

  beforeAll(async () => {
    reg = await startRegistry({ mode: 'none' });
    proxy = await startFaultProxy(reg.url);
    work = await tempDir();
  });
  afterAll(async () => {
    await proxy?.stop();
    await reg?.stop();
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  it('pulls despite 500s, a 429 with Retry-After and a connection cut mid-blob', async () => {
    const { store: src } = await storeWithImage('big:1', { extraLayerBytes: 2_000_000 });
    const pushed = await pushImage(await src.resolve('big:1'), `${reg.host}/faults/pull:1`, { ...FAST, store: src });
    const manifest = JSON.parse((await src.readBlob({ digest: pushed.digest })).toString()) as { layers: Array<{ digest: Digest; size: number }> };
    const big = manifest.layers.reduce((a, b) => (a.size > b.size ? a : b));

    proxy.clearFaults();
    proxy.inject({ kind: 'status', status: 500, match: /^GET \/v2\/faults\/pull\/manifests\//, times: 2 });
    proxy.inject({ kind: 'status', status: 429, retryAfter: 1, match: new RegExp(`^GET /v2/faults/pull/blobs/${big.digest}`) });
    proxy.inject({ kind: 'drop', afterBytes: 700_000, match: new RegExp(`^GET /v2/faults/pull/blobs/${big.digest}`) });
    const mark = proxy.requests.length;
    const store = await openStore({ root: await tempDir('kiln-store-') });
    const events: string[] = [];
    const started = Date.now();
    const pulled = await pullImage(`${proxy.host}/faults/pull:1`, store, { ...FAST, onEvent: (e) => e.type === 'blob' && events.push(`${e.digest}:${e.status}`) });
    const took = Date.now() - started;
    expect(pulled.digest).toBe(pushed.digest);
    expect(proxy.pending()).toEqual([]);
    expect(took).toBeGreaterThanOrEqual(1000); // the Retry-After was honoured
    expect(took).toBeLessThan(15_000);
    expect(events).toContain(`${big.digest}:resumed`);
    // The resumed GET asked for the rest only.
    const blobGets = proxy.requests.slice(mark).filter((r) => r.path.includes(big.digest));
    expect(blobGets.map((r) => r.status)).toEqual([429, 200, 206]);
    for (const l of manifest.layers) expect((await store.readBlob(l)).length).toBe(l.size);
  });

  it('pushes despite a 500 on upload start, a 429 on HEAD and a request cut mid-PUT', async () => {
    const { store } = await storeWithImage('up:1', { extraLayerBytes: 1_500_000 });
    proxy.clearFaults();
    proxy.inject({ kind: 'status', status: 429, retryAfter: 1, match: /^HEAD \/v2\/faults\/push\/blobs\// });
    proxy.inject({ kind: 'status', status: 500, match: /^POST \/v2\/faults\/push\/blobs\/uploads\// });
    proxy.inject({ kind: 'drop', direction: 'request', afterBytes: 400_000, match: /^PUT \/v2\/faults\/push\/blobs\/uploads\// });
    const started = Date.now();
    const pushed = await pushImage(await store.resolve('up:1'), `${proxy.host}/faults/push:1`, { ...FAST, store });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(proxy.pending()).toEqual([]);
    const inspected = await skopeo(['inspect', '--tls-verify=false', `docker://${reg.host}/faults/push:1`], work);
    expect(inspected.code, inspected.stderr).toBe(0);
    expect((JSON.parse(inspected.stdout) as { Digest: string }).Digest).toBe(pushed.digest);
    // And the registry's copy is whole: pulling it back verifies every digest.
    const back = await pullImage(`${reg.host}/faults/push:1`, await openStore({ root: await tempDir('kiln-store-') }), FAST);
    expect(back.digest).toBe(pushed.digest);
  });

  describe('chunked upload of a multi-MB blob', () => {
    const blob = randomBytes(6 * 1024 * 1024 + 12345);
    const digest = sha256(blob);
    const source = (b: Buffer) => ({
      digest: sha256(b),
      size: b.length,
      open: async (offset: number) => Readable.from([b.subarray(offset, offset + 1_000_000), b.subarray(offset + 1_000_000)]),
    });

    it('resumes from the offset the registry reports after a failed PATCH', async () => {
      const registries = new Registries(FAST);
      try {
        proxy.clearFaults();
        // Two PATCHes go through, the third is refused before it reaches the registry.
        proxy.inject({ kind: 'delay', ms: 0, match: /^PATCH /, times: 2 });
        proxy.inject({ kind: 'status', status: 500, match: /^PATCH / });
        const mark = proxy.requests.length;
        const client = registries.get(proxy.host);
        const outcome = await uploadBlob(client, 'faults/chunked', source(blob), { chunkSize: 1024 * 1024, monolithicMax: 1024 * 1024 });
        expect(outcome).toEqual({ kind: 'pushed', resumed: 1, restarted: 0 });
        const seen = proxy.requests.slice(mark).map((r) => `${r.method} ${r.status}`);
        // The ping; PATCH, PATCH, refused PATCH, status GET (204); then the rest and the commit.
        expect(seen.slice(0, 7)).toEqual(['GET 200', 'HEAD 404', 'POST 202', 'PATCH 202', 'PATCH 202', 'PATCH 500', 'GET 204']);
        expect(seen.filter((s) => s.startsWith('PATCH 202'))).toHaveLength(7);
        expect(seen.at(-1)).toBe('PUT 201');
        expect(await blobExists(client, 'faults/chunked', digest)).toBe(true);
        expect(sha256(await readAll(downloadBlob(client, 'faults/chunked', { digest, size: blob.length })))).toBe(digest);
      } finally {
        await registries.close();
      }
    });

    it('starts over when a cut PATCH makes the registry drop the session', async () => {
      const other = randomBytes(3 * 1024 * 1024);
      const registries = new Registries(FAST);
      try {
        proxy.clearFaults();
        proxy.inject({ kind: 'delay', ms: 0, match: /^PATCH /, times: 1 });
        proxy.inject({ kind: 'drop', direction: 'request', afterBytes: 300_000, match: /^PATCH / });
        const client = registries.get(proxy.host);
        const outcome = await uploadBlob(client, 'faults/chunked2', source(other), { chunkSize: 1024 * 1024, monolithicMax: 1024 * 1024 });
        expect(outcome.kind).toBe('pushed');
        expect(outcome.kind === 'pushed' && outcome.restarted).toBe(1);
        expect(sha256(await readAll(downloadBlob(client, 'faults/chunked2', { digest: sha256(other), size: other.length })))).toBe(sha256(other));
      } finally {
        await registries.close();
      }
    });
  });

  it('times out a stalled response and tries again', async () => {
    const { store: src } = await storeWithImage('slow:1');
    const pushed = await pushImage(await src.resolve('slow:1'), `${reg.host}/faults/stall:1`, { ...FAST, store: src });
    proxy.clearFaults();
    proxy.inject({ kind: 'delay', ms: 3_000, match: /^GET \/v2\/faults\/stall\/manifests\// });
    const started = Date.now();
    const pulled = await pullImage(`${proxy.host}/faults/stall:1`, await openStore({ root: await tempDir('kiln-store-') }), { ...FAST, idleTimeoutMs: 500 });
    expect(pulled.digest).toBe(pushed.digest);
    expect(Date.now() - started).toBeLessThan(2_500);
  });

  it('gives up within its budget when the registry keeps failing', async () => {
    const store = await openStore({ root: await tempDir('kiln-store-') });
    proxy.clearFaults();
    proxy.inject({ kind: 'status', status: 503, match: /^GET \/v2\/faults\/down\//, times: 1000 });
    const started = Date.now();
    const err = await pullImage(`${proxy.host}/faults/down:1`, store, { ...FAST, retry: { attempts: 4, baseDelayMs: 50, maxDelayMs: 200, budgetMs: 5_000 } }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(err).toBeInstanceOf(RegistryUnavailableError);
    expect((err as RegistryUnavailableError).describe()).toMatch(new RegExp(`^${proxy.host}: server error 503.*GET /v2/faults/down/manifests/1`));
    expect(proxy.requests.filter((r) => r.path.startsWith('/v2/faults/down/')).length).toBe(4);

    // A Retry-After longer than the budget ends at once with the registry's wish in the message.
    proxy.clearFaults();
    proxy.inject({ kind: 'status', status: 429, retryAfter: 3600, match: /^GET \/v2\/faults\/slow\//, times: 10 });
    const t2 = Date.now();
    const limited = await pullImage(`${proxy.host}/faults/slow:1`, store, FAST).catch((e: unknown) => e);
    expect(Date.now() - t2).toBeLessThan(2_000);
    expect(limited).toBeInstanceOf(RateLimitedError);
    expect((limited as RateLimitedError).message).toMatch(/wait 3600s/);
    proxy.clearFaults();
  });
});

describe('a registry serving bad content', () => {
  let reg: RegistryServer;
  beforeAll(async () => {
    reg = await startRegistry({ mode: 'none' });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('refuses a blob whose bytes do not match its digest and stores nothing', async () => {
    const { store: src } = await storeWithImage('c:1', { extraLayerBytes: 200_000 });
    const pushed = await pushImage(await src.resolve('c:1'), `${reg.host}/bad/corrupt:1`, { ...FAST, store: src });
    const manifest = JSON.parse((await src.readBlob({ digest: pushed.digest })).toString()) as { layers: Array<{ digest: Digest; size: number }> };
    const victim = manifest.layers[1]!;
    const path = registryBlobPath(reg, victim.digest);
    const bytes = await fsp.readFile(path);
    bytes[1000] = bytes[1000]! ^ 0xff;
    await fsp.writeFile(path, bytes);

    const root = await tempDir('kiln-store-');
    const store = await openStore({ root });
    const err = await pullImage(`${reg.host}/bad/corrupt:1`, store, FAST).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect((err as DigestMismatchError).describe()).not.toContain('\n');
    expect((err as DigestMismatchError).message).toContain(victim.digest);
    expect(await store.hasBlob(victim.digest)).toBe(false);
    expect(await store.images()).toEqual([]);
    expect(await fsp.readdir(join(root, 'tmp'))).toEqual([]);
  });

  it('refuses malformed manifests, saying why', async () => {
    const cfg = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
    const post = await fetch(`${reg.url}/v2/bad/manifest/blobs/uploads/`, { method: 'POST' });
    const loc = new URL(post.headers.get('location')!, reg.url);
    loc.searchParams.set('digest', sha256(cfg));
    expect((await fetch(loc, { method: 'PUT', body: cfg })).status).toBe(201);
    const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(cfg), size: cfg.length };
    // The registry takes these; kiln must not.
    const cases: Array<[string, unknown, RegExp]> = [
      ['nolayers', { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config }, /layers is missing or not an array/],
      ['negsize', { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { ...config, size: -5 }, layers: [] }, /config is missing or not a descriptor/],
    ];
    const store = await openStore({ root: await tempDir('kiln-store-') });
    for (const [tag, doc, why] of cases) {
      const put = await fetch(`${reg.url}/v2/bad/manifest/manifests/${tag}`, {
        method: 'PUT',
        body: JSON.stringify(doc),
        headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
      });
      expect(put.status).toBe(201);
      const err = await pullImage(`${reg.host}/bad/manifest:${tag}`, store, FAST).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ManifestInvalidError);
      expect((err as ManifestInvalidError).message).toMatch(why);
      expect((err as ManifestInvalidError).describe()).toContain(reg.host);
    }
    expect(await store.images()).toEqual([]);
  });
});
