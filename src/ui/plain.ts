/**
 * The plain progress renderer (`--progress=plain`, the default without a terminal): numbered step
 * lines in buildx's style, so CI logs read like `docker buildx build` logs.
 *
 *   #3 [build 2/4] RUN make
 *   #3 0.512 compiling...
 *   #3 DONE 1.2s
 *   #4 [build 3/4] COPY . /app
 *   #4 CACHED
 *
 * Byte progress (pulls, layers compressed, exports, pushes) prints at most once a second per
 * transfer (a vertex and a label), with its rate, and once when complete; a transfer done within
 * the second is that one line:
 *
 *   #9 compressing sha256:2f1c0e3a9b7d 41.94MB / 80.00MB 26.10MB/s
 *   #9 compressing sha256:2f1c0e3a9b7d 80.00MB 25.80MB/s done
 *
 * Event types it does not know are skipped.
 */
import type { BuildEvent } from '../build/events.js';

export function plainRenderer(write: (text: string) => void): (event: BuildEvent) => void {
  const started = new Map<number, number>();
  const partial = new Map<number, string>();
  const progress = new Map<string, { first: number; firstBytes: number; printed: number; completedAt?: number }>();
  // While a shell owns the terminal, lines wait here.
  let held: string[] | undefined;
  const out = (text: string): void => {
    if (held) held.push(text);
    else write(text);
  };
  const flush = (id: number): void => {
    const rest = partial.get(id);
    if (rest) out(`#${id} ${elapsed(started.get(id))} ${rest}\n`);
    partial.delete(id);
  };
  return (event) => {
    switch (event.type) {
      case 'vertex-start':
        started.set(event.vertex.id, event.time);
        out(`#${event.vertex.id} ${event.vertex.name}\n`);
        break;
      case 'vertex-log': {
        const text = (partial.get(event.id) ?? '') + event.data.toString('utf8');
        const lines = text.split('\n');
        partial.set(event.id, lines.pop() ?? '');
        const at = elapsed(started.get(event.id), event.time);
        for (const line of lines) out(`#${event.id} ${at} ${line}\n`);
        break;
      }
      case 'vertex-progress': {
        const k = `${event.id} ${event.label ?? ''}`;
        let p = progress.get(k);
        if (!p) {
          // The first line comes after a second (or at the end): a quick transfer is one line.
          p = { first: event.time, firstBytes: event.current, printed: event.time };
          progress.set(k, p);
        }
        const complete = event.done ?? (event.total !== undefined && event.current >= event.total);
        if (!complete && event.time - p.printed < 1000) break;
        // The same end reported twice (a last chunk, then the transfer's close) is one line.
        if (complete && p.completedAt === event.current) break;
        if (complete) p.completedAt = event.current;
        p.printed = event.time;
        const label = event.label ?? 'transferred';
        if (event.unit === 'items') {
          out(`#${event.id} ${label} ${event.current}${event.total !== undefined ? `/${event.total}` : ''}${complete ? ' done' : ''}\n`);
          break;
        }
        const amount = event.total !== undefined && !complete ? `${formatBytes(event.current)} / ${formatBytes(event.total)}` : formatBytes(event.current);
        const rate = formatRate(event.current - p.firstBytes, event.time - p.first);
        out(`#${event.id} ${label} ${amount}${rate ? ` ${rate}` : ''}${complete ? ' done' : ''}\n`);
        break;
      }
      case 'vertex-cached':
        flush(event.vertex.id);
        out(`#${event.vertex.id} CACHED\n`);
        break;
      case 'vertex-miss':
        for (const r of event.reasons) out(`#${event.id} cache miss: ${r}\n`);
        break;
      case 'vertex-done':
        flush(event.id);
        out(`#${event.id} DONE ${(event.durationMs / 1000).toFixed(1)}s\n`);
        break;
      case 'vertex-error':
        flush(event.id);
        out(`#${event.id} ERROR: ${event.message}\n`);
        break;
      case 'vertex-shell':
        if (event.state === 'open') {
          flush(event.id);
          write(`#${event.id} opening a shell in the failed step (exit it to end the build)\n`);
          held = [];
        } else {
          const lines = held ?? [];
          held = undefined;
          for (const l of lines) write(l);
        }
        break;
      case 'warning':
        out(`WARNING: ${event.message}${event.line !== undefined ? ` (line ${event.line})` : ''}\n`);
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

/** `12.30MB/s`, or '' when too little time passed to say. */
export function formatRate(bytes: number, ms: number): string {
  if (ms < 100 || bytes <= 0) return '';
  return `${formatBytes(Math.round((bytes * 1000) / ms))}/s`;
}

export function formatDuration(ms: number): string {
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1000)}s`;
}
