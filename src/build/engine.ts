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
  type BuildPlan,
  type Dockerfile,
  type Instruction,
  type PlannedStage,
} from '../dockerfile/instructions/index.js';
import type { Digest } from '../oci/digest.js';
import { sha256 } from '../oci/digest.js';
import { formatPlatform, hostPlatform, platformArgs, platformMatches } from '../oci/platform.js';
import { formatReference, normalizeReference } from '../oci/reference.js';
import type { ImageConfig, Platform } from '../oci/types.js';
import type { Lease, Store } from '../store/index.js';
import { keyDigest, type BaseKey, type StepKey } from './cache-key.js';
import { Progress, type Vertex } from './events.js';
import { addHistory, applyArg, applyMetadata, applyWorkdir, startStage } from './image-config.js';
import { envFromConfig, type LayerRef, type StageState } from './state.js';
import { StepExecutors, type StepResult } from './steps.js';
import type { SecretSource } from '../sandbox/index.js';
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
}

export interface BuildOutcome {
  plan: BuildPlan;
  /** The target stage's final state. */
  state: StageState;
  steps: number;
  cached: number;
}

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
      const state = await this.stage(this.plan.target);
      return { plan: this.plan, state, steps: this.steps, cached: this.cached };
    } finally {
      await this.executors.dispose();
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

  /** An external image's state (FROM, `COPY --from=image`, mounts), resolved once per reference. */
  imageState(ref: string, line: SourceLocation): Promise<StageState> {
    let p = this.images.get(ref);
    if (!p) {
      p = this.resolveImage(ref, line);
      this.images.set(ref, p);
    }
    return p;
  }

  private async resolveImage(ref: string, at: SourceLocation): Promise<StageState> {
    let name: string;
    try {
      name = formatReference(normalizeReference(ref));
    } catch (err) {
      throw new DockerfileError(err instanceof KilnError ? err.message : String(err), at);
    }
    const vertex = this.progress.start(`[internal] load metadata for ${name}`);
    try {
      const image = await this.executors.baseImage(name, vertex);
      const config = await image.configFile();
      if (!platformMatches(this.platform, { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) })) {
        throw new DockerfileError(
          `base image ${name} is for ${formatPlatform({ os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) })}, but this build is for ${formatPlatform(this.platform)}`,
          at,
          { hint: 'kiln runs RUN steps natively: build for the host platform, or pick a base image for it' },
        );
      }
      const manifest = await image.manifest();
      const digest = await image.digest();
      const layers: LayerRef[] = manifest.layers.map((desc, i) => ({ desc, diffID: config.rootfs.diff_ids[i]! }));
      await this.lease.add(digest, ...layers.map((l) => l.diffID), ...layers.map((l) => l.desc.digest));
      const key: BaseKey = { kind: 'image', ref: name, manifest: digest, platform: formatPlatform(this.platform) };
      vertex.done();
      return {
        image: startStage(config, this.platform),
        layers,
        fsKey: keyDigest(key),
        env: envFromConfig(config.config?.Env),
        platform: this.platform,
        base: { name, digest },
      };
    } catch (err) {
      vertex.fail(err instanceof Error ? err.message : String(err));
      if (err instanceof DockerfileError) throw err;
      if (err instanceof KilnError) throw new DockerfileError(`failed to resolve source metadata for ${name}: ${err.describe()}`, at, { cause: err });
      throw err;
    }
  }

  private async startState(planned: PlannedStage): Promise<StageState> {
    const at = this.location(planned.stage.from);
    switch (planned.base.kind) {
      case 'scratch': {
        const image = startStage(undefined, this.platform);
        const key: BaseKey = { kind: 'scratch', platform: formatPlatform(this.platform) };
        return { image, layers: [], fsKey: keyDigest(key), env: envFromConfig(image.config.config?.Env), platform: this.platform };
      }
      case 'stage': {
        const parent = await this.stage(planned.base.index);
        return {
          image: startStage(parent.image.config, this.platform),
          layers: [...parent.layers],
          fsKey: parent.fsKey,
          env: envFromConfig(parent.image.config.config?.Env),
          platform: this.platform,
          ...(parent.base ? { base: parent.base } : {}),
        };
      }
      case 'image': {
        const img = await this.imageState(planned.base.ref, at);
        return { ...img, image: startStage(img.image.config, this.platform), layers: [...img.layers], env: img.env.clone() };
      }
    }
  }

  private async buildStage(planned: PlannedStage): Promise<StageState> {
    // Stages this one reads from start now, so independent stages overlap.
    for (const dep of planned.deps) if (dep.source.kind === 'stage') void this.stage(dep.source.index).catch(() => undefined);
    const state = await this.startState(planned);
    const inherited = state.image.config.config?.OnBuild ?? [];
    const baseConfigTriggers = planned.base.kind === 'image' ? (await this.imageState(planned.base.ref, this.location(planned.stage.from))).image.config.config?.OnBuild ?? [] : [];
    const at = this.location(planned.stage.from);
    // ONBUILD triggers run first: a stage base's were planned; an image's come from its config.
    const triggers: Instruction[] =
      planned.base.kind === 'stage' ? planned.triggers : (baseConfigTriggers ?? inherited).map((t) => parseTrigger(t, at));
    const all = [...triggers.map((ins) => ({ ins, trigger: true })), ...planned.stage.instructions.map((ins) => ({ ins, trigger: false }))];
    const total = planned.stage.instructions.length + 1;
    let ownIndex = 0;
    let triggerIndex = 0;
    for (const { ins, trigger } of all) {
      if (this.request.signal?.aborted) throw new KilnError('ABORTED', 'build canceled');
      const position = trigger ? triggerIndex++ : ownIndex++;
      const label = `[${planned.displayName ? `${planned.displayName} ` : ''}${trigger ? 'ONBUILD' : `${position + 2}/${total}`}]`;
      await this.dispatch(planned, state, ins, { trigger, position, label });
    }
    return state;
  }

  /** Applies one instruction to the stage state. */
  private async dispatch(
    planned: PlannedStage,
    state: StageState,
    ins: Instruction,
    where: { trigger: boolean; position: number; label: string },
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
    const name = `${where.label} ${displayText(ins)}`;
    const vertex = this.progress.start(name, { stage: planned.displayName, line: ins.startLine });
    try {
      let result: StepResult | undefined;
      switch (expanded.kind) {
        case 'WORKDIR': {
          const { dir, withLayer } = applyWorkdir(state.image, expanded.path, at, created);
          result = withLayer ? await this.executors.mkdir(state, dir, planned) : { key: undefined, empty: true, cached: true };
          break;
        }
        case 'RUN':
          result = await this.executors.run(state, expanded, vertex, planned, at);
          addHistory(state.image, `RUN ${result.historyText ?? ''}`, { withLayer: !result.empty, executed: true, ...(created ? { created } : {}) });
          break;
        case 'COPY':
        case 'ADD':
          result = await this.executors.copy(state, expanded, planned, at);
          addHistory(state.image, result.historyText ?? '', { withLayer: !result.empty, executed: true, ...(created ? { created } : {}) });
          break;
        default:
          throw new DockerfileError(`${ins.keyword} is not supported here`, at);
      }
      this.steps++;
      if (result.key) state.fsKey = result.key;
      if (result.layer && !result.empty) state.layers.push(result.layer);
      if (result.cached) {
        this.cached++;
        vertex.cached();
      } else {
        vertex.done();
      }
    } catch (err) {
      vertex.fail(err instanceof Error ? err.message : String(err));
      if (err instanceof DockerfileError) throw err.location ? err : err.at(at);
      if (err instanceof KilnError) throw new DockerfileError(err.describe(), at, { cause: err });
      throw err;
    }
  }

  /** Whether steps of this stage may come from the cache. */
  cacheAllowed(planned: PlannedStage): boolean {
    if (this.request.noCache) return false;
    const filter = this.request.noCacheFilter ?? [];
    return !(planned.stage.name && filter.map((f) => f.toLowerCase()).includes(planned.stage.name));
  }

  /** The cache key digest for a step record. */
  key(record: StepKey): Digest {
    return keyDigest(record);
  }
}

/** How a step is named in progress output: the instruction as written, keyword upper-cased. */
export function displayText(ins: Instruction): string {
  const text = ins.original.replace(/\s+/g, ' ').trim();
  const rest = text.slice(ins.keyword.length);
  const shown = `${ins.keyword.toUpperCase()}${rest}`;
  return shown.length > 200 ? `${shown.slice(0, 197)}...` : shown;
}

/** Content digest of a heredoc body (for cache keys). */
export function contentDigest(data: string): Digest {
  return sha256(data);
}

export type { Vertex };
export type { ImageConfig };
export { EnvList };
