/**
 * `--cache-to` / `--cache-from` end to end against the real registry (Debian's docker-registry) on
 * loopback, as a CI fleet uses them: one store builds and exports, an empty store imports and
 * rebuilds. The fixture's RUN steps write random bytes, so an image identical to the first build's
 * proves every step came from the cache; the registry proxy's request log shows which blobs the
 * import downloaded.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxStore, type BusyboxStore } from '../helpers/busybox.js';
import { copyFixture, expectOk, inspect, kilnRun } from '../helpers/build.js';
import type { RunResult } from '../helpers/kiln.js';
import { skopeo } from '../helpers/store.js';
import { startFaultProxy, startRegistry, type FaultProxy, type RegistryServer } from '../helpers/registry/index.js';

const EPOCH = ['--build-arg', 'SOURCE_DATE_EPOCH=1700000000'];
const CONFIG_TYPE = 'application/vnd.kiln.cache.config.v1+json';

interface CacheRecord {
  key: string;
  diffID: string;
  layer: number;
}
interface CacheDoc {
  manifest: { config: { mediaType: string; digest: string }; layers: Array<{ digest: string; size: number; mediaType: string }> };
  config: { records: CacheRecord[]; mounts: Array<{ id: string; layer: number }> };
}

let reg: RegistryServer;
let proxy: FaultProxy;
let ctx: string;
const stores: BusyboxStore[] = [];

async function freshStore(): Promise<BusyboxStore> {
  const s = await busyboxStore();
  stores.push(s);
  return s;
}

function build(store: BusyboxStore, args: string[], context = ctx): Promise<RunResult> {
  return kilnRun(store.root, ['build', '--progress', 'plain', ...EPOCH, ...args, context]);
}

/** Step vertices of plain progress output and whether each was cached. */
function steps(stderr: string): { total: number; cached: number } {
  const names = new Map<string, boolean>();
  for (const line of stderr.split('\n')) {
    const start = /^#(\d+) \[[^\]]+ \d+\/\d+\] /.exec(line);
    if (start) names.set(start[1]!, false);
    const cached = /^#(\d+) CACHED$/.exec(line);
    if (cached && names.has(cached[1]!)) names.set(cached[1]!, true);
  }
  return { total: names.size, cached: [...names.values()].filter(Boolean).length };
}

async function registryJSON(url: string, accept?: string): Promise<any> {
  const res = await fetch(url, accept ? { headers: { Accept: accept } } : {});
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  return res.json();
}

async function registryCache(repo: string, tag: string): Promise<CacheDoc> {
  const manifest = await registryJSON(`${reg.url}/v2/${repo}/manifests/${tag}`, 'application/vnd.oci.image.manifest.v1+json');
  const config = await registryJSON(`${reg.url}/v2/${repo}/blobs/${manifest.config.digest}`);
  return { manifest, config };
}

async function localCache(dir: string): Promise<CacheDoc> {
  const index = JSON.parse(await fsp.readFile(join(dir, 'index.json'), 'utf8'));
  const blob = (d: string) => fsp.readFile(join(dir, 'blobs', 'sha256', d.slice(7)), 'utf8').then((t) => JSON.parse(t));
  const manifest = await blob(index.manifests[0].digest);
  return { manifest, config: await blob(manifest.config.digest) };
}

beforeAll(async () => {
  reg = await startRegistry({ mode: 'none' });
  proxy = await startFaultProxy(reg.url);
  const first = await freshStore();
  ctx = await copyFixture('cache', join(first.dir, 'ctx'));
}, 180_000);

afterAll(async () => {
  await proxy?.stop();
  await reg?.stop();
  for (const s of stores) await s.cleanup();
});

describe('--cache-to type=registry / --cache-from', () => {
  it('an empty store importing a mode=max cache rebuilds every step cached, downloading only the final image layers', async () => {
    const [a, b] = [stores[0]!, await freshStore()];
    const ref = `${reg.host}/cache/app:buildcache`;
    const first = expectOk(await build(a, ['-t', 'app:1', '--cache-to', `type=registry,ref=${ref},mode=max`]));
    expect(steps(first.stderr)).toEqual({ total: 8, cached: 0 });
    expect(first.stderr).toContain(`exporting cache to ${ref}`);

    const cache = await registryCache('cache/app', 'buildcache');
    expect(cache.manifest.config.mediaType).toBe(CONFIG_TYPE);
    // Every step, and for each of the two COPY --from steps the lookup key leading to its content key.
    expect(cache.config.records).toHaveLength(10);
    expect(cache.config.records.filter((r: { resultKey?: string }) => r.resultKey)).toHaveLength(2);
    // An independent client reads it as the OCI manifest it is, and copies it blob for blob.
    const raw = JSON.parse(skopeo('inspect', '--raw', '--tls-verify=false', `docker://${ref}`));
    expect(raw.config.mediaType).toBe(CONFIG_TYPE);
    skopeo('copy', '-q', '--src-tls-verify=false', `docker://${ref}`, `oci:${join(a.dir, 'skopeo-copy')}:cache`);

    const before = proxy.requests.length;
    const second = expectOk(await build(b, ['-t', 'app:1', '--cache-from', `${proxy.host}/cache/app:buildcache`]));
    expect(steps(second.stderr)).toEqual({ total: 8, cached: 8 });
    const [imgA, imgB] = [await inspect(a.root, 'app:1'), await inspect(b.root, 'app:1')];
    expect(imgB.Id).toBe(imgA.Id);

    // The blobs fetched are exactly the cache's copies of the final image's own layers.
    const byDiff = new Map(cache.config.records.map((r) => [r.diffID, cache.manifest.layers[r.layer]!]));
    const wanted = imgB.RootFS.Layers.filter((d) => byDiff.has(d)).map((d) => byDiff.get(d)!);
    expect(wanted.length).toBe(4);
    const fetched = proxy.requests
      .slice(before)
      .filter((r) => r.method === 'GET' && r.status === 200 && /\/blobs\/sha256:/.test(r.path))
      .map((r) => r.path.slice(r.path.lastIndexOf('/') + 1))
      .filter((d) => d !== cache.manifest.config.digest);
    expect(new Set(fetched)).toEqual(new Set(wanted.map((l) => l.digest)));
    const bytes = cache.manifest.layers.filter((l) => fetched.includes(l.digest)).reduce((n, l) => n + l.size, 0);
    expect(bytes).toBe(wanted.reduce((n, l) => n + l.size, 0));
    // The deps stage's large layer (not in the image) stayed in the registry.
    const largest = cache.manifest.layers.reduce((x, y) => (x.size > y.size ? x : y));
    expect(largest.size).toBeGreaterThan(300_000);
    expect(fetched).not.toContain(largest.digest);

    // Importing and exporting the same ref, as a CI job does: nothing is sent or fetched again,
    // not even the layers the store never needed.
    const mark = proxy.requests.length;
    const again = expectOk(await build(b, ['-t', 'app:1', '--cache-from', `${proxy.host}/cache/app:buildcache`, '--cache-to', `type=registry,ref=${proxy.host}/cache/app:buildcache,mode=max`]));
    expect(steps(again.stderr)).toEqual({ total: 8, cached: 8 });
    expect(proxy.requests.slice(mark).filter((r) => r.method === 'GET' && /\/blobs\/sha256:/.test(r.path) && !r.path.endsWith(cache.manifest.config.digest))).toEqual([]);
    expect(proxy.requests.slice(mark).filter((r) => /^(PUT|PATCH)$/.test(r.method) && /\/blobs\//.test(r.path))).toEqual([]);
    expect(again.stderr).not.toMatch(/ pushed in /);
    expect(again.stderr).toMatch(/already there/);
  }, 120_000);

  it('a step that misses fetches only the layers it builds on', async () => {
    const s = await freshStore();
    const changed = join(s.dir, 'changed-ctx');
    await copyFixture('cache', changed);
    await fsp.writeFile(join(changed, 'app.txt'), 'the app, changed\n');
    const cache = await registryCache('cache/app', 'buildcache');
    const before = proxy.requests.length;
    const r = expectOk(await build(s, ['-t', 'app:2', '--cache-from', `${proxy.host}/cache/app:buildcache`], changed));
    // COPY app.txt and the RUN after it run again; the other six steps come from the cache.
    expect(steps(r.stderr)).toEqual({ total: 8, cached: 6 });
    const fetched = proxy.requests
      .slice(before)
      .filter((q) => q.method === 'GET' && q.status === 200 && /\/blobs\/sha256:/.test(q.path))
      .map((q) => q.path.slice(q.path.lastIndexOf('/') + 1))
      .filter((d) => d !== cache.manifest.config.digest);
    // The final stage's first two layers (the COPY app.txt step unpacks them); nothing of deps or tool.
    const layers = (await inspect(s.root, 'app:2')).RootFS.Layers;
    const byDiff = new Map(cache.config.records.map((rec) => [rec.diffID, cache.manifest.layers[rec.layer]!.digest]));
    expect(new Set(fetched)).toEqual(new Set(layers.slice(1, 3).map((d) => byDiff.get(d))));
  }, 120_000);

  it('an export interrupted by dropped connections and 500s completes on retry', async () => {
    const a = await freshStore();
    const ref = `${proxy.host}/cache/faulty:bc`;
    proxy.inject({ kind: 'status', status: 500, match: /^PUT \/v2\/cache\/faulty\/blobs\/uploads\//, times: 2 });
    proxy.inject({ kind: 'drop', direction: 'request', afterBytes: 100_000, match: /^(PUT|PATCH) \/v2\/cache\/faulty\/blobs\/uploads\// });
    proxy.inject({ kind: 'status', status: 503, match: /^PUT \/v2\/cache\/faulty\/manifests\// });
    const before = proxy.stats.faultsFired;
    expectOk(await build(a, ['-t', 'faulty:1', '--cache-to', `type=registry,ref=${ref},mode=max`]));
    expect(proxy.stats.faultsFired - before).toBe(4);
    expect(proxy.pending()).toEqual([]);

    const b = await freshStore();
    const r = expectOk(await build(b, ['-t', 'faulty:1', '--cache-from', `type=registry,ref=${reg.host}/cache/faulty:bc`]));
    expect(steps(r.stderr)).toEqual({ total: 8, cached: 8 });
    expect((await inspect(b.root, 'faulty:1')).Id).toBe((await inspect(a.root, 'faulty:1')).Id);
  }, 120_000);

  it('an unreachable or missing cache is a warning and the build goes on', async () => {
    const s = await freshStore();
    const r = expectOk(await build(s, ['--cache-from', '127.0.0.1:1/nowhere/cache:bc', '--cache-from', `${reg.host}/cache/none:missing`]));
    expect(r.stderr).toMatch(/cache import from 127\.0\.0\.1:1\/nowhere\/cache:bc skipped/);
    expect(r.stderr).toMatch(/cache import from .*cache\/none:missing skipped/);
    expect(steps(r.stderr)).toEqual({ total: 8, cached: 0 });
  }, 120_000);

  it('a bad --cache-to or --cache-from is a one-line usage error', async () => {
    const s = stores[0]!;
    for (const [flag, value, message] of [
      ['--cache-to', 'type=s3,bucket=x', /unsupported --cache-to type "s3"/],
      ['--cache-to', 'type=registry,mode=max', /--cache-to type=registry needs ref=/],
      ['--cache-to', `type=registry,ref=${reg.host}/c/x:1,mode=most`, /invalid mode "most" for --cache-to/],
      ['--cache-from', 'type=local', /--cache-from type=local needs src=DIR/],
    ] as const) {
      const r = await build(s, [flag, value]);
      expect(r.status, r.stderr).not.toBe(0);
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
  }, 120_000);
});

describe('--cache-to type=local', () => {
  it('exports an OCI layout an empty store imports; mode=min holds only the final stage', async () => {
    const a = stores[0]!;
    const max = join(a.dir, 'cache-max');
    const min = join(a.dir, 'cache-min');
    expectOk(await build(a, ['-t', 'app:1', '--cache-to', `type=local,dest=${max},mode=max`, '--cache-to', `type=local,dest=${min}`]));
    const [full, small] = [await localCache(max), await localCache(min)];
    expect(full.config.records).toHaveLength(10);
    // The final stage's four steps (its base is an image, so no other stage's steps are its layers),
    // and the lookup keys of its two COPY --from steps.
    expect(small.config.records).toHaveLength(6);
    expect(small.manifest.layers.length).toBeLessThan(full.manifest.layers.length);

    const b = await freshStore();
    const r = expectOk(await build(b, ['-t', 'app:1', '--cache-from', `type=local,src=${max}`]));
    expect(steps(r.stderr)).toEqual({ total: 8, cached: 8 });
    expect((await inspect(b.root, 'app:1')).Id).toBe((await inspect(a.root, 'app:1')).Id);
  }, 120_000);
});

describe('--cache-to type=inline', () => {
  it('puts the records in the pushed image; an empty store rebuilds from the image alone', async () => {
    const a = stores[0]!;
    const image = `${reg.host}/cache/inline:1`;
    expectOk(await build(a, ['--target', 'deps', '--cache-to', 'type=inline', '--output', `type=registry,name=${image}`]));
    const manifest = await registryJSON(`${reg.url}/v2/cache/inline/manifests/1`, 'application/vnd.oci.image.manifest.v1+json');
    const config = await registryJSON(`${reg.url}/v2/cache/inline/blobs/${manifest.config.digest}`);
    expect(config['kiln.cache.v0'].records).toHaveLength(3);

    const b = await freshStore();
    const r = expectOk(await build(b, ['--target', 'deps', '-t', 'deps:1', '--cache-from', image]));
    expect(steps(r.stderr)).toEqual({ total: 3, cached: 3 });
    expect((await inspect(b.root, 'deps:1')).RootFS.Layers).toEqual(config.rootfs.diff_ids);
  }, 120_000);
});

describe('--cache-to ...,mounts=true', () => {
  it('carries a cache mount to an empty store, and skips one above mounts-max-size', async () => {
    const a = await freshStore();
    const dir = join(a.dir, 'mounts-ctx');
    await copyFixture('cache', dir);
    const mounts = ['-f', join(dir, 'Dockerfile.mounts')];
    const ref = `${reg.host}/cache/mounts:bc`;
    expectOk(await build(a, [...mounts, '--build-arg', 'RUN_ID=first', '--cache-to', `type=registry,ref=${ref},mounts=true`], dir));
    const cache = await registryCache('cache/mounts', 'bc');
    expect(cache.config.mounts.map((m) => m.id)).toEqual(['kiln-fixture-mount']);

    const b = await freshStore();
    const out = join(b.dir, 'out');
    const r = expectOk(await build(b, [...mounts, '--build-arg', 'RUN_ID=second', '--cache-from', ref, '-o', `type=local,dest=${out}`], dir));
    expect(r.stderr).toMatch(/restored cache mount kiln-fixture-mount/);
    expect(await fsp.readFile(join(out, 'seen.txt'), 'utf8')).toBe('first\nsecond\n');

    const capped = expectOk(await build(a, [...mounts, '--build-arg', 'RUN_ID=third', '--cache-to', `type=registry,ref=${reg.host}/cache/mounts:capped,mounts=true,mounts-max-size=4`], dir));
    expect(capped.stderr).toMatch(/cache mount kiln-fixture-mount not exported: it holds more than the 4-byte limit/);
    expect((await registryCache('cache/mounts', 'capped')).config.mounts).toEqual([]);
  }, 120_000);
});
