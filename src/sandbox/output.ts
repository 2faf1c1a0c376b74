/**
 * A RUN step's output on its way to the build log: secret values replaced by `****` (a command that
 * prints its secret must not put it into a log), and the last lines kept for the error message when
 * the step fails.
 */

/** Where output goes: a stream (process.stdout, a log file) or a callback. */
export type OutputSink = NodeJS.WritableStream | ((chunk: Buffer) => void);

export function emit(sink: OutputSink | undefined, chunk: Buffer): void {
  if (!sink || chunk.length === 0) return;
  if (typeof sink === 'function') sink(chunk);
  else sink.write(chunk);
}

const MASK = Buffer.from('****');

/**
 * Replaces every occurrence of the given values in a byte stream split into arbitrary chunks: it
 * holds back the last `longest - 1` bytes of each chunk, in case a value straddles two chunks.
 */
export class Redactor {
  private readonly values: Buffer[];
  private readonly keep: number;
  private carry: Buffer = Buffer.alloc(0);

  constructor(values: Buffer[]) {
    // Very short values would mask ordinary output everywhere; empty ones would match everything.
    this.values = values.filter((v) => v.length >= 3).sort((a, b) => b.length - a.length);
    this.keep = this.values.length ? this.values[0]!.length - 1 : 0;
  }

  push(chunk: Buffer): Buffer {
    if (this.values.length === 0) return chunk;
    const data = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    const masked = this.mask(data);
    // Hold back a tail that could be the start of a value continued in the next chunk.
    const cut = Math.max(0, masked.length - this.keep);
    this.carry = masked.subarray(cut);
    return masked.subarray(0, cut);
  }

  flush(): Buffer {
    const rest = this.carry;
    this.carry = Buffer.alloc(0);
    return rest;
  }

  private mask(data: Buffer): Buffer {
    let out = data;
    for (const v of this.values) {
      let i = out.indexOf(v);
      if (i < 0) continue;
      const parts: Buffer[] = [];
      let from = 0;
      while (i >= 0) {
        parts.push(out.subarray(from, i), MASK);
        from = i + v.length;
        i = out.indexOf(v, from);
      }
      parts.push(out.subarray(from));
      out = Buffer.concat(parts);
    }
    return out;
  }
}

/** The last `max` lines of a byte stream (a partial last line counts). */
export class TailBuffer {
  private lines: string[] = [];
  private partial = '';

  constructor(private readonly max = 20) {}

  push(chunk: Buffer): void {
    const text = this.partial + chunk.toString('utf8');
    const parts = text.split(/\r?\n/);
    this.partial = parts.pop() ?? '';
    for (const line of parts) this.lines.push(line);
    if (this.lines.length > this.max) this.lines = this.lines.slice(-this.max);
    if (this.partial.length > 4096) this.partial = this.partial.slice(-4096);
  }

  get(): string[] {
    const all = this.partial ? [...this.lines, this.partial] : [...this.lines];
    return all.slice(-this.max).map((l) => (l.length > 500 ? `${l.slice(0, 497)}...` : l));
  }
}
