/**
 * The one typed event stream a build emits. Renderers (plain, json, tty) and the build log on disk
 * consume it; nothing else writes progress. Vertex ids are small integers in order of first
 * appearance, as buildx numbers its `#N` lines.
 */

export type StepStatus = 'running' | 'cached' | 'done' | 'error';

export interface VertexInfo {
  id: number;
  /** `[build 2/4] RUN make`, `[internal] load build definition from Dockerfile`. */
  name: string;
  /** Stage display name, when the vertex is a Dockerfile step. */
  stage?: string;
  /** Dockerfile line of the instruction. */
  line?: number;
}

export type BuildEvent =
  | { type: 'vertex-start'; vertex: VertexInfo; time: number }
  | { type: 'vertex-cached'; vertex: VertexInfo; time: number; reason?: string }
  | { type: 'vertex-log'; id: number; stream: 'stdout' | 'stderr'; data: Buffer; time: number }
  /**
   * Progress of a transfer of a step, told apart by `label`. `done` is set by transfers that know
   * their end (true on the last event, false before); without it, `current >= total` is the end.
   */
  | { type: 'vertex-progress'; id: number; current: number; total?: number; unit: 'bytes' | 'items'; label?: string; done?: boolean; time: number }
  | { type: 'vertex-done'; id: number; time: number; durationMs: number }
  | { type: 'vertex-error'; id: number; time: number; durationMs: number; message: string }
  | { type: 'vertex-miss'; id: number; reasons: string[]; time: number }
  | { type: 'warning'; message: string; line?: number; time: number }
  /** The build began; its record (logs, steps) is kept under this id (`kiln logs --build ID`). */
  | { type: 'build-start'; build: string; time: number; logDir?: string }
  /**
   * An interactive shell opened in a failed step's sandbox (`--on-failure=shell`), then closed:
   * renderers stop drawing while it is open, since the terminal belongs to the shell.
   */
  | { type: 'vertex-shell'; id: number; state: 'open' | 'closed'; time: number }
  | { type: 'build-done'; time: number; digest?: string; error?: string; durationMs?: number }
  /** A step's layer sent to a `--cache-to` target: bytes sent (0 when it was there already) and time. */
  | { type: 'cache-export'; target: string; step: string; digest: string; bytes: number; status: 'pushed' | 'exists' | 'mounted' | 'written'; durationMs: number; time: number };

/** The `type` of every event this version emits; consumers must skip types they do not know. */
export type BuildEventType = BuildEvent['type'];

export type EventSink = (event: BuildEvent) => void;

/** Hands out vertex ids and stamps events with the time; a no-op sink when nobody listens. */
export class Progress {
  private next = 1;

  constructor(private readonly sink: EventSink = () => undefined) {}

  emit(event: BuildEvent): void {
    this.sink(event);
  }

  /** Starts a vertex; the returned handle reports its outcome. */
  start(name: string, extra: Omit<VertexInfo, 'id' | 'name'> = {}): Vertex {
    const vertex: VertexInfo = { id: this.next++, name, ...extra };
    const started = Date.now();
    this.emit({ type: 'vertex-start', vertex, time: started });
    return new Vertex(this, vertex, started);
  }

  warn(message: string, line?: number): void {
    this.emit({ type: 'warning', message, ...(line !== undefined ? { line } : {}), time: Date.now() });
  }
}

export class Vertex {
  constructor(
    private readonly progress: Progress,
    readonly info: VertexInfo,
    private readonly started: number,
  ) {}

  get id(): number {
    return this.info.id;
  }

  log(stream: 'stdout' | 'stderr', data: Buffer): void {
    this.progress.emit({ type: 'vertex-log', id: this.info.id, stream, data, time: Date.now() });
  }

  bytes(current: number, total?: number, label?: string, done?: boolean): void {
    this.progress.emit({
      type: 'vertex-progress',
      id: this.info.id,
      current,
      unit: 'bytes',
      ...(total !== undefined ? { total } : {}),
      ...(label ? { label } : {}),
      ...(done !== undefined ? { done } : {}),
      time: Date.now(),
    });
  }

  /**
   * A byte counter for one long transfer of this step (a layer compressed, a blob sent, an archive
   * written): the caller counts every chunk, the stream gets at most one event per
   * {@link PROGRESS_INTERVAL_MS} and always the final one, so renderers and the json stream see
   * bytes and rates without one event per chunk.
   */
  meter(label: string, total?: number): ByteMeter {
    return new ByteMeter((current, t, done) => this.bytes(current, t, label, done), total);
  }

  items(current: number, total?: number, label?: string): void {
    this.progress.emit({
      type: 'vertex-progress',
      id: this.info.id,
      current,
      unit: 'items',
      ...(total !== undefined ? { total } : {}),
      ...(label ? { label } : {}),
      time: Date.now(),
    });
  }

  miss(reasons: string[]): void {
    this.progress.emit({ type: 'vertex-miss', id: this.info.id, reasons, time: Date.now() });
  }

  cached(reason?: string): void {
    this.progress.emit({ type: 'vertex-cached', vertex: this.info, time: Date.now(), ...(reason ? { reason } : {}) });
  }

  done(): void {
    const time = Date.now();
    this.progress.emit({ type: 'vertex-done', id: this.info.id, time, durationMs: time - this.started });
  }

  /** Runs `open` with renderers paused: the terminal is the shell's until it returns. */
  async shell<T>(open: () => Promise<T>): Promise<T> {
    this.progress.emit({ type: 'vertex-shell', id: this.info.id, state: 'open', time: Date.now() });
    try {
      return await open();
    } finally {
      this.progress.emit({ type: 'vertex-shell', id: this.info.id, state: 'closed', time: Date.now() });
    }
  }

  fail(message: string): void {
    const time = Date.now();
    this.progress.emit({ type: 'vertex-error', id: this.info.id, time, durationMs: time - this.started, message });
  }
}

/** Byte progress events of one transfer are at most this often (the last one always comes). */
export const PROGRESS_INTERVAL_MS = 200;

/** Counts the bytes of one transfer and reports them, throttled; see {@link Vertex.meter}. */
export class ByteMeter {
  private current = 0;
  private reported = -1;
  private last = 0;
  private ended = false;

  constructor(
    private readonly report: (current: number, total: number | undefined, done: boolean) => void,
    private total?: number,
    private readonly now: () => number = Date.now,
  ) {
    // The first event marks the start, so a rate counts from there.
    this.emit();
  }

  /** The transfer turned out larger (more blobs of an image announced). */
  setTotal(total: number): void {
    this.total = total;
  }

  /** `n` more bytes moved. */
  add(n: number): void {
    this.set(this.current + n);
  }

  /** `current` bytes moved so far (a retried transfer may go back). */
  set(current: number): void {
    if (this.ended) return;
    this.current = current;
    if (this.now() - this.last >= PROGRESS_INTERVAL_MS) this.emit();
  }

  /** The transfer is complete: its final count is reported as its total. */
  finish(current = this.current): void {
    if (this.ended) return;
    this.current = current;
    this.total = current;
    this.ended = true;
    this.emit();
  }

  private emit(): void {
    if (this.current === this.reported && this.last !== 0 && !this.ended) return;
    this.last = this.now();
    this.reported = this.current;
    this.report(this.current, this.total, this.ended);
  }
}
