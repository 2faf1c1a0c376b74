/**
 * The build summary printed at the end (tty and plain): each Dockerfile step with its time (or
 * CACHED) and layer size, how many were cached, the image's size and digest, and where the logs are.
 * A failed build gets one too, without the image: the steps that ran and were cached, and the step
 * that failed with its time (steps stopped because of it say `canceled`).
 */
import type { BuildRecord, StepEntry } from '../build/history/record.js';
import { formatBytes, formatDuration } from './plain.js';

export interface SummaryImage {
  /** The image ID (config digest). */
  id: string;
  /** Manifest digest in the store. */
  digest: string;
  /** Uncompressed size of its layers. */
  size: number;
  layers: number;
}

export function summaryLines(record: BuildRecord, image: SummaryImage | undefined, width = 100): string[] {
  const steps = record.steps.filter((s) => s.line !== undefined);
  const cached = steps.filter((s) => s.status === 'cached').length;
  const stopped = (s: StepEntry): boolean => s.status === 'running' || (s.status === 'error' && s.error === 'canceled');
  const failed = steps.filter((s) => s.status === 'error' && !stopped(s));
  const total = record.durationMs ?? Date.now() - Date.parse(record.started);
  const lines = [`Summary: ${steps.length} steps, ${cached} cached${failed.length ? `, ${failed.length} failed` : ''}, ${formatDuration(total)}`];
  const nameWidth = Math.max(20, width - 28);
  for (const s of steps) {
    const label = `#${s.vertex} ${s.name}`;
    const name = label.length > nameWidth ? `${label.slice(0, nameWidth - 3)}...` : label.padEnd(nameWidth);
    const time = s.status === 'cached' ? 'CACHED' : stopped(s) ? 'canceled' : s.status === 'error' ? 'ERROR' : formatDuration(s.durationMs ?? 0);
    const size = s.layerSize !== undefined ? formatBytes(s.layerSize) : '';
    lines.push(`  ${name} ${time.padStart(8)} ${size.padStart(9)}`.trimEnd());
  }
  for (const s of failed) lines.push(`Failed: #${s.vertex} ${s.name} after ${formatDuration(s.durationMs ?? 0)}`);
  if (image) lines.push(`Image: ${image.id} (${formatBytes(image.size)} in ${image.layers} layer${image.layers === 1 ? '' : 's'}), manifest ${image.digest}`);
  lines.push(`Logs: kiln logs --build ${record.id}`);
  return lines;
}
