/**
 * The text of a running byte transfer in the terminal renderer: a bar when the size is known, the
 * bytes so far and the rate. Kept apart from the renderer so that it can be used without loading ink.
 */
import { formatBytes, formatRate } from './plain.js';

const BAR_WIDTH = 20;

/** `[=========>          ]` for a transfer of known size. */
export function progressBar(current: number, total: number, width = BAR_WIDTH): string {
  const filled = total > 0 ? Math.min(width, Math.floor((current / total) * width)) : width;
  if (filled >= width) return `[${'='.repeat(width)}]`;
  return `[${'='.repeat(filled)}>${' '.repeat(width - filled - 1)}]`;
}

/** One running transfer: `compressing sha256:… [====>    ] 12.30MB / 80.00MB 25.00MB/s`. */
export function transferLine(t: { label?: string; current: number; total?: number; first: number; firstBytes: number; time: number }): string {
  const rate = formatRate(t.current - t.firstBytes, t.time - t.first);
  const amount = t.total !== undefined ? `${progressBar(t.current, t.total)} ${formatBytes(t.current)} / ${formatBytes(t.total)}` : formatBytes(t.current);
  return `${t.label ?? 'transferring'} ${amount}${rate ? ` ${rate}` : ''}`;
}
