/**
 * From stages to a build plan, following BuildKit's dockerfile2llb up to (not including) running
 * anything: meta-ARGs with build args applied, FROM base names and platforms expanded, the target
 * chosen, `COPY --from` / `RUN --mount from=` resolved by name or index, dependency cycles and
 * forward references rejected, and the stages the target needs listed.
 */
import { DockerfileError, type SourceLocation } from '../../errors.js';
import { goQuote, goToLower } from '../parser/gostr.js';
import { csvFields } from './csv.js';
import { EnvList, lexAt, type WordLexer } from './lexer.js';
import { suggest, withSuggestion } from './suggest.js';
import type {
  CopyInstruction,
  Dockerfile,
  Instruction,
  OnbuildInstruction,
  RunInstruction,
  Stage,
} from './types.js';

export interface PlanOptions {
  /** Lexer for this Dockerfile's escape token. */
  lex: WordLexer;
  /** `--target`; the last stage when not given. Matched case-insensitively. */
  target?: string;
  /** `--build-arg` values. */
  buildArgs?: Readonly<Record<string, string>>;
  /**
   * Automatic global args in order (BUILDPLATFORM, BUILDOS, BUILDOSVERSION, BUILDARCH, BUILDVARIANT,
   * TARGETPLATFORM, TARGETOS, TARGETOSVERSION, TARGETARCH, TARGETVARIANT); TARGETSTAGE is added
   * here. Build args override them.
   */
  defaultArgs?: Iterable<readonly [string, string]>;
}

/** What a stage starts from. */
export type StageBase =
  | { kind: 'stage'; index: number }
  | { kind: 'scratch' }
  | { kind: 'image'; ref: string };

/** What `COPY --from` or a `RUN --mount` reads from: an earlier stage or an image (or `scratch`). */
export type DependencySource = { kind: 'stage'; index: number } | { kind: 'image'; ref: string };

export interface StageDependency {
  source: DependencySource;
  /** Index in `stage.instructions`, or in `triggers` when `trigger` is true. */
  instruction: number;
  trigger: boolean;
  /** For RUN: which `--mount`. */
  mount?: number;
}

export interface PlannedStage {
  stage: Stage;
  /** How BuildKit names the stage in progress output: its name, `stage-N`, or '' in a one-stage file. */
  displayName: string;
  /** FROM base after meta-ARG expansion. */
  baseName: string;
  /** `--platform` after expansion; undefined when not given. Parsing it is the caller's job. */
  platform: string | undefined;
  base: StageBase;
  /** Global args the FROM line referenced (and were set). */
  usedArgs: string[];
  /**
   * ONBUILD instructions of the base stage, parsed, which run before this stage's own instructions
   * (only when the base is a stage; an image's triggers come from its config).
   */
  triggers: Instruction[];
  deps: StageDependency[];
}

export interface BuildPlan {
  dockerfile: Dockerfile;
  stages: PlannedStage[];
  /** Index of the stage to build. */
  target: number;
  /** Indices of the stages the target needs (itself included), ascending: the order to build them. */
  reachable: number[];
  /** The global ARG scope: automatic args, then meta-ARGs with build args applied. */
  globalArgs: EnvList;
  /** Meta-ARG names whose value came from a build arg, in definition order. */
  consumedBuildArgs: string[];
}

export interface PlanHooks {
  /**
   * Parses an ONBUILD expression of a base stage into one instruction (see `parseTrigger`). When
   * absent, base-stage triggers are not planned.
   */
  parseTrigger?: (expression: string, location: SourceLocation) => Instruction;
}

function stageLocation(df: Dockerfile, st: Stage): SourceLocation {
  return { file: df.file, line: st.startLine, endLine: st.endLine };
}

function insLocation(df: Dockerfile, ins: { startLine: number; endLine: number }): SourceLocation {
  return { file: df.file, line: ins.startLine, endLine: ins.endLine };
}

/**
 * The global ARG scope: `defaults` (build args override them), then each meta-ARG in order, its
 * default expanded against the scope so far unless a build arg gives the value.
 */
export function buildMetaArgs(
  df: Dockerfile,
  lex: WordLexer,
  defaults: EnvList,
  buildArgs: Readonly<Record<string, string>>,
): { args: EnvList; consumed: string[] } {
  const args = defaults.clone();
  const consumed: string[] = [];
  for (const cmd of df.metaArgs) {
    for (const kv of cmd.args) {
      let value: string | undefined;
      if (Object.prototype.hasOwnProperty.call(buildArgs, kv.key)) {
        value = buildArgs[kv.key]!;
        if (!consumed.includes(kv.key)) consumed.push(kv.key);
      } else if (kv.value !== undefined) {
        const raw = kv.value;
        value = lexAt(insLocation(df, cmd), () => lex.processWordWithMatches(raw, args)).result;
      }
      if (value !== undefined) args.set(kv.key, value);
    }
  }
  return { args, consumed };
}

/** Go strconv.Atoi on a 64-bit platform; undefined when not an integer. */
function goAtoi(s: string): bigint | undefined {
  if (!/^[+-]?[0-9]+$/.test(s)) return undefined;
  const n = BigInt(s);
  if (n > 9223372036854775807n || n < -9223372036854775808n) return undefined;
  return n;
}

function isGitURL(src: string): boolean {
  const path = src.replace(/[#?].*$/, '');
  return path.endsWith('.git');
}

/** A `COPY` source that BuildKit refuses (URLs and git refs are ADD-only), checked on the text as written. */
export function copySourceProblem(src: string): string | undefined {
  if (!src.startsWith('http://') && !src.startsWith('https://')) return undefined;
  return isGitURL(src) ? "source can't be a git ref for COPY" : "source can't be a URL for COPY";
}

/** The `target`/`dst`/`destination` of a mount spec as written (for messages only). */
function rawMountTarget(spec: string): string {
  let target = '';
  try {
    for (const field of csvFields(spec)) {
      const eq = field.indexOf('=');
      if (eq < 0) continue;
      const key = goToLower(field.slice(0, eq));
      if (key === 'target' || key === 'dst' || key === 'destination') target = field.slice(eq + 1);
    }
  } catch {
    // already validated at parse time
  }
  return target;
}

interface State {
  /** Index among the stages, or -1 for an image referenced only by --from / --mount. */
  stage: number;
  ref: string;
  /** dependency → the instruction that made it (last one wins, as in a map). */
  deps: Map<number, { ins: Instruction; loc: SourceLocation }>;
}

/**
 * Plans the build of `df`: see the module comment. Throws DockerfileError worded as BuildKit's.
 */
export function planBuild(df: Dockerfile, options: PlanOptions, hooks: PlanHooks = {}): BuildPlan {
  const { lex } = options;
  const buildArgs = options.buildArgs ?? {};
  if (df.stages.length === 0) {
    const first = df.metaArgs[0];
    throw new DockerfileError('dockerfile contains no stages to build', first ? insLocation(df, first) : undefined);
  }

  // Automatic args, TARGETSTAGE, build-arg overrides of those, then the meta-ARGs.
  const defaults = new EnvList(options.defaultArgs ?? []);
  const targetName = options.target || df.stages[df.stages.length - 1]!.name;
  defaults.set('TARGETSTAGE', targetName || 'default');
  for (const k of defaults.keys()) {
    if (Object.prototype.hasOwnProperty.call(buildArgs, k)) defaults.set(k, buildArgs[k]!);
  }
  const { args: globalArgs, consumed } = buildMetaArgs(df, lex, defaults, buildArgs);

  // Stages, with bases resolved against the names defined so far.
  const byName = new Map<string, number>();
  const planned: PlannedStage[] = [];
  const states: State[] = [];
  for (const st of df.stages) {
    const loc = stageLocation(df, st);
    const nameMatch = lexAt(loc, () => lex.processWordWithMatches(st.baseName, globalArgs));
    if (nameMatch.result === '') throw new DockerfileError(`base name (${st.baseName}) should not be blank`, loc);
    const used = new Set(nameMatch.matched);
    let platform: string | undefined;
    if (st.platform !== '') {
      const pm = lexAt(loc, () => lex.processWordWithMatches(st.platform, globalArgs), 'failed to process arguments for platform : ');
      if (pm.result === '') {
        let msg = `empty platform value from expression ${st.platform}`;
        for (const k of pm.unmatched) {
          const m = suggest(k, globalArgs.keys(), true);
          if (m) {
            msg += ` (did you mean ${m}?)`;
            break;
          }
        }
        throw new DockerfileError(msg, loc);
      }
      for (const k of pm.matched) used.add(k);
      platform = pm.result;
    }
    const baseIdx = byName.get(nameMatch.result);
    const baseRef: StageBase =
      baseIdx !== undefined
        ? { kind: 'stage', index: baseIdx }
        : nameMatch.result === 'scratch'
          ? { kind: 'scratch' }
          : { kind: 'image', ref: nameMatch.result };
    if (st.name !== '') byName.set(st.name, st.index);
    planned.push({
      stage: st,
      displayName: st.name || `stage-${st.index}`,
      baseName: nameMatch.result,
      platform,
      base: baseRef,
      usedArgs: [...used],
      triggers: [],
      deps: [],
    });
    states.push({ stage: st.index, ref: nameMatch.result, deps: new Map() });
  }

  // Target.
  let target = planned.length - 1;
  if (options.target) {
    const t = byName.get(goToLower(options.target));
    if (t === undefined) {
      throw new DockerfileError(
        withSuggestion(
          `target stage ${goQuote(options.target)} could not be found`,
          options.target,
          planned.map((p) => p.displayName),
          true,
        ),
      );
    }
    target = t;
  }

  // Dependencies of COPY --from and RUN --mount.
  const sourceFor = (ref: string): number => {
    const idx = byName.get(goToLower(ref));
    if (idx !== undefined) return idx;
    // An image (or scratch) seen only here; every reference is its own entry, as in BuildKit.
    states.push({ stage: -1, ref, deps: new Map() });
    return states.length - 1;
  };
  const asSource = (stateIdx: number): DependencySource => {
    const s = states[stateIdx]!;
    return s.stage >= 0 ? { kind: 'stage', index: s.stage } : { kind: 'image', ref: s.ref };
  };
  const addDeps = (p: PlannedStage, list: Instruction[], trigger: boolean) => {
    const state = states[p.stage.index]!;
    list.forEach((ins, i) => {
      const loc = insLocation(df, ins);
      if (ins.kind === 'COPY' && ins.from !== '') {
        const from = ins.from;
        const res = lexAt(loc, () => lex.processWordWithMatches(from, new EnvList()));
        if (res.result !== from) {
          throw new DockerfileError(
            'variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround',
            loc,
          );
        }
        const n = goAtoi(from);
        let src: number;
        if (n === undefined) src = sourceFor(from);
        else {
          if (n < 0n || n >= BigInt(states.length)) throw new DockerfileError(`invalid stage index ${n}`, loc);
          src = Number(n);
        }
        state.deps.set(src, { ins, loc });
        p.deps.push({ source: asSource(src), instruction: i, trigger });
      } else if (ins.kind === 'RUN') {
        ins.mountSources.forEach((from, m) => {
          const src = sourceFor(from === '' ? 'scratch' : from);
          state.deps.set(src, { ins, loc });
          p.deps.push({ source: asSource(src), instruction: i, trigger, mount: m });
        });
      }
    });
  };
  for (const p of planned) addDeps(p, p.stage.instructions, false);

  checkCycles(states, planned);

  if (planned.length === 1) planned[0]!.displayName = '';

  // ONBUILD of a base stage runs first in the stages built on it; a trigger's --from can make more
  // stages needed, so repeat until nothing new is reached. Only needed stages are looked at.
  let reachable = reachableStages(planned, target);
  if (hooks.parseTrigger) {
    const done = new Set<number>();
    for (;;) {
      const todo = reachable.filter((i) => !done.has(i) && planned[i]!.base.kind === 'stage');
      if (todo.length === 0) break;
      for (const i of todo) {
        done.add(i);
        const p = planned[i]!;
        const baseStage = df.stages[(p.base as { index: number }).index]!;
        const ons = baseStage.instructions.filter((x): x is OnbuildInstruction => x.kind === 'ONBUILD');
        const loc = stageLocation(df, p.stage);
        p.triggers = ons.map((o) => hooks.parseTrigger!(o.expression, loc));
        addDeps(p, p.triggers, true);
      }
      reachable = reachableStages(planned, target);
    }
  }
  checkOrder(df, planned, reachable);
  return { dockerfile: df, stages: planned, target, reachable, globalArgs, consumedBuildArgs: consumed };
}

function checkCycles(states: State[], planned: PlannedStage[]): void {
  const visited = new Set<number>();
  const path = new Set<number>();
  type Found = { loc: SourceLocation } | undefined;
  // Iterative DFS so that long chains of stages cannot exhaust the stack.
  const visit = (start: number): Found => {
    if (visited.has(start)) return undefined;
    const stack: { node: number; it: Iterator<[number, { loc: SourceLocation }]>; first?: SourceLocation }[] = [];
    visited.add(start);
    path.add(start);
    stack.push({ node: start, it: states[start]!.deps.entries() });
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const next = top.it.next();
      if (next.done) {
        path.delete(top.node);
        stack.pop();
        continue;
      }
      const [dep, via] = next.value;
      // The error points at the instruction of the start stage whose dependency leads round.
      if (stack.length === 1) stack[0]!.first = via.loc;
      if (path.has(dep)) return { loc: stack[0]!.first ?? via.loc };
      if (visited.has(dep)) continue;
      visited.add(dep);
      path.add(dep);
      stack.push({ node: dep, it: states[dep]!.deps.entries() });
    }
    return undefined;
  };
  for (let i = 0; i < states.length; i++) {
    const found = visit(i);
    if (found) {
      const name = i < planned.length ? planned[i]!.displayName : '';
      throw new DockerfileError(`circular dependency detected on stage: ${name}`, found.loc);
    }
  }
}

/** The target, its base chain and everything it copies or mounts from, ascending. */
export function reachableStages(planned: readonly PlannedStage[], target: number): number[] {
  const seen = new Set<number>();
  const todo = [target];
  while (todo.length > 0) {
    const i = todo.pop()!;
    if (seen.has(i)) continue;
    seen.add(i);
    const p = planned[i]!;
    if (p.base.kind === 'stage') todo.push(p.base.index);
    for (const d of p.deps) if (d.source.kind === 'stage') todo.push(d.source.index);
  }
  return [...seen].sort((a, b) => a - b);
}

/**
 * Checks BuildKit makes while converting the stages the target needs, in build order: a stage can
 * only copy or mount from a stage defined before it, and COPY takes no URL.
 */
function checkOrder(df: Dockerfile, planned: readonly PlannedStage[], reachable: readonly number[]): void {
  for (const i of reachable) {
    const p = planned[i]!;
    const depsOf = new Map<string, StageDependency[]>();
    for (const d of p.deps) {
      const key = `${d.trigger ? 't' : 'i'}${d.instruction}`;
      const list = depsOf.get(key);
      if (list) list.push(d);
      else depsOf.set(key, [d]);
    }
    const all: [Instruction, string][] = [
      ...p.triggers.map((ins, n): [Instruction, string] => [ins, `t${n}`]),
      ...p.stage.instructions.map((ins, n): [Instruction, string] => [ins, `i${n}`]),
    ];
    for (const [ins, key] of all) {
      const loc = insLocation(df, ins);
      for (const d of depsOf.get(key) ?? []) {
        if (d.source.kind !== 'stage' || d.source.index < i) continue;
        if (ins.kind === 'COPY') {
          throw new DockerfileError(
            `cannot copy from stage ${goQuote(ins.from)}, it needs to be defined before current stage ${goQuote(p.displayName)}`,
            loc,
          );
        }
        const run = ins as RunInstruction;
        const m = d.mount ?? 0;
        throw new DockerfileError(
          `cannot mount from stage ${goQuote(run.mountSources[m]!)} to ${goQuote(rawMountTarget(run.mountSpecs[m]!))}, stage needs to be defined before current command`,
          loc,
        );
      }
      if (ins.kind === 'COPY') {
        for (const src of (ins as CopyInstruction).sourcePaths) {
          const problem = copySourceProblem(src);
          if (problem) throw new DockerfileError(problem, loc);
        }
      }
    }
  }
}

/** The stages from the root base down to `index` (inclusive), following `FROM <stage>`. */
export function baseChain(plan: BuildPlan, index: number): number[] {
  const chain: number[] = [];
  let i: number | undefined = index;
  while (i !== undefined) {
    chain.push(i);
    const b: StageBase = plan.stages[i]!.base;
    i = b.kind === 'stage' ? b.index : undefined;
  }
  return chain.reverse();
}
