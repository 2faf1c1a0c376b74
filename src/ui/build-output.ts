/**
 * Everything a user sees of one `kiln build` besides its result: the renderer `--progress` picks
 * (the tty one loaded only when chosen), the build record and full logs on disk, cache-miss
 * explanations, the summary at the end, and the log path when a step fails.
 */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { DockerfileError, KilnError } from '../errors.js';
import type { BuildEngine, MissObserver } from '../build/engine.js';
import type { BuildEvent } from '../build/events.js';
import { BuildRecorder, previousBuild } from '../build/history/record.js';
import { chooseRenderer, type RendererKind } from './select.js';
import { loadTtyRenderer } from './load-tty.js';
import { plainRenderer } from './plain.js';
import { summaryLines, type SummaryImage } from './summary.js';

export interface BuildOutputOptions {
  progress: string;
  quiet: boolean;
  explain: boolean;
  storeRoot: string;
  contextDir: string;
  /** `-f` as given (relative to the working directory), or `-` for standard input. */
  dockerfile: string;
  target: string | undefined;
  tags: string[];
}

export class BuildOutput {
  readonly kind: RendererKind;
  private stopRenderer: () => Promise<void> = async () => undefined;
  private render: (e: BuildEvent) => void = () => undefined;
  private recorder: BuildRecorder | undefined;
  private target: { contextDir: string; dockerfile: string; stage: string } | undefined;
  private failedVertex: number | undefined;
  private observer: { settle(): Promise<void> } | undefined;

  private constructor(private readonly options: BuildOutputOptions) {
    this.kind = options.quiet ? 'quiet' : chooseRenderer(options.progress, process.env, Boolean(process.stderr.isTTY));
  }

  static async start(options: BuildOutputOptions): Promise<BuildOutput> {
    const out = new BuildOutput(options);
    const write = (t: string): void => void process.stderr.write(t);
    switch (out.kind) {
      case 'tty': {
        // ink and React take a while to load: the build starts meanwhile, its first events wait.
        const early: BuildEvent[] = [];
        out.render = (e) => early.push(e);
        const loading = loadTtyRenderer().then((ttyRenderer) => {
          const r = ttyRenderer(process.stderr);
          for (const e of early.splice(0)) r.sink(e);
          out.render = r.sink;
          return r;
        }).catch(() => {
          // Without ink (a broken install), plain lines still tell the story.
          const plain = plainRenderer(write);
          for (const e of early.splice(0)) plain(e);
          out.render = plain;
          return { stop: async () => undefined };
        });
        out.stopRenderer = async () => (await loading).stop();
        break;
      }
      case 'plain':
        out.render = plainRenderer(write);
        break;
      case 'json':
      case 'rawjson': {
        const { jsonRenderer } = await import('./json.js');
        out.render = jsonRenderer(write, out.kind === 'rawjson');
        break;
      }
      case 'quiet':
        break;
    }
    const target = { contextDir: canonical(options.contextDir), dockerfile: options.dockerfile === '-' ? '-' : canonical(options.dockerfile), stage: options.target ?? '' };
    try {
      out.recorder = new BuildRecorder(options.storeRoot, { target, tags: options.tags });
      out.target = target;
    } catch {
      // A store that cannot keep build records still builds.
    }
    return out;
  }

  /** The sink the build's Progress writes to. */
  readonly sink = (event: BuildEvent): void => {
    if (event.type === 'vertex-error' && event.message !== 'canceled') this.failedVertex ??= event.id;
    this.recorder?.sink(event);
    this.render(event);
  };

  get buildId(): string | undefined {
    return this.recorder?.id;
  }

  /**
   * Announces the build (its id and log directory) once the engine is made; hooks the miss observer.
   * The observer, and the previous build's record it explains misses against, load at the first
   * miss: a fully cached build has nothing to explain.
   */
  async attach(engine: BuildEngine): Promise<void> {
    const rec = this.recorder;
    const target = this.target;
    if (!rec || !target) return;
    this.sink({ type: 'build-start', build: rec.id, time: Date.now(), logDir: rec.logDir });
    // Explanations go to the json stream too: machines reading it get them without asking.
    const explain = this.options.explain || this.kind === 'json' || this.kind === 'rawjson';
    const storeRoot = this.options.storeRoot;
    let loading: Promise<{ missed: MissObserver['missed']; settle(): Promise<void> }> | undefined;
    const observer = (): NonNullable<typeof loading> =>
      (loading ??= import('../build/history/observer.js').then(({ HistoryObserver }) => {
        const previous = previousBuild(storeRoot, target, rec.id).catch(() => undefined);
        return new HistoryObserver(engine, storeRoot, previous, explain);
      }));
    this.observer = { settle: async () => (loading ? (await loading).settle() : undefined) };
    engine.observer = { missed: async (step) => (await observer()).missed(step) };
  }

  private async mergeKeys(engine: BuildEngine | undefined): Promise<void> {
    await this.observer?.settle();
    if (!engine || !this.recorder) return;
    for (const step of this.recorder.record.steps) {
      const k = engine.keyed.get(step.vertex);
      if (!k) continue;
      step.key = k.key;
      step.record = k.record;
      step.ordinal = k.ordinal;
      if (k.layerSize !== undefined) step.layerSize = k.layerSize;
    }
    Object.assign(this.recorder.record.bases, engine.bases);
  }

  /** A successful build: the record is finished, the renderer stopped, the summary printed. */
  async succeeded(engine: BuildEngine, image: SummaryImage, digest: string): Promise<void> {
    await this.mergeKeys(engine);
    this.sink({ type: 'build-done', time: Date.now(), digest: image.id, durationMs: Date.now() - Date.parse(this.recorder?.record.started ?? new Date().toISOString()) });
    await this.recorder?.finish('success', { image: { digest, configDigest: image.id, size: image.size } });
    await this.stopRenderer();
    if ((this.kind === 'tty' || this.kind === 'plain') && this.recorder) {
      process.stderr.write(`${summaryLines(this.recorder.record, image, process.stderr.columns || 100).join('\n')}\n`);
    }
  }

  /**
   * A failed build: the record is finished; a failing step's error gets the path of its whole log
   * (the error itself shows only its last lines).
   */
  async failed(engine: BuildEngine | undefined, err: unknown): Promise<void> {
    await this.mergeKeys(engine);
    const canceled = err instanceof KilnError && err.code === 'ABORTED';
    const message = err instanceof KilnError ? err.describe() : err instanceof Error ? err.message : String(err);
    this.sink({ type: 'build-done', time: Date.now(), error: message });
    await this.recorder?.finish(canceled ? 'canceled' : 'failed', { error: message });
    await this.stopRenderer();
    const rec = this.recorder;
    // What ran before the failure, and how long the failing step took; a build that failed before
    // any step (a Dockerfile error) has nothing to sum up.
    if ((this.kind === 'tty' || this.kind === 'plain') && rec && rec.record.steps.some((s) => s.line !== undefined)) {
      process.stderr.write(`${summaryLines(rec.record, undefined, process.stderr.columns || 100).join('\n')}\n`);
    }
    const failed = this.failedVertex;
    // `-q` keeps standard error to the error itself, as scripts expect.
    if (rec && failed !== undefined && !this.options.quiet && err instanceof DockerfileError && err.context.length) {
      const step = rec.step(failed);
      if (step && step.logBytes > 0) err.context.push(`full log: ${rec.logPath(failed)} (${step.logBytes} bytes; kiln logs --build ${rec.id} ${failed})`);
    }
  }
}

function canonical(path: string): string {
  try {
    return realpathSync(resolve(path));
  } catch {
    return resolve(path);
  }
}
