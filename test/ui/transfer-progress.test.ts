/**
 * Byte progress of long transfers (layers compressed, archives written, blobs pushed or pulled):
 * the events a step's meter emits, how the plain and tty renderers show them, the compression hook
 * that reports a layer's bytes, and the summary of a build that failed.
 */
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ByteMeter, PROGRESS_INTERVAL_MS, Progress, type BuildEvent } from '../../src/build/events.js';
import type { BuildRecord } from '../../src/build/history/record.js';
import { compressLayer, observeCompression, type CompressionProgress } from '../../src/oci/layer/compress.js';
import { sha256 } from '../../src/oci/digest.js';
import { observeUploads } from '../../src/registry/blobs.js';
import { Registries, downloadBlob, uploadBlob } from '../../src/registry/index.js';
import { plainRenderer } from '../../src/ui/plain.js';
import { startRegistry } from '../helpers/registry/index.js';
import { summaryLines } from '../../src/ui/summary.js';
import { loadTtyRenderer } from '../../src/ui/load-tty.js';
import { progressBar, transferLine } from '../../src/ui/transfer-line.js';

function plain(events: BuildEvent[]): string[] {
  let out = '';
  const render = plainRenderer((t) => (out += t));
  for (const e of events) render(e);
  return out.split('\n').filter(Boolean);
}

type ProgressEvent = Extract<BuildEvent, { type: 'vertex-progress' }>;

const bytes = (id: number, label: string, current: number, total: number | undefined, time: number): ProgressEvent => ({
  type: 'vertex-progress',
  id,
  current,
  ...(total !== undefined ? { total } : {}),
  unit: 'bytes',
  label,
  time,
});

describe('a byte meter', () => {
  it('reports the start, then at most one count per interval, and always the end', () => {
    let now = 1000;
    const seen: Array<[number, number | undefined]> = [];
    const meter = new ByteMeter((c, t) => seen.push([c, t]), 5000, () => now);
    for (let i = 0; i < 50; i++) {
      now += 10; // a chunk every 10 ms: 500 ms of chunks
      meter.add(100);
    }
    meter.finish();
    // Start, then one count per 200 ms (at 200 and 400 ms), then the final count as the total.
    expect(seen).toEqual([
      [0, 5000],
      [2000, 5000],
      [4000, 5000],
      [5000, 5000],
    ]);
    expect(PROGRESS_INTERVAL_MS).toBe(200);
    meter.add(1);
    expect(seen).toHaveLength(4);
  });

  it('a step meter emits vertex-progress events under its label, ending with current = total', () => {
    const events: BuildEvent[] = [];
    const v = new Progress((e) => events.push(e)).start('exporting to image');
    const meter = v.meter('writing out.tar');
    meter.add(10);
    meter.finish();
    const progress = events.filter((e): e is Extract<BuildEvent, { type: 'vertex-progress' }> => e.type === 'vertex-progress');
    expect(progress[0]).toMatchObject({ id: v.id, current: 0, unit: 'bytes', label: 'writing out.tar' });
    expect(progress[0]).not.toHaveProperty('total');
    expect(progress[progress.length - 1]).toMatchObject({ current: 10, total: 10, done: true });
    expect(progress.slice(0, -1).every((e) => e.done === false)).toBe(true);
  });
});

describe('plain byte progress', () => {
  it('prints each transfer of a step on its own lines, at most once a second, and its end once', () => {
    const t0 = 5_000_000;
    const out = plain([
      bytes(7, 'compressing sha256:aaaaaaaaaaaa', 0, 80_000_000, t0),
      bytes(7, 'compressing sha256:aaaaaaaaaaaa', 20_000_000, 80_000_000, t0 + 400),
      bytes(7, 'compressing sha256:aaaaaaaaaaaa', 40_000_000, 80_000_000, t0 + 1000),
      bytes(7, 'compressing sha256:aaaaaaaaaaaa', 60_000_000, 80_000_000, t0 + 1600),
      bytes(7, 'compressing sha256:aaaaaaaaaaaa', 80_000_000, 80_000_000, t0 + 2000),
      // The same end again (the meter's close): not a second line.
      bytes(7, 'compressing sha256:aaaaaaaaaaaa', 80_000_000, 80_000_000, t0 + 2010),
      // A quick transfer: only its end.
      bytes(7, 'writing out.tar', 0, undefined, t0 + 2020),
      bytes(7, 'writing out.tar', 500_000, undefined, t0 + 2220),
      bytes(7, 'writing out.tar', 900_000, 900_000, t0 + 2520),
    ]);
    expect(out).toEqual([
      '#7 compressing sha256:aaaaaaaaaaaa 40.00MB / 80.00MB 40.00MB/s',
      '#7 compressing sha256:aaaaaaaaaaaa 80.00MB 40.00MB/s done',
      '#7 writing out.tar 900.00kB 1.80MB/s done',
    ]);
  });

  it('a transfer whose total grows (a push announcing blobs) ends at its done event, not before', () => {
    const t0 = 9_000_000;
    const ev = (current: number, total: number, dt: number, done: boolean): BuildEvent => ({ ...bytes(4, 'pushing reg/app:1', current, total, t0 + dt), done });
    const out = plain([ev(0, 100_000_000, 0, false), ev(100_000_000, 100_000_000, 100, false), ev(100_000_000, 100_000_600, 150, false), ev(100_000_600, 100_000_600, 300, true)]);
    expect(out).toEqual(['#4 pushing reg/app:1 100.00MB 333.34MB/s done']);
  });

  it('keeps the step lines of existing builds as they were, whatever progress comes between', () => {
    const out = plain([
      { type: 'vertex-start', vertex: { id: 1, name: '[1/2] RUN make' }, time: 1 },
      bytes(1, 'pulling', 0, 10, 2),
      { type: 'vertex-cached', vertex: { id: 1, name: '[1/2] RUN make' }, time: 3 },
      { type: 'some-future-event', time: 4 } as unknown as BuildEvent,
    ]);
    expect(out).toEqual(['#1 [1/2] RUN make', '#1 CACHED']);
  });
});

describe('tty byte progress', () => {
  it('draws a bar with bytes and rate for a transfer of known size', () => {
    expect(progressBar(0, 100)).toBe(`[>${' '.repeat(19)}]`);
    expect(progressBar(50, 100)).toBe(`[${'='.repeat(10)}>${' '.repeat(9)}]`);
    expect(progressBar(100, 100)).toBe(`[${'='.repeat(20)}]`);
    expect(transferLine({ label: 'compressing sha256:aaaaaaaaaaaa', current: 12_300_000, total: 80_000_000, first: 0, firstBytes: 0, time: 500 })).toBe(
      `compressing sha256:aaaaaaaaaaaa [===>${' '.repeat(16)}] 12.30MB / 80.00MB 24.60MB/s`,
    );
    expect(transferLine({ label: 'writing -', current: 2_000_000, first: 0, firstBytes: 0, time: 1000 })).toBe('writing - 2.00MB 2.00MB/s');
  });

  it('shows the running transfers of a step under it, and drops those that finished', async () => {
    const s = new PassThrough() as unknown as NodeJS.WriteStream;
    let text = '';
    (s as unknown as PassThrough).on('data', (d: Buffer) => (text += d.toString('utf8')));
    Object.assign(s, { columns: 120, rows: 40, isTTY: true });
    const r = (await loadTtyRenderer())(s, { NO_COLOR: '1' });
    const now = Date.now();
    r.sink({ type: 'vertex-start', vertex: { id: 3, name: 'exporting to image' }, time: now });
    r.sink(bytes(3, 'compressing sha256:bbbbbbbbbbbb', 1_000_000, 1_000_000, now));
    r.sink(bytes(3, 'compressing sha256:cccccccccccc', 0, 8_000_000, now));
    r.sink(bytes(3, 'compressing sha256:cccccccccccc', 4_000_000, 8_000_000, now + 1000));
    await new Promise((res) => setTimeout(res, 250));
    const frame = text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
    expect(frame).toMatch(/compressing sha256:cccccccccccc \[=+> +\] 4\.00MB \/ 8\.00MB 4\.00MB\/s/);
    expect(frame).not.toContain('sha256:bbbbbbbbbbbb');
    await r.stop();
  });
});

describe('the compression hook', () => {
  it('reports the bytes read and written of compressions started inside it, and only those', async () => {
    const data = Buffer.alloc(3 * 1024 * 1024, 'kiln progress ');
    const seen: CompressionProgress[] = [];
    const drain = async (r: Readable): Promise<number> => {
      let n = 0;
      for await (const c of r) n += (c as Buffer).length;
      return n;
    };
    const written = await observeCompression(
      (p) => seen.push(p),
      () => drain(compressLayer(Readable.from([data]), 'gzip', { chunkSize: 256 * 1024 }).stream),
    );
    await drain(compressLayer(Readable.from([data]), 'gzip').stream);
    const last = seen[seen.length - 1]!;
    expect(last).toEqual({ compression: 'gzip', read: data.length, written, done: true });
    expect(seen.filter((p) => p.done)).toHaveLength(1);
    expect(seen.length).toBeGreaterThan(2);
    // Counts only grow.
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.written).toBeGreaterThanOrEqual(seen[i - 1]!.written);
  });
});

describe('the registry hooks', () => {
  it('an upload reports its bytes chunk by chunk, a download as they arrive, each ending at the blob size', { timeout: 60_000 }, async () => {
    const reg = await startRegistry({ mode: 'none' });
    const registries = new Registries({ env: { PATH: process.env.PATH } });
    try {
      const client = registries.get(reg.host);
      const blob = randomBytes(3 * 1024 * 1024 + 17);
      const digest = sha256(blob);
      const source = { digest, size: blob.length, open: async (offset: number) => Readable.from([blob.subarray(offset)]) };
      const sent: number[] = [];
      const outcome = await observeUploads(
        (b, n) => {
          expect(b.digest).toBe(digest);
          sent.push(n);
        },
        () => uploadBlob(client, 'progress/chunks', source, { chunkSize: 1024 * 1024, monolithicMax: 1024 * 1024 }),
      );
      expect(outcome.kind).toBe('pushed');
      // Several counts on the way, growing, the last one the whole blob.
      expect(sent.length).toBeGreaterThanOrEqual(4);
      expect(sent.some((n) => n > 0 && n < blob.length)).toBe(true);
      for (let i = 1; i < sent.length; i++) expect(sent[i]!).toBeGreaterThanOrEqual(sent[i - 1]!);
      expect(sent[sent.length - 1]).toBe(blob.length);
      // An upload outside the scope reports nothing.
      const reported = sent.length;
      const other = randomBytes(2 * 1024 * 1024);
      const second = await uploadBlob(client, 'progress/chunks', { digest: sha256(other), size: other.length, open: async (o: number) => Readable.from([other.subarray(o)]) }, { chunkSize: 1024 * 1024, monolithicMax: 1024 * 1024 });
      expect(second.kind).toBe('pushed');
      expect(sent).toHaveLength(reported);

      const received: number[] = [];
      const stream = downloadBlob(client, 'progress/chunks', { digest, size: blob.length }, { onProgress: (n) => received.push(n) });
      for await (const _ of stream) void _;
      expect(received.length).toBeGreaterThan(1);
      expect(received[received.length - 1]).toBe(blob.length);
    } finally {
      await registries.close();
      await reg.stop();
    }
  });
});

describe('the summary of a failed build', () => {
  const record = (): BuildRecord =>
    ({
      version: 1,
      id: '20261123-040000-abcdef',
      target: { contextDir: '/ctx', dockerfile: '/ctx/Dockerfile', stage: '' },
      tags: [],
      started: '2026-11-23T04:00:00.000Z',
      durationMs: 4200,
      outcome: 'failed',
      bases: {},
      steps: [
        { vertex: 1, name: '[internal] load metadata for docker.io/kiln-test/busybox:latest', status: 'done', durationMs: 10, logBytes: 0 },
        { vertex: 2, name: '[a 2/3] COPY . /src', line: 3, status: 'cached', logBytes: 0 },
        { vertex: 3, name: '[a 3/3] RUN make', line: 4, status: 'error', durationMs: 2300, logBytes: 120, error: 'exit code: 2' },
        { vertex: 4, name: '[b 2/2] RUN sleep 60', line: 7, status: 'error', durationMs: 2200, logBytes: 0, error: 'canceled' },
      ],
    }) as BuildRecord;

  it('counts the steps, the cached ones and the failed one, and names it with its time', () => {
    const lines = summaryLines(record(), undefined, 100);
    expect(lines[0]).toBe('Summary: 3 steps, 1 cached, 1 failed, 4.2s');
    expect(lines.find((l) => l.includes('#2 '))).toMatch(/CACHED$/);
    expect(lines.find((l) => l.includes('#3 '))).toMatch(/ERROR$/);
    expect(lines.find((l) => l.includes('#4 '))).toMatch(/canceled$/);
    expect(lines).toContain('Failed: #3 [a 3/3] RUN make after 2.3s');
    expect(lines.some((l) => l.startsWith('Image:'))).toBe(false);
    expect(lines[lines.length - 1]).toBe('Logs: kiln logs --build 20261123-040000-abcdef');
  });
});
