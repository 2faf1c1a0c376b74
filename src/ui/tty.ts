/**
 * The terminal renderer (`--progress=tty`, the default in a terminal outside CI), drawn with ink.
 * Finished steps scroll up as one line each (`CACHED` or their time); below them every running step
 * shows its timer, its byte progress and the last lines of its output. Steps of different stages that
 * run at the same time are drawn side by side, one column per stage, when the terminal is wide
 * enough, else as rows grouped by stage. This module (and ink, React) is loaded only when chosen.
 */
import { createElement as h, type ReactElement } from 'react';
import { Box, Static, Text, render, type Instance } from 'ink';
import type { BuildEvent } from '../build/events.js';
import { formatDuration } from './plain.js';
import { transferLine } from './transfer-line.js';

const TAIL_LINES = 5;
const FRAME_MS = 100;

interface Transfer {
  done: boolean;
  current: number;
  total?: number;
  label?: string;
  items: boolean;
  first: number;
  firstBytes: number;
  time: number;
}

interface VertexView {
  id: number;
  name: string;
  stage: string;
  started: number;
  status: 'running' | 'cached' | 'done' | 'error';
  durationMs?: number;
  lines: string[];
  partial: string;
  /** Counted progress (`context files read 3/5`), shown on the step's line. */
  progress?: Transfer;
  /** Byte transfers by label (`compressing sha256:…`, `pushing NAME`), each on a line of its own while it runs. */
  transfers: Map<string, Transfer>;
  reasons: string[];
  error?: string;
}

export interface TtyRenderer {
  sink: (event: BuildEvent) => void;
  /** Draws the last frame and gives the terminal back. */
  stop(): Promise<void>;
}

export function ttyRenderer(out: NodeJS.WriteStream = process.stderr, env: NodeJS.ProcessEnv = process.env): TtyRenderer {
  const color = !env.NO_COLOR;
  const vertices = new Map<number, VertexView>();
  // Lines that are final (finished steps, warnings): ink prints each once, above the live area.
  const finished: Array<{ key: string; view?: VertexView; warning?: string }> = [];
  let instance: Instance | undefined;
  let timer: NodeJS.Timeout | undefined;
  let dirty = false;
  let paused = false;

  const frame = (): ReactElement => {
    const now = Date.now();
    const running = [...vertices.values()].filter((v) => v.status === 'running');
    return h(
      Box,
      { flexDirection: 'column' },
      h(Static, {
        items: [...finished],
        children: (item: unknown) => {
          const { key, view, warning } = item as (typeof finished)[number];
          if (!view) return h(Text, { key, color: color ? 'yellow' : undefined }, `WARNING: ${warning ?? ''}`);
          return h(FinishedLine, { key, view, color, width: out.columns || 100 });
        },
      }),
      h(RunningArea, { running, now, color, width: out.columns || 100 }),
    );
  };

  const draw = (): void => {
    dirty = false;
    if (paused) return;
    if (!instance) instance = render(frame(), { stdout: out, patchConsole: false, exitOnCtrlC: false });
    else instance.rerender(frame());
  };
  const schedule = (): void => {
    dirty = true;
    if (!timer) {
      timer = setInterval(() => {
        if (dirty || [...vertices.values()].some((v) => v.status === 'running')) draw();
      }, FRAME_MS);
      timer.unref();
    }
  };

  const finish = (v: VertexView): void => {
    if (v.partial) pushLine(v, v.partial);
    v.partial = '';
    finished.push({ key: `${v.id}`, view: v });
  };

  const sink = (event: BuildEvent): void => {
    switch (event.type) {
      case 'vertex-start':
        vertices.set(event.vertex.id, {
          id: event.vertex.id,
          name: event.vertex.name,
          stage: event.vertex.stage ?? '',
          started: event.time,
          status: 'running',
          lines: [],
          partial: '',
          reasons: [],
          transfers: new Map(),
        });
        break;
      case 'vertex-log': {
        const v = vertices.get(event.id);
        if (!v) break;
        const parts = (v.partial + event.data.toString('utf8')).split(/\r?\n/);
        v.partial = (parts.pop() ?? '').slice(-1000);
        for (const l of parts) pushLine(v, l);
        break;
      }
      case 'vertex-progress': {
        const v = vertices.get(event.id);
        if (!v) break;
        const items = event.unit === 'items';
        const before = items ? (v.progress?.label === event.label ? v.progress : undefined) : v.transfers.get(event.label ?? '');
        const t: Transfer = {
          done: event.done ?? (event.total !== undefined && event.current >= event.total),
          current: event.current,
          ...(event.total !== undefined ? { total: event.total } : {}),
          ...(event.label ? { label: event.label } : {}),
          items,
          first: before?.first ?? event.time,
          firstBytes: before?.firstBytes ?? event.current,
          time: event.time,
        };
        if (items) v.progress = t;
        else v.transfers.set(event.label ?? '', t);
        break;
      }
      case 'vertex-miss': {
        const v = vertices.get(event.id);
        if (v) v.reasons.push(...event.reasons);
        break;
      }
      case 'vertex-cached': {
        const v = vertices.get(event.vertex.id);
        if (v) {
          v.status = 'cached';
          finish(v);
        }
        break;
      }
      case 'vertex-done':
      case 'vertex-error': {
        const v = vertices.get(event.id);
        if (v) {
          v.status = event.type === 'vertex-done' ? 'done' : 'error';
          v.durationMs = event.durationMs;
          if (event.type === 'vertex-error') v.error = event.message;
          finish(v);
        }
        break;
      }
      case 'warning':
        finished.push({ key: `w${event.time}-${finished.length}`, warning: `${event.message}${event.line !== undefined ? ` (line ${event.line})` : ''}` });
        break;
      case 'vertex-shell':
        if (event.state === 'open') {
          draw();
          paused = true;
          // The shell gets a clean terminal: ink's last frame stays, ink lets go of the output.
          instance?.unmount();
          instance = undefined;
          finished.length = 0;
          out.write(`#${event.id} opening a shell in the failed step; exit it to end the build\n`);
        } else {
          paused = false;
        }
        break;
      default:
        break;
    }
    schedule();
  };

  const stop = async (): Promise<void> => {
    if (timer) clearInterval(timer);
    timer = undefined;
    if (paused) return;
    draw();
    const i = instance;
    instance = undefined;
    if (i) {
      i.unmount();
      await i.waitUntilExit().catch(() => undefined);
    }
  };
  return { sink, stop };
}

function pushLine(v: VertexView, line: string): void {
  v.lines.push(line.length > 300 ? `${line.slice(0, 297)}...` : line);
  if (v.lines.length > TAIL_LINES) v.lines.shift();
}

function FinishedLine({ view, color, width }: { view: VertexView; color: boolean; width: number }): ReactElement {
  const tag =
    view.status === 'cached'
      ? h(Text, { color: color ? 'cyan' : undefined }, 'CACHED')
      : view.status === 'error'
        ? h(Text, { color: color ? 'red' : undefined, bold: true }, 'ERROR')
        : h(Text, { color: color ? 'green' : undefined }, `DONE ${formatDuration(view.durationMs ?? 0)}`);
  return h(
    Box,
    { flexDirection: 'column' },
    // The name gives way to the outcome when the line is too long.
    h(Box, { flexDirection: 'row', width }, h(Box, { flexShrink: 1 }, h(Text, { wrap: 'truncate-end' }, h(Text, { dimColor: color }, `#${view.id} `), view.name)), h(Box, { flexShrink: 0, marginLeft: 1 }, tag)),
    ...view.reasons.map((r, i) => h(Text, { key: `r${i}`, dimColor: color, wrap: 'truncate-end' }, `   cache miss: ${r}`)),
  );
}

function RunningArea({ running, now, color, width }: { running: VertexView[]; now: number; color: boolean; width: number }): ReactElement | null {
  if (running.length === 0) return null;
  const byStage = new Map<string, VertexView[]>();
  for (const v of running) byStage.set(v.stage, [...(byStage.get(v.stage) ?? []), v]);
  const stages = [...byStage.entries()];
  // Side by side when each column gets at least 40 characters.
  const columns = stages.length > 1 && Math.floor(width / stages.length) >= 40;
  const colWidth = columns ? Math.floor(width / stages.length) : width;
  return h(
    Box,
    { flexDirection: columns ? 'row' : 'column', marginTop: 0 },
    ...stages.map(([stage, vs]) =>
      h(
        Box,
        { key: stage || '-', flexDirection: 'column', width: colWidth, paddingRight: columns ? 1 : 0 },
        stages.length > 1 ? h(Text, { bold: true, color: color ? 'magenta' : undefined, wrap: 'truncate-end' }, `stage ${stage || '(internal)'}`) : null,
        ...vs.map((v) => h(RunningVertex, { key: `${v.id}`, view: v, now, color })),
      ),
    ),
  );
}

function RunningVertex({ view, now, color }: { view: VertexView; now: number; color: boolean }): ReactElement {
  const seconds = ((now - view.started) / 1000).toFixed(1);
  const p = view.progress;
  const progress = p ? ` ${p.label ?? ''} ${p.current}${p.total !== undefined ? `/${p.total}` : ''}` : '';
  // Finished transfers leave the screen; the running ones each get a line.
  const running = [...view.transfers.values()].filter((t) => !t.done);
  return h(
    Box,
    { flexDirection: 'column' },
    h(Text, { wrap: 'truncate-end' }, h(Text, { color: color ? 'yellow' : undefined }, `=> #${view.id} ${seconds}s${progress} `), view.name),
    ...running.map((t, i) => h(Text, { key: `t${i}`, color: color ? 'blue' : undefined, wrap: 'truncate-end' }, `   ${transferLine(t)}`)),
    ...view.reasons.map((r, i) => h(Text, { key: `r${i}`, dimColor: color, wrap: 'truncate-end' }, `   cache miss: ${r}`)),
    ...[...view.lines, ...(view.partial ? [view.partial] : [])].slice(-TAIL_LINES).map((l, i) => h(Text, { key: `l${i}`, dimColor: color, wrap: 'truncate-end' }, `   ${l}`)),
  );
}
