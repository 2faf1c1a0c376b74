import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { compressLayer } from '../oci/layer/index.js';
import { memoryImage } from '../oci/layout/index.js';
import { MediaType } from '../oci/mediatypes.js';
import { openStore } from './index.js';

const roots: string[] = [];
afterEach(async () => {
  for (const r of roots.splice(0)) await rm(r, { recursive: true, force: true });
});

describe('uncompressed layer size', () => {
  it('is counted for a multi-member gzip layer, whose trailer holds only the last member', async () => {
    const root = mkdtempSync(join(tmpdir(), 'kiln-size-'));
    roots.push(root);
    const store = await openStore({ root });
    // 3 MiB of tar-ish content compresses into several members with kiln's parallel gzip.
    const tar = Buffer.concat([randomBytes(3 * 1024 * 1024 + 512)]);
    const { stream } = compressLayer(Readable.from([tar]), 'gzip');
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    const image = memoryImage({ layers: [{ blob: Buffer.concat(chunks), mediaType: MediaType.ociLayerGzip }] });
    await store.putImage(image, { names: ['sizes:1'] });
    const diffID = (await image.configFile()).rootfs.diff_ids[0]!;
    expect(await store.uncompressedSize(diffID)).toBe(tar.length);
    // Remembered: asked again, it does not need the blob.
    expect(await store.uncompressedSize(diffID)).toBe(tar.length);
  });
});
