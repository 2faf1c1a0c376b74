/**
 * The renderers fed with an event stream recorded from a real multi-stage build (two stages in
 * parallel, one step missing the cache because an ARG changed): what each prints.
 */
import { describe, expect, it } from 'vitest';
import type { BuildEvent } from '../../src/build/events.js';
import { jsonRenderer } from '../../src/ui/json.js';
import { plainRenderer } from '../../src/ui/plain.js';
import { chooseRenderer } from '../../src/ui/select.js';
import { recordedStream } from './recorded.js';

const stream = recordedStream('multistage');

function plain(events: BuildEvent[]): string {
  let out = '';
  const render = plainRenderer((t) => (out += t));
  for (const e of events) render(e);
  return out;
}

describe('plain renderer', () => {
  it('prints buildx-style numbered lines, the cached steps, and the cache-miss reasons', () => {
    const out = plain(stream);
    expect(out).toContain('#4 [left 2/2] RUN for i in 1 2 3 4 5 6;');
    expect(out).toMatch(/^#4 cache miss: ARG VERSION changed \(1\.0 -> 2\.0\)$/m);
    expect(out).toMatch(/^#2 CACHED$/m);
    expect(out).toMatch(/^#4 \d+\.\d{3} left working 6 \(version 2\.0\)$/m);
    expect(out).toMatch(/^#4 DONE \d+\.\ds$/m);
    // Every line is a numbered step line or a warning: nothing else leaks into CI logs.
    for (const line of out.trimEnd().split('\n')) expect(line).toMatch(/^(#\d+ |WARNING: )/);
  });

  it('skips event types it does not know', () => {
    const out = plain([{ type: 'cache-export-progress', time: 1 } as unknown as BuildEvent, ...stream.slice(0, 3)]);
    expect(out.split('\n')[0]).toBe('#1 [internal] load metadata for docker.io/kiln-test/busybox:latest');
  });

  it('shows byte progress with its rate at most once a second (the first after a second), and when complete', () => {
    const t0 = 1_000_000;
    const p = (current: number, dt: number): BuildEvent => ({ type: 'vertex-progress', id: 3, current, total: 10_000_000, unit: 'bytes', label: 'pulling', time: t0 + dt });
    const out = plain([p(0, 0), p(1_000_000, 300), p(5_000_000, 1000), p(7_000_000, 1500), p(10_000_000, 2000)]);
    expect(out.split('\n').filter(Boolean)).toEqual([
      '#3 pulling 5.00MB / 10.00MB 5.00MB/s',
      '#3 pulling 10.00MB 5.00MB/s done',
    ]);
  });

  it('holds its lines while a shell owns the terminal, and prints them after', () => {
    const lines: string[] = [];
    const render = plainRenderer((t) => lines.push(t));
    render({ type: 'vertex-shell', id: 2, state: 'open', time: 1 });
    render({ type: 'warning', message: 'meanwhile', time: 2 });
    expect(lines.join('')).not.toContain('meanwhile');
    render({ type: 'vertex-shell', id: 2, state: 'closed', time: 3 });
    expect(lines.join('')).toContain('WARNING: meanwhile');
  });
});

describe('json renderer', () => {
  it('writes one JSON object per line that reads back as the same events', () => {
    let out = '';
    const render = jsonRenderer((t) => (out += t));
    for (const e of stream) render(e);
    const lines = out.trimEnd().split('\n');
    expect(lines).toHaveLength(stream.length);
    const parsed = lines.map((l) => JSON.parse(l) as { type: string; data?: string; reasons?: string[] });
    expect(parsed.map((p) => p.type)).toEqual(stream.map((e) => e.type));
    expect(parsed.find((p) => p.type === 'vertex-miss')?.reasons).toEqual(['ARG VERSION changed (1.0 -> 2.0)']);
    expect(parsed.filter((p) => p.type === 'vertex-log').map((p) => p.data).join('')).toContain('left working 3 (version 2.0)\n');
  });

  it('rawjson keeps the exact bytes of the output as base64', () => {
    let out = '';
    const render = jsonRenderer((t) => (out += t), true);
    render({ type: 'vertex-log', id: 1, stream: 'stdout', data: Buffer.from([0xff, 0x00, 0x0a]), time: 1 });
    expect(JSON.parse(out)).toMatchObject({ data: '/wAK', encoding: 'base64' });
  });
});

describe('--progress auto', () => {
  it('is tty in a terminal, plain without one or in CI, as buildx decides', () => {
    expect(chooseRenderer('auto', {}, true)).toBe('tty');
    expect(chooseRenderer('auto', {}, false)).toBe('plain');
    expect(chooseRenderer('auto', { CI: 'true' }, true)).toBe('plain');
    expect(chooseRenderer('json', {}, true)).toBe('json');
  });
});
