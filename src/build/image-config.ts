/**
 * How each Dockerfile instruction changes the image config and its history, exactly as BuildKit's
 * dockerfile frontend does (dispatch* in dockerfile2llb): same fields, same inheritance rules (an
 * ENTRYPOINT resets an inherited CMD but not one set in the same stage), same `created_by` texts,
 * so `kiln history` and `docker history` of a kiln image read like BuildKit's.
 */
import { posix } from 'node:path';
import { DockerfileError, type SourceLocation } from '../errors.js';
import { PortSpecError, healthcheckCreatedBy, parsePortSpecs } from '../dockerfile/instructions/index.js';
import type { Instruction } from '../dockerfile/instructions/index.js';
import { goQuote } from '../dockerfile/parser/index.js';
import type { ContainerConfig, HistoryEntry, ImageConfig, Platform } from '../oci/types.js';

/** The comment BuildKit puts on every history entry it writes. */
export const HISTORY_COMMENT = 'buildkit.dockerfile.v0';
export const DEFAULT_PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const DEFAULT_SHELL = ['/bin/sh', '-c'];

/** A stage's image while its instructions are applied. */
export interface StageImage {
  config: ImageConfig;
  /** CMD was set by this stage (then ENTRYPOINT keeps it). */
  cmdSet: boolean;
  /** ARGs declared in this stage so far, with their values (for RUN's history and environment). */
  buildArgs: Array<{ key: string; value: string | undefined }>;
}

/**
 * An image config as BuildKit reads and writes it (its DockerOCIImage): the OCI fields plus
 * Healthcheck, OnBuild and Shell, in Go's field order, and nothing else. Fields other builders add
 * (`comment`, `container_config`, `docker_version`, `Hostname`, ...) do not carry over into an image
 * built on theirs; empty values are left out (Go's `omitempty`).
 */
export function dockerOCIImage(src: ImageConfig): ImageConfig {
  const c = (src.config ?? {}) as ContainerConfig;
  const config: ContainerConfig = {};
  const keep = <K extends keyof ContainerConfig>(k: K) => {
    const v = c[k];
    if (v === undefined || v === null || v === '' || v === false) return;
    if (Array.isArray(v) && v.length === 0) return;
    if (typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0) return;
    config[k] = structuredClone(v);
  };
  for (const k of ['User', 'ExposedPorts', 'Env', 'Entrypoint', 'Cmd', 'Volumes', 'WorkingDir', 'Labels', 'StopSignal', 'ArgsEscaped', 'Healthcheck', 'OnBuild', 'Shell'] as const) keep(k);
  return {
    ...(src.created ? { created: src.created } : {}),
    ...(src.author ? { author: src.author } : {}),
    architecture: src.architecture,
    os: src.os,
    ...(src['os.version'] ? { 'os.version': src['os.version'] } : {}),
    ...(src['os.features']?.length ? { 'os.features': [...src['os.features']] } : {}),
    ...(src.variant ? { variant: src.variant } : {}),
    config,
    rootfs: { type: 'layers', diff_ids: [...(src.rootfs?.diff_ids ?? [])] },
    ...(src.history ? { history: src.history.map((h) => ({ ...h })) } : {}),
  };
}

/** A new stage's image: the base's config (deep-copied), or an empty one for `scratch`. */
export function startStage(base: ImageConfig | undefined, platform: Platform): StageImage {
  const config: ImageConfig = base
    ? dockerOCIImage(base)
    : {
        architecture: platform.architecture,
        os: platform.os,
        ...(platform.variant ? { variant: platform.variant } : {}),
        config: {},
        rootfs: { type: 'layers', diff_ids: [] },
        history: [],
      };
  // The creation time is the new image's, set when it is written.
  delete config.created;
  config.config ??= {};
  config.history ??= [];
  config.rootfs ??= { type: 'layers', diff_ids: [] };
  // Triggers of the base run when this stage starts; they are not passed on to its image.
  if (config.config.OnBuild) config.config.OnBuild = null;
  // BuildKit makes sure PATH is always set for Linux images.
  const env = config.config.Env ?? [];
  if (!env.some((e) => e.split('=', 1)[0] === 'PATH') && config.os !== 'windows') {
    config.config.Env = [...env, `PATH=${DEFAULT_PATH_ENV}`];
  }
  return { config, cmdSet: false, buildArgs: [] };
}

/** `KEY=value` set in place (or appended), as BuildKit's addEnv. */
export function setEnv(env: readonly string[] | undefined, key: string, value: string): string[] {
  const out = [...(env ?? [])];
  const i = out.findIndex((e) => e.slice(0, e.indexOf('=') < 0 ? e.length : e.indexOf('=')) === key);
  if (i >= 0) out[i] = `${key}=${value}`;
  else out.push(`${key}=${value}`);
  return out;
}

/** Go's path.Clean for absolute slash paths. */
export function cleanPath(p: string): string {
  const n = posix.normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/** BuildKit's NormalizeWorkdir: relative paths join onto the current one. */
export function normalizeWorkdir(current: string | undefined, requested: string, at?: SourceLocation): string {
  if (requested === '') throw new DockerfileError('normalizing workdir: cannot normalize nothing', at);
  const joined = requested.startsWith('/') ? requested : posix.join('/', current || '/', requested);
  return cleanPath(joined);
}

/** The command a shell-form RUN/CMD/ENTRYPOINT becomes: the image's SHELL (or /bin/sh -c) plus the text. */
export function withShell(config: ImageConfig, args: readonly string[]): string[] {
  const shell = config.config?.Shell?.length ? [...config.config.Shell] : [...DEFAULT_SHELL];
  return [...shell, args.join(' ')];
}

/** Go's `%q` of a []string: `["a" "b"]`. */
function goQuoteList(list: readonly string[] | null): string {
  return `[${(list ?? []).map(goQuote).join(' ')}]`;
}

/** Go's `%v` of a []string: `[a b]`. */
function goList(list: readonly string[]): string {
  return `[${list.join(' ')}]`;
}

export interface HistoryOptions {
  /** The entry describes a layer (RUN, COPY, ADD, WORKDIR that creates a directory). */
  withLayer: boolean;
  /** BuildKit appends ` # buildkit` to steps it executes (RUN, COPY, ADD). */
  executed?: boolean;
  /** RFC 3339 time: `SOURCE_DATE_EPOCH` when set, else when the step's layer was made; none for metadata. */
  created?: string;
}

export function addHistory(image: StageImage, createdBy: string, options: HistoryOptions): HistoryEntry {
  const entry: HistoryEntry = {
    ...(options.created ? { created: options.created } : {}),
    created_by: options.executed ? `${createdBy} # buildkit` : createdBy,
    comment: HISTORY_COMMENT,
    ...(options.withLayer ? {} : { empty_layer: true }),
  };
  image.config.history!.push(entry);
  return entry;
}

/** RUN's history text: `|N K=v ... cmd`, the stage's build args first (BuildKit's runCommandString). */
export function runCommandString(args: readonly string[], image: StageImage, env: (key: string) => string | undefined): string {
  const seen = new Map<string, number>();
  const pairs: string[] = [];
  for (const arg of image.buildArgs) {
    const v = env(arg.key) ?? arg.value ?? '';
    const idx = seen.get(arg.key);
    if (idx !== undefined) pairs[idx] = `${arg.key}=${v}`;
    else {
      seen.set(arg.key, pairs.length);
      pairs.push(`${arg.key}=${v}`);
    }
  }
  const prefix = pairs.length ? [`|${pairs.length}`, ...pairs] : [];
  return [...prefix, ...args].join(' ');
}

/** The command RUN executes, as BuildKit builds it from the instruction. */
export function runArgs(image: StageImage, cmdLine: readonly string[], prependShell: boolean): string[] {
  return prependShell ? withShell(image.config, cmdLine) : [...cmdLine];
}

/** History text of COPY/ADD: `COPY [--parents] [--chown=..] [--chmod=..] src... dest`. */
export function copyCreatedBy(ins: Extract<Instruction, { kind: 'COPY' | 'ADD' }>): string {
  const parts: string[] = [ins.kind];
  if (ins.kind === 'COPY' && ins.parents) parts.push('--parents');
  if (ins.chown) parts.push(`--chown=${ins.chown}`);
  if (ins.chmod) parts.push(`--chmod=${ins.chmod}`);
  for (const src of ins.sourcePaths) parts.push(src);
  for (const c of ins.sourceContents) parts.push(`<<${c.path}`);
  parts.push(ins.destPath);
  return parts.join(' ');
}

function container(image: StageImage): ContainerConfig {
  return (image.config.config ??= {});
}

/**
 * Applies a metadata instruction (already variable-expanded) to the stage's image and records its
 * history. RUN, COPY, ADD and WORKDIR's directory are the engine's: it calls `addHistory` for them.
 * Returns false for instructions this function does not handle.
 */
export function applyMetadata(image: StageImage, ins: Instruction, options: { created?: string; at?: SourceLocation } = {}): boolean {
  const c = container(image);
  const meta = { withLayer: false, ...(options.created ? { created: options.created } : {}) };
  switch (ins.kind) {
    case 'ENV': {
      for (const kv of ins.env) c.Env = setEnv(c.Env, kv.key, kv.value);
      addHistory(image, ['ENV', ...ins.env.map((kv) => `${kv.key}=${kv.value}`)].join(' '), meta);
      return true;
    }
    case 'LABEL': {
      c.Labels ??= {};
      for (const kv of ins.labels) c.Labels[kv.key] = kv.value;
      addHistory(image, ['LABEL', ...ins.labels.map((kv) => `${kv.key}=${kv.value}`)].join(' '), meta);
      return true;
    }
    case 'MAINTAINER':
      image.config.author = ins.maintainer;
      addHistory(image, `MAINTAINER ${ins.maintainer}`, meta);
      return true;
    case 'EXPOSE': {
      let ports: string[];
      try {
        ports = parsePortSpecs(ins.ports);
      } catch (err) {
        if (err instanceof PortSpecError) throw new DockerfileError(err.message, options.at);
        throw err;
      }
      c.ExposedPorts ??= {};
      for (const p of ports) c.ExposedPorts[p] = {};
      addHistory(image, `EXPOSE ${goList(ports)}`, meta);
      return true;
    }
    case 'USER':
      c.User = ins.user;
      addHistory(image, `USER ${ins.user}`, meta);
      return true;
    case 'VOLUME': {
      c.Volumes ??= {};
      for (const v of ins.volumes) {
        if (v === '') throw new DockerfileError('VOLUME specified can not be an empty string', options.at);
        c.Volumes[v] = {};
      }
      addHistory(image, `VOLUME ${goList(ins.volumes)}`, meta);
      return true;
    }
    case 'STOPSIGNAL':
      if (!isSignal(ins.signal)) throw new DockerfileError(`Invalid signal: ${ins.signal}`, options.at);
      c.StopSignal = ins.signal;
      addHistory(image, `STOPSIGNAL ${ins.signal}`, meta);
      return true;
    case 'SHELL':
      c.Shell = [...ins.shell];
      addHistory(image, `SHELL ${goList(ins.shell)}`, meta);
      return true;
    case 'CMD': {
      const args = ins.prependShell ? withShell(image.config, ins.cmdLine) : [...ins.cmdLine];
      c.Cmd = args;
      c.ArgsEscaped = true;
      image.cmdSet = true;
      addHistory(image, `CMD ${goQuoteList(args)}`, meta);
      return true;
    }
    case 'ENTRYPOINT': {
      const args = ins.cmdLine === null ? null : ins.prependShell ? withShell(image.config, ins.cmdLine) : [...ins.cmdLine];
      c.Entrypoint = args;
      // An inherited CMD makes no sense with a new ENTRYPOINT; one set in this stage is kept.
      if (!image.cmdSet) c.Cmd = null;
      addHistory(image, `ENTRYPOINT ${goQuoteList(args)}`, meta);
      return true;
    }
    case 'HEALTHCHECK': {
      const h = ins.health;
      c.Healthcheck = {
        Test: [...h.test],
        ...(h.interval ? { Interval: h.interval } : {}),
        ...(h.timeout ? { Timeout: h.timeout } : {}),
        ...(h.startPeriod ? { StartPeriod: h.startPeriod } : {}),
        ...(h.startInterval ? { StartInterval: h.startInterval } : {}),
        ...(h.retries ? { Retries: h.retries } : {}),
      };
      addHistory(image, healthcheckCreatedBy(h), meta);
      return true;
    }
    case 'ONBUILD':
      c.OnBuild = [...(c.OnBuild ?? []), ins.expression];
      return true;
    default:
      return false;
  }
}

/** Linux signal names moby's signal.ParseSignal knows (without `SIG`). */
const SIGNALS = new Set([
  'ABRT', 'ALRM', 'BUS', 'CHLD', 'CLD', 'CONT', 'FPE', 'HUP', 'ILL', 'INT', 'IO', 'IOT', 'KILL', 'PIPE', 'POLL', 'PROF', 'PWR', 'QUIT',
  'SEGV', 'STKFLT', 'STOP', 'SYS', 'TERM', 'TRAP', 'TSTP', 'TTIN', 'TTOU', 'URG', 'USR1', 'USR2', 'VTALRM', 'WINCH', 'XCPU', 'XFSZ',
  'RTMIN', 'RTMAX',
  ...Array.from({ length: 15 }, (_, i) => `RTMIN+${i + 1}`),
  ...Array.from({ length: 14 }, (_, i) => `RTMAX-${i + 1}`),
]);

/** Whether STOPSIGNAL's value is one BuildKit accepts: a non-zero number, or a signal name with or without SIG. */
export function isSignal(value: string): boolean {
  if (/^[+-]?\d+$/.test(value)) return Number(value) !== 0;
  const upper = value.toUpperCase();
  return SIGNALS.has(upper.startsWith('SIG') ? upper.slice(3) : upper);
}

/** Records ARG in history and in the stage's build args (values already resolved by the engine). */
export function applyArg(image: StageImage, resolved: Array<{ key: string; value: string | undefined }>, created?: string): void {
  for (const r of resolved) image.buildArgs.push({ key: r.key, value: r.value });
  const text = resolved.map((r) => (r.value === undefined ? r.key : `${r.key}=${r.value}`)).join(' ');
  addHistory(image, `ARG ${text}`, { withLayer: false, ...(created ? { created } : {}) });
}

/** WORKDIR: sets the directory; the engine creates it (a layer) unless it is `/`. */
export function applyWorkdir(image: StageImage, path: string, at?: SourceLocation, created?: string): { dir: string; withLayer: boolean } {
  const c = container(image);
  const dir = normalizeWorkdir(c.WorkingDir, path, at);
  c.WorkingDir = dir;
  const withLayer = dir !== '/';
  addHistory(image, `WORKDIR ${dir}`, { withLayer, ...(created ? { created } : {}) });
  return { dir, withLayer };
}
