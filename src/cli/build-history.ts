/** `kiln history --build`: the builds the store keeps, newest first, with how each ended. */
import { basename } from 'node:path';
import { listBuildIds, readBuildRecord, type BuildRecord } from '../build/history/record.js';
import { formatDuration } from '../ui/plain.js';

export interface BuildHistoryOptions {
  format?: string;
  /** Only the ids. */
  quiet?: boolean;
  /** At most this many builds. */
  last?: number;
}

export interface BuildHistoryRow {
  id: string;
  started: string;
  target: string;
  outcome: BuildRecord['outcome'];
  durationMs: number | undefined;
  steps: number;
  cached: number;
  image?: string;
  error?: string;
}

export function buildRow(r: BuildRecord): BuildHistoryRow {
  const steps = r.steps.filter((s) => s.line !== undefined);
  const stage = r.target.stage ? `:${r.target.stage}` : '';
  const target = r.tags.length ? r.tags.join(',') : `${basename(r.target.contextDir) || r.target.contextDir}${stage}`;
  return {
    id: r.id,
    started: r.started,
    target,
    outcome: r.outcome,
    durationMs: r.durationMs,
    steps: steps.length,
    cached: steps.filter((s) => s.status === 'cached').length,
    ...(r.image ? { image: r.image.configDigest } : {}),
    ...(r.error ? { error: r.error } : {}),
  };
}

export async function runBuildHistory(storeRoot: string, options: BuildHistoryOptions): Promise<number> {
  const ids = (await listBuildIds(storeRoot)).reverse().slice(0, options.last ?? Infinity);
  const rows: BuildHistoryRow[] = [];
  for (const id of ids) {
    const rec = await readBuildRecord(storeRoot, id);
    if (rec) rows.push(buildRow(rec));
  }
  if (options.quiet) {
    process.stdout.write(rows.map((r) => `${r.id}\n`).join(''));
    return 0;
  }
  if (options.format === 'json') {
    process.stdout.write(rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
    return 0;
  }
  const now = Date.now();
  const table = [['BUILD ID', 'CREATED', 'TARGET', 'STATUS', 'DURATION', 'CACHED']];
  for (const r of rows) {
    table.push([r.id, since(Date.parse(r.started), now), r.target.length > 40 ? `${r.target.slice(0, 37)}...` : r.target, r.outcome.toUpperCase(), r.durationMs !== undefined ? formatDuration(r.durationMs) : '-', `${r.cached}/${r.steps}`]);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  process.stdout.write(table.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('   ')).join('\n') + '\n');
  return 0;
}

function since(t: number, now: number): string {
  const s = Math.max(0, Math.round((now - t) / 1000));
  const ago = (n: number, unit: string): string => `${n} ${unit}${n === 1 ? '' : 's'} ago`;
  if (s < 60) return ago(s, 'second');
  if (s < 3600) return ago(Math.round(s / 60), 'minute');
  if (s < 86400) return ago(Math.round(s / 3600), 'hour');
  return ago(Math.round(s / 86400), 'day');
}
