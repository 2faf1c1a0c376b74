/**
 * The ink renderer fed with a recorded multi-stage build, drawing into a fake 120-column terminal:
 * running stages side by side with their output, finished steps as one line each, no colour
 * with NO_COLOR. (test/ui/tty-terminal.test.ts runs it in a real terminal.)
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { loadTtyRenderer } from '../../src/ui/load-tty.js';
import { recordedStream } from './recorded.js';

const stream = recordedStream('multistage');

function fakeTerminal(columns = 120): NodeJS.WriteStream & { text(): string } {
  const s = new PassThrough() as unknown as NodeJS.WriteStream & { text(): string };
  let out = '';
  s.on('data', (d: Buffer) => (out += d.toString('utf8')));
  Object.assign(s, { columns, rows: 40, isTTY: true, text: () => out });
  return s;
}

const plainText = (s: string): string => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');

describe('tty renderer', () => {
  it('draws the stages running at once side by side, each with its last output lines', async () => {
    const term = fakeTerminal();
    const r = (await loadTtyRenderer())(term, { NO_COLOR: '1' });
    // Up to the moment both RUN steps are running and printing.
    const upTo = stream.findIndex((e) => e.type === 'vertex-done' && e.id === 4);
    for (const e of stream.slice(0, upTo)) r.sink(e);
    await new Promise((res) => setTimeout(res, 250));
    const frame = plainText(term.text());
    expect(frame).toMatch(/stage stage-2 +stage left/);
    expect(frame).toMatch(/=> #4 [\d.]+s \[left 2\/2\] RUN/);
    expect(frame).toContain('#2 [right 2/3] COPY src/ /src/');
    expect(frame).toContain('cache miss: ARG VERSION changed (1.0 -> 2.0)');
    await r.stop();
  });

  it('ends with every step on one line, cached ones marked, and no colour with NO_COLOR', async () => {
    const term = fakeTerminal();
    const r = (await loadTtyRenderer())(term, { NO_COLOR: '1' });
    for (const e of stream) r.sink(e);
    await r.stop();
    const out = term.text();
    expect(out).not.toMatch(/\x1b\[3\dm/);
    const text = plainText(out);
    expect(text).toMatch(/#5 \[right 3\/3\] RUN .* CACHED/);
    expect(text).toMatch(/#4 \[left 2\/2\] RUN .* DONE \d+\.\ds/);
    expect(text).toMatch(/#8 exporting to image DONE/);
  });

  it('prints warnings once, above the running steps', async () => {
    const term = fakeTerminal();
    const r = (await loadTtyRenderer())(term, { NO_COLOR: '1' });
    r.sink({ type: 'vertex-start', vertex: { id: 1, name: '[1/2] RUN make' }, time: Date.now() });
    r.sink({ type: 'warning', message: 'overlay unavailable; using the copy snapshotter', line: 2, time: Date.now() });
    await new Promise((res) => setTimeout(res, 250));
    r.sink({ type: 'vertex-done', id: 1, time: Date.now(), durationMs: 5 });
    await r.stop();
    const text = plainText(term.text());
    expect(text.match(/WARNING: overlay unavailable; using the copy snapshotter \(line 2\)/g)).toHaveLength(1);
    expect(text.indexOf('WARNING')).toBeLessThan(text.lastIndexOf('#1 [1/2] RUN make'));
  });
});
