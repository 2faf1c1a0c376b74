/**
 * The store root is an OCI image layout that an independent implementation (skopeo, i.e.
 * containers/image) reads unchanged, and layouts skopeo writes are read back by kiln.
 */
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../oci/digest.js';
import { OciLayout, memoryImage, resolveLayoutRef } from '../oci/layout/index.js';
import { MediaType } from '../oci/mediatypes.js';
import { openStore, type Store } from './index.js';

const run = promisify(execFile);

async function skopeo(...args: string[]): Promise<string> {
  try {
    return (await run('skopeo', args, { maxBuffer: 16 << 20 })).stdout;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error('skopeo is not installed; these tests need it: apt-get install -y skopeo (Debian package "skopeo")');
    }
    throw new Error(`skopeo ${args.join(' ')} failed: ${(err as { stderr?: string }).stderr ?? String(err)}`);
  }
}

async function makeTar(files: Record<string, string>): Promise<Buffer> {
  const p = pack();
  for (const [name, content] of Object.entries(files)) p.entry({ name, mtime: new Date(0), mode: 0o644 }, content);
  p.finalize();
  const parts: Buffer[] = [];
  for await (const c of p) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

let dir: string;
let root: string;
let store: Store;
beforeAll(async () => {
  dir = await fsp.mkdtemp(join(tmpdir(), 'kiln-skopeo-'));
  root = join(dir, 'store');
  store = await openStore({ root });
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

describe('skopeo and the store', () => {
  it('skopeo is installed', async () => {
    expect(await skopeo('--version')).toMatch(/skopeo version/);
  });

  it('skopeo inspect oci:<root>:<name> reads an image kiln stored', async () => {
    const tar = await makeTar({ 'hello.txt': 'hello from kiln\n' });
    const image = memoryImage({
      layers: [{ blob: tar }],
      config: { created: '2024-01-01T00:00:00Z', config: { Cmd: ['/bin/sh'], Labels: { made: 'by-hand' } } },
    });
    const other = memoryImage({ layers: [{ blob: await makeTar({ other: 'x' }) }] });
    await store.putImage(other, { names: ['kiln-test/other:1'] });
    const rec = await store.putImage(image, { names: ['kiln-test/app:v1', 'busybox'] });

    const info = JSON.parse(await skopeo('inspect', `oci:${root}:docker.io/kiln-test/app:v1`)) as {
      Digest: string;
      Layers: string[];
      Architecture: string;
      Os: string;
      Labels: Record<string, string>;
    };
    expect(info.Digest).toBe(rec.digest);
    expect(info.Layers).toEqual([sha256(tar)]);
    expect(info.Architecture).toBe('amd64');
    expect(info.Os).toBe('linux');
    expect(info.Labels).toEqual({ made: 'by-hand' });

    // The raw manifest and config are byte-identical to what kiln wrote.
    expect(await skopeo('inspect', '--raw', `oci:${root}:docker.io/library/busybox:latest`)).toBe((await image.rawManifest()).toString());
    expect(await skopeo('inspect', '--config', '--raw', `oci:${root}:docker.io/library/busybox:latest`)).toBe(
      (await image.rawConfigFile()).toString(),
    );
  });

  it('reads what skopeo writes: a copied layout, and an image skopeo adds to the store', async () => {
    const gz = gzipSync(await makeTar({ 'data.txt': 'compressed layer\n' }));
    const image = memoryImage({ layers: [{ blob: gz, mediaType: MediaType.ociLayerGzip }] });
    const rec = await store.putImage(image, { names: ['kiln-test/gz:1'] });

    const copy = join(dir, 'copy');
    await skopeo('copy', '--insecure-policy', `oci:${root}:docker.io/kiln-test/gz:1`, `oci:${copy}:copied`);
    const layout = await OciLayout.open(copy);
    const copied = await resolveLayoutRef(layout, 'copied');
    expect(await copied.digest()).toBe(rec.digest);
    const [layer] = await copied.layers();
    const chunks: Buffer[] = [];
    for await (const c of await layer!.uncompressed()) chunks.push(c as Buffer);
    expect(sha256(Buffer.concat(chunks))).toBe(await layer!.diffID());

    // skopeo writing into the store root: the entry is an image record like any other.
    await skopeo('copy', '--insecure-policy', `oci:${copy}:copied`, `oci:${root}:docker.io/library/imported:latest`);
    const imported = await store.lookup('imported');
    expect(imported.digest).toBe(rec.digest);
    expect(imported.names).toEqual(['docker.io/kiln-test/gz:1', 'docker.io/library/imported:latest']);
    // …and kiln's own records survive skopeo's rewrite of index.json.
    expect((await store.lookup('kiln-test/app:v1')).names).toContain('docker.io/kiln-test/app:v1');
    // skopeo leaves nothing in the root that kiln does not know.
    expect((await fsp.readdir(root)).sort()).toEqual(['blobs', 'cache', 'compressed', 'index.json', 'l', 'leases', 'oci-layout', 'snapshots', 'tmp']);
    const pruned = await store.prune({});
    expect(pruned.problems).toEqual([]);
    expect(await (await store.resolve('imported')).digest()).toBe(rec.digest);
  });
});
