/**
 * The plain progress renderer (`--progress=plain`, the default without a terminal): numbered step
 * lines in buildx's style, so CI logs read like `docker buildx build` logs.
 *
 *   #3 [build 2/4] RUN make
 *   #3 0.512 compiling...
 *   #3 DONE 1.2s
 *   #4 [build 3/4] COPY . /app
 *   #4 CACHED
 */
import type { BuildEvent } from '../build/events.js';

export function plainRenderer(write: (text: string) => void): (event: BuildEvent) => void {
  const started = new Map<number, number>();
  const partial = new Map<number, string>();
  const flush = (id: number): void => {
    const rest = partial.get(id);
    if (rest) write(`#${id} ${elapsed(started.get(id))} ${rest}\n`);
    partial.delete(id);
  };
  return (event) => {
    switch (event.type) {
      case 'vertex-start':
        started.set(event.vertex.id, event.time);
        write(`#${event.vertex.id} ${event.vertex.name}\n`);
        break;
      case 'vertex-log': {
        const text = (partial.get(event.id) ?? '') + event.data.toString('utf8');
        const lines = text.split('\n');
        partial.set(event.id, lines.pop() ?? '');
        const at = elapsed(started.get(event.id), event.time);
        for (const line of lines) write(`#${event.id} ${at} ${line}\n`);
        break;
      }
      case 'vertex-progress':
        if (event.total !== undefined && event.current === event.total) {
          write(`#${event.id} ${event.label ?? 'transferred'} ${formatBytes(event.current)}\n`);
        }
        break;
      case 'vertex-cached':
        flush(event.vertex.id);
        write(`#${event.vertex.id} CACHED\n`);
        break;
      case 'vertex-miss':
        for (const r of event.reasons) write(`#${event.id} cache miss: ${r}\n`);
        break;
      case 'vertex-done':
        flush(event.id);
        write(`#${event.id} DONE ${(event.durationMs / 1000).toFixed(1)}s\n`);
        break;
      case 'vertex-error':
        flush(event.id);
        write(`#${event.id} ERROR: ${event.message}\n`);
        break;
      case 'warning':
        write(`WARNING: ${event.message}${event.line !== undefined ? ` (line ${event.line})` : ''}\n`);
        break;
      default:
        break;
    }
  };
}

function elapsed(start: number | undefined, now = Date.now()): string {
  return ((now - (start ?? now)) / 1000).toFixed(3);
}

export function formatBytes(n: number): string {
  if (n < 1000) return `${n}B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(2)}${units[i]}`;
}
