/**
 * A container's output on disk, in Docker's json-file form: one JSON object per chunk,
 * `{"log":"…","stream":"stdout"|"stderr","time":"<RFC 3339 nano>"}`, so `kiln logs` can replay
 * stdout and stderr to the right streams, with timestamps, the last N lines, or following.
 */
import { closeSync, createWriteStream, openSync, readSync, fstatSync, type WriteStream } from 'node:fs';

export interface LogEntry {
  log: string;
  stream: 'stdout' | 'stderr';
  time: string;
}

export class LogWriter {
  private readonly out: WriteStream;

  constructor(path: string) {
    this.out = createWriteStream(path, { flags: 'a' });
    this.out.on('error', () => undefined);
  }

  write(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    if (chunk.length === 0) return;
    // Split at newlines (keeping them), as json-file does, so --tail counts lines.
    const text = chunk.toString('utf8');
    const time = new Date().toISOString();
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      if (text[i] === '\n') {
        this.out.write(`${JSON.stringify({ log: text.slice(start, i + 1), stream, time })}\n`);
        start = i + 1;
      }
    }
    if (start < text.length) this.out.write(`${JSON.stringify({ log: text.slice(start), stream, time })}\n`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.out.end(() => resolve()));
  }
}

/** Reads entries appended to a log file since the last call. */
export class LogReader {
  private offset = 0;
  private partial = '';

  constructor(private readonly path: string) {}

  read(): LogEntry[] {
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch {
      return [];
    }
    try {
      const size = fstatSync(fd).size;
      if (size <= this.offset) return [];
      const buf = Buffer.alloc(size - this.offset);
      const n = readSync(fd, buf, 0, buf.length, this.offset);
      this.offset += n;
      const text = this.partial + buf.subarray(0, n).toString('utf8');
      const lines = text.split('\n');
      this.partial = lines.pop() ?? '';
      const out: LogEntry[] = [];
      for (const line of lines) {
        if (!line) continue;
        try {
          out.push(JSON.parse(line) as LogEntry);
        } catch {
          // a damaged line: skipped, as docker skips what it cannot decode
        }
      }
      return out;
    } finally {
      closeSync(fd);
    }
  }
}

/** The last `n` lines' worth of entries (an entry is at most one line). */
export function tail(entries: LogEntry[], n: number | undefined): LogEntry[] {
  if (n === undefined || n < 0) return entries;
  return n === 0 ? [] : entries.slice(-n);
}
