import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../digest.js';
import { compress, compressLayer, decompress, detectCompression } from './compress.js';
import { CompressionError } from './errors.js';
import { writeLayerTar } from './writer.js';

async function toBuffer(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The same bytes delivered in pieces of the given sizes (cycled). */
function pieces(data: Buffer, sizes: number[]): Readable {
  const out: Buffer[] = [];
  for (let off = 0, i = 0; off < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    out.push(data.subarray(off, off + n));
    off += n;
  }
  return Readable.from(out, { objectMode: false });
}

/** Offsets of gzip member headers (magic, deflate, no flags, mtime 0) in a multi-member stream. */
function memberCount(gz: Buffer): number {
  let count = 0;
  for (let i = gz.indexOf(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0])); i !== -1; i = gz.indexOf(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0]), i + 1)) {
    count++;
  }
  return count;
}

/** 5.5 MiB of half-compressible data. */
function sample(): Buffer {
  const text = Buffer.from('lorem ipsum dolor sit amet, consectetur adipiscing elit '.repeat(60_000)).subarray(0, 3 * 1024 * 1024);
  return Buffer.concat([text, randomBytes(2.5 * 1024 * 1024)]);
}

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'kiln-layer-gz-'));
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

describe('gzip', () => {
  it('writes independent members compressed in parallel that every reader reads whole', async () => {
    const data = sample();
    const gz = await toBuffer(compress(pieces(data, [70_000, 1, 4096]), 'gzip', { chunkSize: 1024 * 1024, concurrency: 3 }));
    expect(memberCount(gz)).toBe(6);
    expect(gunzipSync(gz).equals(data)).toBe(true);
    const cli = spawnSync('gzip', ['-dc'], { input: gz, maxBuffer: 64 * 1024 * 1024 });
    expect(cli.status).toBe(0);
    expect(sha256(cli.stdout)).toBe(sha256(data));
    expect(sha256(await toBuffer(decompress(Readable.from([gz]))))).toBe(sha256(data));
    // fixed header: mtime 0, OS Unix
    expect([...gz.subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
  });

  it('gives the same bytes whatever the concurrency and however the input arrives', async () => {
    const data = sample();
    const a = await toBuffer(compress(pieces(data, [65_536]), 'gzip', { concurrency: 1 }));
    const b = await toBuffer(compress(pieces(data, [1_000_003, 17]), 'gzip', { concurrency: 4 }));
    const c = await toBuffer(compress(Readable.from([data]), 'gzip'));
    expect(sha256(b)).toBe(sha256(a));
    expect(sha256(c)).toBe(sha256(a));
    // and the level changes them
    const fast = await toBuffer(compress(Readable.from([data]), 'gzip', { level: 1 }));
    expect(sha256(fast)).not.toBe(sha256(a));
  });

  it('compresses empty input to a valid empty gzip stream', async () => {
    const gz = await toBuffer(compress(Readable.from([], { objectMode: false }), 'gzip'));
    expect(gunzipSync(gz).length).toBe(0);
  });

  it('produces a layer readable by gzip -dc | tar -t, with digests that match the bytes', async () => {
    const src = join(work, 'tree');
    mkdirSync(join(src, 'dir'), { recursive: true });
    for (let i = 0; i < 50; i++) writeFileSync(join(src, 'dir', `f${i}`), randomBytes(40_000));
    writeFileSync(join(src, 'big'), Buffer.alloc(3 * 1024 * 1024, 'k'));

    const plain = await toBuffer(writeLayerTar(src));
    const { stream, result } = compressLayer(writeLayerTar(src), 'gzip', { chunkSize: 256 * 1024 });
    const gz = await toBuffer(stream);
    const digests = await result;
    expect(memberCount(gz)).toBeGreaterThan(5);
    expect(digests).toEqual({ digest: sha256(gz), size: gz.length, diffID: sha256(plain), uncompressedSize: plain.length });

    const path = join(work, 'layer.tar.gz');
    writeFileSync(path, gz);
    const listing = spawnSync('sh', ['-c', `gzip -dc "${path}" | tar -t`], { encoding: 'utf8' });
    expect(listing.status).toBe(0);
    expect(listing.stdout.trim().split('\n')).toEqual(['big', 'dir/', ...Array.from({ length: 50 }, (_, i) => `dir/f${i}`).sort()]);
    const diff = spawnSync('sh', ['-c', `gzip -dc "${path}" | sha256sum`], { encoding: 'utf8' });
    expect(`sha256:${diff.stdout.split(' ')[0]}`).toBe(digests.diffID);
  });

  it('reports corrupt gzip data as a CompressionError', async () => {
    const gz = await toBuffer(compress(Readable.from([sample()]), 'gzip'));
    gz.fill(0x55, 5000, 6000);
    await expect(toBuffer(decompress(Readable.from([gz])))).rejects.toBeInstanceOf(CompressionError);
  });

  it('fails the stream when the input fails', async () => {
    const input = new Readable({
      read() {
        this.destroy(new Error('disk on fire'));
      },
    });
    await expect(toBuffer(compress(input, 'gzip'))).rejects.toThrow('disk on fire');
    const layer = compressLayer(
      new Readable({
        read() {
          this.destroy(new Error('disk on fire'));
        },
      }),
      'gzip',
    );
    await expect(toBuffer(layer.stream)).rejects.toThrow('disk on fire');
    await expect(layer.result).rejects.toThrow('disk on fire');
  });
});

describe('zstd and plain', () => {
  it('round-trips zstd, readable by zstd -dc, deterministic', async () => {
    const data = sample();
    const { stream, result } = compressLayer(pieces(data, [12_345]), 'zstd');
    const zst = await toBuffer(stream);
    expect(detectCompression(zst)).toBe('zstd');
    expect(await result).toEqual({ digest: sha256(zst), size: zst.length, diffID: sha256(data), uncompressedSize: data.length });
    const cli = spawnSync('zstd', ['-dc'], { input: zst, maxBuffer: 64 * 1024 * 1024 });
    expect(cli.status).toBe(0);
    expect(cli.stdout.equals(data)).toBe(true);
    expect((await toBuffer(decompress(Readable.from([zst])))).equals(data)).toBe(true);
    const again = await toBuffer(compress(pieces(data, [999_999]), 'zstd', { concurrency: 1 }));
    expect(sha256(again)).toBe(sha256(zst));
  });

  it('says how to get zstd when the program is missing', async () => {
    const path = process.env.PATH;
    process.env.PATH = join(work, 'no-such-bin');
    try {
      const err = await toBuffer(compress(Readable.from([Buffer.from('x')]), 'zstd')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CompressionError);
      expect((err as CompressionError).hint).toContain('apt-get install zstd');
    } finally {
      process.env.PATH = path;
    }
  });

  it('reports corrupt zstd data as a CompressionError', async () => {
    const zst = await toBuffer(compress(Readable.from([sample()]), 'zstd'));
    zst.fill(0x55, 100, 4000);
    await expect(toBuffer(decompress(Readable.from([zst])))).rejects.toBeInstanceOf(CompressionError);
  });

  it('passes plain data through, digests equal', async () => {
    const data = Buffer.from('not compressed at all');
    const { stream, result } = compressLayer(Readable.from([data]), 'none');
    expect((await toBuffer(stream)).equals(data)).toBe(true);
    const d = await result;
    expect(d.digest).toBe(d.diffID);
    expect(d.size).toBe(data.length);
    // detection needs only the first bytes; tiny and empty inputs come through untouched
    expect((await toBuffer(decompress(Readable.from([Buffer.from('ab')])))).toString()).toBe('ab');
    expect((await toBuffer(decompress(Readable.from([], { objectMode: false })))).length).toBe(0);
    expect((await toBuffer(decompress(pieces(data, [1])))).equals(data)).toBe(true);
  });

  it('detects compression by magic bytes', () => {
    expect(detectCompression(Buffer.from([0x1f, 0x8b, 8]))).toBe('gzip');
    expect(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe('zstd');
    expect(detectCompression(Buffer.from('ustar'))).toBe('none');
    expect(detectCompression(Buffer.alloc(0))).toBe('none');
  });

  it('hashes while streaming without holding the layer', async () => {
    // 64 MiB through the gzip path; the digest is checked against an independent hash of the input.
    const block = randomBytes(1024 * 1024);
    let sent = 0;
    const h = createHash('sha256');
    const input = new Readable({
      read() {
        if (sent === 64) return void this.push(null);
        sent++;
        h.update(block);
        this.push(block);
      },
    });
    const { stream, result } = compressLayer(input, 'gzip', { level: 1 });
    let size = 0;
    for await (const c of stream) size += (c as Buffer).length;
    const d = await result;
    expect(d.diffID).toBe(`sha256:${h.digest('hex')}`);
    expect(d.size).toBe(size);
    expect(d.uncompressedSize).toBe(64 * 1024 * 1024);
  });
});
