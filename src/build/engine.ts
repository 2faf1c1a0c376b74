/**
 * The build engine: a Dockerfile plan in, an image in the store out.
 *
 * Stages the target needs run as soon as the stages they depend on are done (independent stages in
 * parallel); steps that do work (RUN, COPY, ADD, WORKDIR's directory) share one concurrency limit
 * (`jobs`). Every such step first computes its cache key — a record of the parent filesystem's key,
 * the expanded instruction, the environment it sees and the content digests of what it reads — and
 * reuses the recorded layer when the store has one: a cached step starts no sandbox and reads no
 * file. Metadata instructions are applied to the image config directly; they need no cache because
 * they are cheap and deterministic.
 */
import pLimit from 'p-limit';
import { DockerfileError, KilnError, type SourceLocation } from '../errors.js';
import {
  EnvList,
  expandInstruction,
  lexers,
  parseDockerfile,
  parseTrigger,
  planBuild,
  resolveArgs,
  triggerHooks,
  withSuggestion,
  type BuildPlan,
  type Dockerfile,
  type Instruction,
  type PlannedStage,
} from '../dockerfile/instructions/index.js';
import type { Digest } from '../oci/digest.js';
import { sha256 } from '../oci/digest.js';
import { formatPlatform, hostPlatform, parsePlatform, platformArgs, platformMatches } from '../oci/platform.js';
import { formatReference, normalizeReference } from '../oci/reference.js';
import type { ImageConfig, Platform } from '../oci/types.js';
import type { Lease, Store } from '../store/index.js';
import { keyDigest, type BaseKey, type StepKey } from './cache-key.js';
import type { BaseEntry } from './history/record.js';
import { parseHeredocWord } from '../dockerfile/instructions/heredoc.js';
import { Progress, type Vertex } from './events.js';
import { addHistory, applyArg, applyMetadata, applyWorkdir, normalizeWorkdir, startStage } from './image-config.js';
import { envFromConfig, type LayerRef, type StageState } from './state.js';
import { StepExecutors, type StepResult } from './steps.js';
import type { SecretSource } from '../sandbox/index.js';
import type { CacheExporter, CacheFromSpec, CacheImporter, CacheToSpec } from '../cache/index.js';
import type { Registries } from '../registry/index.js';
import type { Readable } from 'node:stream';
import type { ResourceLimits } from '../sandbox/index.js';

export interface BuildRequest {
  contextDir: string;
  dockerfile: { name: string; text: string; path?: string };
  buildArgs?: Record<string, string>;
  target?: string;
  /** Target platform; only the host's can run RUN steps. */
  platform?: Platform;
  noCache?: boolean;
  /** Stages whose steps are rebuilt even when cached. */
  noCacheFilter?: string[];
  /** Check the registry for a newer base image even when the store has one. */
  pull?: boolean;
  secrets?: Record<string, SecretSource>;
  network?: 'default' | 'none' | 'host';
  /** SOURCE_DATE_EPOCH: image and history times, and file times clamped, for reproducible digests. */
  sourceDateEpoch?: number;
  jobs?: number;
  limits?: ResourceLimits;
  signal?: AbortSignal;
  /** `shell`: a failing RUN opens an interactive shell in its sandbox before the build fails. */
  onFailure?: 'fail' | 'shell';
  /** `--cache-from`: caches whose steps count as cached; their layers are fetched only when needed. */
  cacheFrom?: CacheFromSpec[];
  /** `--cache-to`: where the build's steps are exported, while it runs. */
  cacheTo?: CacheToSpec[];
  /** Hosts that may be spoken to in plain HTTP (cache registries). */
  insecureRegistries?: string[];
}

/** A step whose cache key is known, as the build record keeps it. */
export interface KeyedStep {
  key: Digest;
  record: StepKey;
  name: string;
  /** Position of the step in its stage (as `[stage N/M]` counts). */
  ordinal: number;
  layerSize?: number;
}

/**
 * Listens to steps that missed the cache (the build record keeps their file lists; `--explain`
 * says why they missed). Its failures never fail the build.
 */
export interface MissObserver {
  missed(step: { vertex: Vertex; key: Digest; record: StepKey; ordinal: number; cacheDisabled?: string }): Promise<void>;
}

export interface BuildOutcome {
  plan: BuildPlan;
  /** The target stage's final state. */
  state: StageState;
  steps: number;
  cached: number;
  /** `--cache-to type=inline`: the records for the image config's `kiln.cache.v0` field. */
  inlineCache?: unknown;
}

/** Instructions that are steps of their own in the progress output (BuildKit's cmdTotal). */
const VERTEX_KINDS = new Set<Instruction['kind']>(['RUN', 'COPY', 'ADD', 'WORKDIR']);

/** The build's lifetime resources: its store lease, limits, and the stages' results. */
export class BuildEngine {
  readonly plan: BuildPlan;
  readonly df: Dockerfile;
  readonly platform: Platform;
  readonly limit: ReturnType<typeof pLimit>;
  readonly executors: StepExecutors;
  private readonly stages = new Map<number, Promise<StageState>>();
  private readonly images = new Map<string, Promise<StageState>>();
  steps = 0;
  cached = 0;
  /** The `--cache-from` caches, once opened. */
  cacheImport: CacheImporter | undefined;
  private cacheExport: CacheExporter | undefined;
  private cacheRegistries: Registries[] = [];
  private readonly exportVertices = new Map<string, Vertex>();
  /** The stages whose steps are the target image's layers (mode=min, inline, prefetching). */
  private finalStageSet: Set<number> | undefined;
  /** Keyed steps by vertex id, and the base images stages start from by key digest. */
  readonly keyed = new Map<number, KeyedStep>();
  readonly bases: Record<string, BaseEntry> = {};
  private readonly ordinals = new Map<number, number>();
  observer: MissObserver | undefined;

  private constructor(
    readonly store: Store,
    readonly request: BuildRequest,
    readonly progress: Progress,
    readonly lease: Lease,
    df: Dockerfile,
    plan: BuildPlan,
    platform: Platform,
  ) {
    this.df = df;
    this.plan = plan;
    this.platform = platform;
    this.limit = pLimit(Math.max(1, request.jobs ?? 2));
    this.executors = new StepExecutors(this);
  }

  /** Parses and plans; throws DockerfileError for a Dockerfile that cannot be built. */
  static async create(store: Store, request: BuildRequest, progress: Progress): Promise<BuildEngine> {
    const df = parseDockerfile(request.dockerfile.text, { file: request.dockerfile.name });
    const host = hostPlatform();
    const platform = request.platform ?? host;
    const { lex } = lexers(df);
    const plan = planBuild(
      df,
      {
        lex,
        buildArgs: request.buildArgs ?? {},
        defaultArgs: platformArgs(host, platform),
        ...(request.target ? { target: request.target } : {}),
      },
      triggerHooks,
    );
    const lease = await store.createLease({ label: `build ${request.dockerfile.name}` });
    return new BuildEngine(store, request, progress, lease, df, plan, platform);
  }

  get created(): string | undefined {
    const e = this.request.sourceDateEpoch;
    return e === undefined ? undefined : new Date(e * 1000).toISOString().replace('.000Z', 'Z');
  }

  location(ins: { startLine: number; endLine: number }): SourceLocation {
    return { file: this.df.file, line: ins.startLine, endLine: ins.endLine };
  }

  async run(): Promise<BuildOutcome> {
    try {
      await this.openCaches();
      const state = await this.stage(this.plan.target);
      // The target's layers are the image: those still in an imported cache come into the store.
      await this.cacheImport?.materialize(state.layers);
      const inlineCache = await this.finishCacheExport(state);
      return { plan: this.plan, state, steps: this.steps, cached: this.cached, ...(inlineCache ? { inlineCache } : {}) };
    } finally {
      this.cacheExport?.abandon();
      await this.executors.dispose();
      for (const r of this.cacheRegistries.splice(0)) await r.close();
    }
  }

  async release(): Promise<void> {
    await this.lease.release();
  }

  /** The final state of stage `index`, built once however many stages need it. */
  stage(index: number): Promise<StageState> {
    let p = this.stages.get(index);
    if (!p) {
      p = this.buildStage(this.plan.stages[index]!);
      this.stages.set(index, p);
    }
    return p;
  }

  /**
   * An external image's state (FROM, `COPY --from=image`, mounts), resolved once per reference and
   * platform (the build's, unless the stage's FROM --platform names another).
   */
  imageState(ref: string, line: SourceLocation, platform: Platform = this.platform): Promise<StageState> {
    const id = `${formatPlatform(platform)} ${ref}`;
    let p = this.images.get(id);
    if (!p) {
      p = this.resolveImage(ref, line, platform);
      this.images.set(id, p);
    }
    return p;
  }

  private async resolveImage(ref: string, at: SourceLocation, platform: Platform): Promise<StageState> {
    let name: string;
    // A name that is neither a stage nor an image is often a misspelt stage: say which.
    const suggestStage = (msg: string) => withSuggestion(msg, ref, this.plan.stages.map((s) => s.stage.name).filter(Boolean), true);
    try {
      name = formatReference(normalizeReference(ref));
    } catch (err) {
      throw new DockerfileError(suggestStage(err instanceof KilnError ? err.message : String(err)), at);
    }
    const vertex = this.progress.start(`[internal] load metadata for ${name}`);
    try {
      const image = await this.executors.baseImage(name, vertex, platform);
      const config = await image.configFile();
      if (!platformMatches(platform, { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) })) {
        throw new DockerfileError(
          `base image ${name} is for ${formatPlatform({ os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) })}, but this build is for ${formatPlatform(platform)}`,
          at,
          { hint: 'kiln runs RUN steps natively: build for the host platform, or pick a base image for it' },
        );
      }
      const manifest = await image.manifest();
      const digest = await image.digest();
      const layers: LayerRef[] = manifest.layers.map((desc, i) => ({ desc, diffID: config.rootfs.diff_ids[i]! }));
      await this.lease.add(digest, ...layers.map((l) => l.diffID), ...layers.map((l) => l.desc.digest));
      const key: BaseKey = { kind: 'image', ref: name, manifest: digest, platform: formatPlatform(platform) };
      this.bases[keyDigest(key)] = { ref: name, digest };
      vertex.done();
      const start = startStage(config, platform);
      return {
        image: start,
        layers,
        fsKey: keyDigest(key),
        env: envFromConfig(start.config.config?.Env),
        platform,
        base: { name, digest },
        // startStage clears them from the config: they run in the stage built on this image.
        triggers: [...(config.config?.OnBuild ?? [])],
      };
    } catch (err) {
      vertex.fail(err instanceof Error ? err.message : String(err));
      if (err instanceof DockerfileError) throw err;
      if (err instanceof KilnError) throw new DockerfileError(suggestStage(`failed to resolve source metadata for ${name}: ${err.describe()}`), at, { cause: err });
      throw err;
    }
  }

  /** The platform FROM --platform gives a stage, else the build's. */
  private stagePlatform(planned: PlannedStage): Platform {
    if (!planned.platform) return this.platform;
    try {
      return parsePlatform(planned.platform);
    } catch (err) {
      throw new DockerfileError(`failed to parse platform ${planned.platform}: ${err instanceof Error ? err.message : String(err)}`, this.location(planned.stage.from));
    }
  }

  private async startState(planned: PlannedStage): Promise<StageState> {
    const at = this.location(planned.stage.from);
    switch (planned.base.kind) {
      case 'scratch': {
        const platform = this.stagePlatform(planned);
        const image = startStage(undefined, platform);
        const key: BaseKey = { kind: 'scratch', platform: formatPlatform(platform) };
        return { image, layers: [], fsKey: keyDigest(key), env: envFromConfig(image.config.config?.Env), platform };
      }
      case 'stage': {
        // As BuildKit's dispatchState.init: the base stage's state goes on, ARG values and the ARGs
        // RUN's history lists included; only its ONBUILD triggers do not carry over.
        const parent = await this.stage(planned.base.index);
        const image = startStage(parent.image.config, parent.platform);
        image.buildArgs = [...parent.image.buildArgs];
        return {
          image,
          layers: [...parent.layers],
          fsKey: parent.fsKey,
          env: parent.env.clone(),
          platform: parent.platform,
          ...(parent.base ? { base: parent.base } : {}),
        };
      }
      case 'image': {
        const img = await this.imageState(planned.base.ref, at, this.stagePlatform(planned));
        return { ...img, image: startStage(img.image.config, img.platform), layers: [...img.layers], env: img.env.clone() };
      }
    }
  }

  private async buildStage(planned: PlannedStage): Promise<StageState> {
    // Stages this one reads from start now, so independent stages overlap.
    for (const dep of planned.deps) if (dep.source.kind === 'stage') void this.stage(dep.source.index).catch(() => undefined);
    const state = await this.startState(planned);
    const at = this.location(planned.stage.from);
    // ONBUILD triggers run first: a stage base's were planned; an image's come from its config.
    const triggers: Instruction[] =
      planned.base.kind === 'stage' ? planned.triggers : (state.triggers ?? []).map((t) => parseTrigger(t, at));
    delete state.triggers;
    const all = [...triggers.map((ins) => ({ ins, trigger: true })), ...planned.stage.instructions.map((ins) => ({ ins, trigger: false }))];
    // Steps are numbered as BuildKit numbers them: FROM an image is step 1, then every RUN, COPY,
    // ADD and WORKDIR; triggers count towards the total whatever they are.
    const counter = { index: planned.base.kind === 'image' ? 1 : 0, total: 0 };
    counter.total = counter.index + triggers.length + planned.stage.instructions.filter((i) => VERTEX_KINDS.has(i.kind)).length;
    for (const { ins, trigger } of all) {
      if (this.request.signal?.aborted) throw new KilnError('ABORTED', 'build canceled');
      // A step reading another stage starts (and its timer runs) only once that stage is built, as
      // BuildKit shows it; a failure there is reported where it happened, not by this step.
      const list = trigger ? planned.triggers : planned.stage.instructions;
      const sources = planned.deps.filter((d) => d.trigger === trigger && list[d.instruction] === ins && d.source.kind === 'stage');
      await Promise.all(sources.map((d) => (d.source.kind === 'stage' ? this.stage(d.source.index) : undefined)));
      await this.dispatch(planned, state, ins, { trigger, counter });
    }
    return state;
  }

  /** `[stage 2/5] ` as buildx shows a step (`%*d` padding included), or '' when the stage has no steps. */
  private stepPrefix(planned: PlannedStage, counter: { index: number; total: number }, trigger: boolean): string {
    if (counter.total === 0) return '';
    counter.index++;
    const width = Math.floor(1 + Math.log10(counter.total));
    const name = planned.displayName ? `${planned.displayName} ` : '';
    return `[${name}${String(counter.index).padStart(width)}/${counter.total}] ${trigger ? 'ONBUILD ' : ''}`;
  }

  /** Applies one instruction to the stage state. */
  private async dispatch(
    planned: PlannedStage,
    state: StageState,
    ins: Instruction,
    where: { trigger: boolean; counter: { index: number; total: number } },
  ): Promise<void> {
    const { lex, rawLex } = lexers(this.df);
    const ctx = { file: this.df.file, lex, rawLex, env: state.env };
    const at = this.location(ins);
    const created = this.created;
    if (ins.kind === 'ARG') {
      const resolved = resolveArgs(ins, ctx, { buildArgs: this.request.buildArgs ?? {}, globalArgs: this.plan.globalArgs });
      for (const r of resolved) if (r.value !== undefined) state.env.set(r.key, r.value);
      applyArg(state.image, resolved, created);
      return;
    }
    const expanded = expandInstruction(ins, ctx);
    if (applyMetadata(state.image, expanded, { ...(created ? { created } : {}), at })) {
      if (expanded.kind === 'ENV') for (const kv of expanded.env) state.env.set(kv.key, kv.value);
      return;
    }
    // WORKDIR / only sets the config: the root always exists, so there is no step to run.
    if (expanded.kind === 'WORKDIR' && normalizeWorkdir(state.image.config.config?.WorkingDir, expanded.path, at) === '/') {
      applyWorkdir(state.image, expanded.path, at, created);
      return;
    }
    const name = `${this.stepPrefix(planned, where.counter, where.trigger)}${displayText(ins)}`;
    const vertex = this.progress.start(name, { stage: planned.displayName, line: ins.startLine });
    this.ordinals.set(vertex.id, where.counter.index);
    try {
      let result: StepResult;
      switch (expanded.kind) {
        case 'WORKDIR': {
          // The directory is made first: its history entry carries the time the step first ran.
          const dir = normalizeWorkdir(state.image.config.config?.WorkingDir, expanded.path, at);
          result = await this.executors.mkdir(state, dir, planned, vertex);
          applyWorkdir(state.image, expanded.path, at, created ?? result.created);
          break;
        }
        case 'RUN':
          result = await this.executors.run(state, expanded, vertex, planned, at);
          addHistory(state.image, `RUN ${result.historyText ?? ''}`, { withLayer: true, executed: true, ...historyTime(created, result) });
          break;
        case 'COPY':
        case 'ADD':
          result = await this.executors.copy(state, expanded, planned, at, vertex);
          addHistory(state.image, result.historyText ?? '', { withLayer: true, executed: true, ...historyTime(created, result) });
          break;
        default:
          throw new DockerfileError(`${ins.keyword} is not supported here`, at);
      }
      this.steps++;
      if (result.key) state.fsKey = result.key;
      if (result.layer) state.layers.push(result.layer);
      // A cached step of the final image: its layer will be needed, so its download starts now.
      if (result.cached && result.layer && this.cacheImport && this.finalStageSet?.has(planned.stage.index)) this.cacheImport.prefetch(result.layer);
      if (this.cacheExport && result.key && result.layer) {
        const rec = this.executors.stepRecord(result.key);
        const lookup = result.lookupKey ? this.executors.stepRecord(result.lookupKey) : undefined;
        if (rec) {
          this.cacheExport.step({
            key: result.key,
            record: rec.key,
            step: rec.step,
            empty: rec.empty,
            layer: result.layer,
            chain: state.layers,
            stage: planned.stage.index,
            name,
            ...(result.lookupKey && lookup ? { lookup: { key: result.lookupKey, record: lookup.key } } : {}),
          });
        }
      }
      const keyed = this.keyed.get(vertex.id);
      if (keyed && result.layer) keyed.layerSize = result.layer.desc.size;
      if (result.cached) {
        this.cached++;
        vertex.cached();
      } else {
        vertex.done();
      }
    } catch (err) {
      // A stage this step reads from failed: that failure is reported where it happened.
      const elsewhere = err instanceof DockerfileError && err.location && (err.location.line !== at.line || err.location.file !== at.file);
      vertex.fail(elsewhere ? 'canceled' : err instanceof Error ? err.message : String(err));
      if (err instanceof DockerfileError) throw err.location ? err : err.at(at);
      if (err instanceof KilnError) throw new DockerfileError(err.describe(), at, { cause: err });
      throw err;
    }
  }

  /** Reads the `--cache-from` caches and prepares the `--cache-to` targets, when there are any. */
  private async openCaches(): Promise<void> {
    const from = this.request.cacheFrom ?? [];
    const to = this.request.cacheTo ?? [];
    if (from.length === 0 && to.length === 0) return;
    const { CacheImporter, CacheExporter, finalStages, describeTransfer } = await import('../cache/index.js');
    this.finalStageSet = finalStages(this.plan);
    const { Registries } = await import('../registry/index.js');
    const insecure = { insecureRegistries: this.request.insecureRegistries ?? [] };
    const registries = new Registries(insecure);
    this.cacheRegistries.push(registries);
    if (from.length > 0 && !this.request.noCache) {
      // Reading a cache manifest retries briefly: an unreachable cache is a warning, not a wait.
      const meta = new Registries({ ...insecure, retry: { attempts: 2, baseDelayMs: 200, maxDelayMs: 1000, budgetMs: 10_000 } });
      this.cacheRegistries.push(meta);
      const vertex = this.progress.start('[internal] load build cache');
      this.cacheImport = await CacheImporter.open(from, {
        store: this.store,
        lease: this.lease,
        registries,
        metaRegistries: meta,
        warn: (m) => this.progress.warn(m),
        log: (line) => vertex.log('stdout', Buffer.from(`${line}\n`)),
      });
      await this.cacheImport.restoreMounts(process.getuid?.() === 0);
      vertex.done();
    }
    if (to.length > 0) {
      this.cacheExport = await CacheExporter.create(to, {
        store: this.store,
        lease: this.lease,
        registries,
        ...(this.cacheImport ? { importer: this.cacheImport } : {}),
        finalStages: this.finalStageSet,
        warn: (m) => this.progress.warn(m),
        onTransfer: (e) => {
          this.progress.emit({ type: 'cache-export', ...e, time: Date.now() });
          this.exportVertex(e.target).log('stdout', Buffer.from(`${describeTransfer(e)}\n`));
        },
      });
    }
  }

  /**
   * Stores a step's layer tar; when a cache export will send it, its gzip variant is made in the
   * same pass, so compression overlaps the step instead of following it.
   */
  async writeLayer(tar: Readable): Promise<{ digest: Digest; size: number }> {
    if (!this.cacheExport?.sendsLayers) return this.store.writeBlob(tar, { lease: this.lease });
    const { writeLayerCompressed } = await import('../cache/index.js');
    return writeLayerCompressed(this.store, tar, this.lease);
  }

  /** The progress vertex of one `--cache-to` target, started by its first transfer. */
  private exportVertex(label: string): Vertex {
    let v = this.exportVertices.get(label);
    if (!v) {
      v = this.progress.start(`exporting cache to ${label}`);
      this.exportVertices.set(label, v);
    }
    return v;
  }

  /** Waits for the cache export and writes its manifests; answers the inline cache, if asked for. */
  private async finishCacheExport(state: StageState): Promise<unknown> {
    const exporter = this.cacheExport;
    if (!exporter) return undefined;
    const result = await exporter.finish(state.layers, (label, line) => this.exportVertex(label).log('stdout', Buffer.from(`${line}\n`)));
    for (const label of exporter.labels) this.exportVertex(label).done();
    this.cacheExport = undefined;
    return result.inline;
  }

  /** Whether steps of this stage may come from the cache. */
  cacheAllowed(planned: PlannedStage): boolean {
    if (this.request.noCache) return false;
    const filter = this.request.noCacheFilter ?? [];
    return !(planned.stage.name && filter.map((f) => f.toLowerCase()).includes(planned.stage.name));
  }

  /** Notes a step's key once it is computed (before it runs); tells the observer about a miss. */
  async stepKeyed(vertex: Vertex, key: Digest, record: StepKey, hit: boolean, planned: PlannedStage): Promise<void> {
    const ordinal = this.ordinals.get(vertex.id) ?? 0;
    this.keyed.set(vertex.id, { key, record, ordinal, name: vertex.info.name });
    if (hit || !this.observer) return;
    const disabled = this.cacheAllowed(planned) ? undefined : this.request.noCache ? '--no-cache' : `--no-cache-filter ${planned.stage.name}`;
    try {
      await this.observer.missed({ vertex, key, record, ordinal, ...(disabled ? { cacheDisabled: disabled } : {}) });
    } catch {
      // Explanations are a courtesy: a build never fails for want of one.
    }
  }

  /** The cache key digest for a step record. */
  key(record: StepKey): Digest {
    return keyDigest(record);
  }
}

/**
 * How a step is named in progress output: the instruction as written, keyword upper-cased; a RUN
 * that is one heredoc gets the script's first line after it, as BuildKit names it.
 */
export function displayText(ins: Instruction): string {
  const text = ins.original.replace(/\s+/g, ' ').trim();
  const rest = text.slice(ins.keyword.length);
  let shown = `${ins.keyword.toUpperCase()}${rest}`;
  if (ins.kind === 'RUN' && ins.files.length > 0 && ins.cmdLine.length === 1 && parseHeredocWord(ins.cmdLine[0]!)) {
    const lines = ins.files[0]!.data.trim().replace(/\r\n/g, '\n').split('\n');
    shown += ` (${lines[0]}${lines.length > 1 ? '...' : ''})`;
  }
  return shown.length > 200 ? `${shown.slice(0, 197)}...` : shown;
}

/** Content digest of a heredoc body (for cache keys). */
export function contentDigest(data: string): Digest {
  return sha256(data);
}

/**
 * A layer step's history time: `SOURCE_DATE_EPOCH` when set, else when the step first ran, so a
 * cached rebuild repeats its image's times (and ID) as BuildKit's keeps its layers' creation times.
 */
function historyTime(epochTime: string | undefined, result: StepResult): { created?: string } {
  const created = epochTime ?? result.created;
  return created ? { created } : {};
}

export type { Vertex };
export type { ImageConfig };
export { EnvList };
