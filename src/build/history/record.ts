/**
 * Build records in the store: every build gets a directory `builds/<id>/` holding `build.json`
 * (what was built, how it ended, each step with its time, cache status, key record and layer size)
 * and `logs/<vertex>.log`, the complete output of every step, never clipped. The next build of the
 * same target compares its keys with these records to explain its cache misses; `kiln logs --build`
 * and `kiln history --build` read them. Only the last {@link KEEP_BUILDS} builds are kept.
 */
import { createWriteStream, mkdirSync, promises as fsp, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Digest } from '../../oci/digest.js';
import type { StepKey } from '../cache-key.js';
import type { BuildEvent } from '../events.js';

/** How many build records the store keeps (older ones are removed when a build finishes). */
export const KEEP_BUILDS = 50;

export type BuildOutcomeName = 'success' | 'failed' | 'canceled' | 'running';

export interface StepEntry {
  vertex: number;
  name: string;
  stage?: string;
  line?: number;
  status: 'running' | 'cached' | 'done' | 'error';
  durationMs?: number;
  /** Bytes of output in `logs/<vertex>.log`. */
  logBytes: number;
  /** For Dockerfile steps with a cache key: its digest, record and position in the stage. */
  key?: Digest;
  record?: StepKey;
  /** Keyed steps of the stage counted from 1: how a step is matched with the previous build's. */
  ordinal?: number;
  /** Uncompressed size of the step's layer. */
  layerSize?: number;
  /** Why the cache missed (with --explain or the json stream). */
  reasons?: string[];
  error?: string;
}

/** A base image a stage started from: its key digest (a first step's parent) names it. */
export interface BaseEntry {
  ref: string;
  digest: string;
}

export interface BuildRecord {
  version: 1;
  id: string;
  /** Same context dir, Dockerfile and target stage: builds of one target are compared. */
  target: { contextDir: string; dockerfile: string; stage: string };
  tags: string[];
  started: string;
  ended?: string;
  durationMs?: number;
  outcome: BuildOutcomeName;
  error?: string;
  image?: { digest: string; configDigest: string; size: number };
  steps: StepEntry[];
  bases: Record<string, BaseEntry>;
}

export function buildsDir(storeRoot: string): string {
  return join(storeRoot, 'builds');
}

export function buildDir(storeRoot: string, id: string): string {
  return join(buildsDir(storeRoot), id);
}

export function logPath(storeRoot: string, id: string, vertex: number): string {
  return join(buildDir(storeRoot, id), 'logs', `${vertex}.log`);
}

/**
 * `20261123-024512-1f43a9`: UTC time, then the milliseconds in three hex digits (so ids sort in the
 * order builds started) and three random ones (so builds started in the same millisecond differ).
 */
export function newBuildId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const ms = now.getUTCMilliseconds().toString(16).padStart(3, '0');
  return `${t}-${ms}${Math.floor(Math.random() * 4096).toString(16).padStart(3, '0')}`;
}

/** Every stored build id, oldest first. */
export async function listBuildIds(storeRoot: string): Promise<string[]> {
  const names = await fsp.readdir(buildsDir(storeRoot)).catch(() => [] as string[]);
  return names.filter((n) => /^\d{8}-\d{6}-[0-9a-f]{6}$/.test(n)).sort();
}

export async function readBuildRecord(storeRoot: string, id: string): Promise<BuildRecord | undefined> {
  try {
    const rec = JSON.parse(await fsp.readFile(join(buildDir(storeRoot, id), 'build.json'), 'utf8')) as BuildRecord;
    return rec.version === 1 ? rec : undefined;
  } catch {
    // A record being written, or damaged: as if it were not there.
    return undefined;
  }
}

/** The most recent finished build of the same target (for explaining cache misses), if any. */
export async function previousBuild(storeRoot: string, target: BuildRecord['target'], except: string): Promise<BuildRecord | undefined> {
  const ids = (await listBuildIds(storeRoot)).filter((id) => id !== except).reverse();
  for (const id of ids) {
    const rec = await readBuildRecord(storeRoot, id);
    if (!rec || rec.outcome === 'running') continue;
    const t = rec.target;
    if (t.contextDir === target.contextDir && t.dockerfile === target.dockerfile && t.stage === target.stage) return rec;
  }
  return undefined;
}

/**
 * Listens to a build's events: writes each vertex's output to its log file as it comes, and keeps
 * the step list for `build.json`, which {@link finish} writes.
 */
export class BuildRecorder {
  readonly record: BuildRecord;
  private readonly logs = new Map<number, WriteStream>();
  private readonly steps = new Map<number, StepEntry>();
  private ready: Promise<void>;
  private saveTimer: NodeJS.Timeout | undefined;
  private saving: Promise<void> = Promise.resolve();

  constructor(
    readonly storeRoot: string,
    init: { id?: string; target: BuildRecord['target']; tags: string[] },
  ) {
    const id = init.id ?? newBuildId();
    this.record = { version: 1, id, target: init.target, tags: init.tags, started: new Date().toISOString(), outcome: 'running', steps: [], bases: {} };
    // Made now, before any log file opens (those open asynchronously, on the first output).
    mkdirSync(join(buildDir(storeRoot, id), 'logs'), { recursive: true });
    // build.json appears with the first step's start (see saveSoon): a build that ends sooner,
    // like a fully cached one, writes its record once, at the end.
    this.ready = Promise.resolve();
  }

  get id(): string {
    return this.record.id;
  }

  get logDir(): string {
    return join(buildDir(this.storeRoot, this.id), 'logs');
  }

  logPath(vertex: number): string {
    return logPath(this.storeRoot, this.id, vertex);
  }

  step(vertex: number): StepEntry | undefined {
    return this.steps.get(vertex);
  }

  /** The event sink: call it with every event of the build. */
  readonly sink = (event: BuildEvent): void => {
    if (event.type === 'vertex-start' || event.type === 'vertex-done' || event.type === 'vertex-cached' || event.type === 'vertex-error') this.saveSoon();
    switch (event.type) {
      case 'vertex-start': {
        const v = event.vertex;
        const entry: StepEntry = { vertex: v.id, name: v.name, status: 'running', logBytes: 0, ...(v.stage ? { stage: v.stage } : {}), ...(v.line !== undefined ? { line: v.line } : {}) };
        this.steps.set(v.id, entry);
        this.record.steps.push(entry);
        break;
      }
      case 'vertex-log': {
        const entry = this.steps.get(event.id);
        if (entry) entry.logBytes += event.data.length;
        this.log(event.id).write(event.data);
        break;
      }
      case 'vertex-cached': {
        const entry = this.steps.get(event.vertex.id);
        if (entry) entry.status = 'cached';
        this.close(event.vertex.id);
        break;
      }
      case 'vertex-miss': {
        const entry = this.steps.get(event.id);
        if (entry) entry.reasons = event.reasons;
        break;
      }
      case 'vertex-done':
      case 'vertex-error': {
        const entry = this.steps.get(event.id);
        if (entry) {
          entry.status = event.type === 'vertex-done' ? 'done' : 'error';
          entry.durationMs = event.durationMs;
          if (event.type === 'vertex-error') entry.error = event.message;
        }
        this.close(event.id);
        break;
      }
      default:
        break;
    }
  };

  private log(id: number): WriteStream {
    let s = this.logs.get(id);
    if (!s) {
      s = createWriteStream(this.logPath(id), { flags: 'a' });
      s.on('error', () => undefined);
      this.logs.set(id, s);
    }
    return s;
  }

  private close(id: number): void {
    const s = this.logs.get(id);
    if (s) s.end();
  }

  /** While the build runs, build.json follows its steps (for `kiln logs --build --follow`), a few times a second at most. */
  private saveSoon(): void {
    if (this.saveTimer || this.record.outcome !== 'running') return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      this.saving = this.saving.then(() => this.save()).catch(() => undefined);
    }, 300);
    this.saveTimer.unref();
  }

  private async save(): Promise<void> {
    const dir = buildDir(this.storeRoot, this.id);
    const tmp = join(dir, `.build.json.${process.pid}.tmp`);
    await fsp.writeFile(tmp, `${JSON.stringify(this.record, null, 1)}\n`);
    await fsp.rename(tmp, join(dir, 'build.json'));
  }

  /** Waits until every log file is complete on disk. */
  async flushLogs(): Promise<void> {
    await this.ready.catch(() => undefined);
    const pending = [...this.logs.values()].map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.closed || s.destroyed) return resolve();
          s.once('close', () => resolve());
          s.once('error', () => resolve());
          s.end();
        }),
    );
    await Promise.all(pending);
  }

  /** Ends the record: outcome, time, image; writes build.json and prunes old builds. */
  async finish(outcome: Exclude<BuildOutcomeName, 'running'>, extra: { error?: string; image?: BuildRecord['image'] } = {}): Promise<void> {
    await this.flushLogs();
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    await this.saving;
    const ended = new Date();
    this.record.outcome = outcome;
    this.record.ended = ended.toISOString();
    this.record.durationMs = ended.getTime() - Date.parse(this.record.started);
    if (extra.error) this.record.error = extra.error;
    if (extra.image) this.record.image = extra.image;
    try {
      await this.save();
      await pruneBuilds(this.storeRoot, KEEP_BUILDS);
    } catch {
      // The record is a convenience: a store that cannot take it does not fail the build.
    }
  }
}

/**
 * File manifests are swept only once there are this many: finding the unused ones reads every kept
 * build record, too much to do after every build, and a few small files waiting costs nothing.
 */
export const MANIFESTS_BEFORE_SWEEP = 4 * KEEP_BUILDS;

/**
 * Removes all but the newest `keep` build records, and, once there are more than
 * `manifestsBeforeSweep` of them, the file manifests none of the kept records uses.
 */
export async function pruneBuilds(storeRoot: string, keep: number, manifestsBeforeSweep = MANIFESTS_BEFORE_SWEEP): Promise<number> {
  const ids = await listBuildIds(storeRoot);
  const old = ids.slice(0, Math.max(0, ids.length - keep));
  for (const id of old) await fsp.rm(buildDir(storeRoot, id), { recursive: true, force: true });
  if (old.length) await pruneManifests(storeRoot, ids.slice(old.length), manifestsBeforeSweep);
  return old.length;
}

async function pruneManifests(storeRoot: string, kept: string[], threshold: number): Promise<void> {
  const { manifestsDir } = await import('./manifests.js');
  const present = await fsp.readdir(manifestsDir(storeRoot)).catch(() => [] as string[]);
  if (present.length <= threshold) return;
  const used = new Set<string>();
  for (const id of kept) {
    const rec = await readBuildRecord(storeRoot, id);
    for (const s of rec?.steps ?? []) {
      if (s.record && (s.record.kind === 'copy' || s.record.kind === 'add')) for (const src of s.record.sources) used.add(src.digest.replace(/^sha256:/, ''));
    }
  }
  const dir = manifestsDir(storeRoot);
  for (const name of present) {
    if (!used.has(name.replace(/\.json$/, ''))) await fsp.rm(join(dir, name), { force: true });
  }
}
