/**
 * `kiln check`: BuildKit's build checks, run over a Dockerfile without building it. The walk follows
 * BuildKit's conversion: parse-time rules over every stage, FROM-line rules with the global ARG
 * scope, then each stage's instructions in order with the stage's variable scope (ARG, ENV, the
 * base's environment), so UndefinedVar and friends fire where `docker build --check` fires them.
 */
import { DockerfileError, type SourceLocation } from '../../errors.js';
import { hostPlatform, parsePlatform, platformArgs } from '../../oci/platform.js';
import { isValidReference } from '../../oci/reference.js';
import {
  EnvList,
  buildMetaArgs,
  convert,
  expandInstruction,
  lexers,
  parsePortSpec,
  planBuild,
  resolveArgs,
  triggerHooks,
  withSuggestion,
  type BuildPlan,
  type Dockerfile,
  type Instruction,
  type PortSpecNotes,
  type Stage,
} from '../instructions/index.js';
import { parseDirective } from '../parser/directives.js';
import { goQuote, goToLower, goToUpper } from '../parser/gostr.js';
import { parse } from '../parser/index.js';
import { configForComments, parseCheckConfig, ruleEnabled, type CheckConfig } from './config.js';
import { Rules, ruleURL, type Rule } from './rules.js';

export interface CheckWarning {
  rule: string;
  description: string;
  url: string;
  message: string;
  location: SourceLocation;
}

export interface CheckReport {
  file: string;
  warnings: CheckWarning[];
  config: CheckConfig;
  /** `# check=error=true` and at least one warning: the check fails. */
  failed: boolean;
}

/** What is known of a base image's config, when the caller can look it up (e.g. in the local store). */
export interface BaseImageInfo {
  env: string[];
  shell?: string[];
}

export interface CheckOptions {
  file?: string;
  buildArgs?: Readonly<Record<string, string>>;
  /** Check only what this target needs; every stage when not given (as BuildKit's lint does). */
  target?: string;
  /**
   * Looks up a base image's config. Without it (or when it returns undefined) the image's
   * environment is unknown, and UndefinedVar is not reported for that stage: a variable may well
   * come from the image, and a false warning teaches users to ignore the check.
   */
  baseImage?: (ref: string) => BaseImageInfo | undefined;
}

/** Build args BuildKit never puts into the environment. */
const NON_ENV_ARGS = new Set(['BUILDKIT_SBOM_SCAN_CONTEXT', 'BUILDKIT_SBOM_SCAN_STAGE']);
const RESERVED_STAGE_NAMES = new Set(['context', 'scratch']);
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const SECRET_DENY = /(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/i;
const SECRET_ALLOW = /(?:_|^)(?:public|file|version)(?:_|$)/i;

/** The variable scope of a stage as its instructions run. */
interface StageScope {
  env: EnvList;
  /** The base's environment is unknown: unset-looking variables may be defined there. */
  envUnknown: boolean;
  /** Names declared by ARG (with or without a value). */
  declared: Set<string>;
  shellSet: boolean;
  workdirSet: boolean;
}

class Linter {
  readonly warnings: CheckWarning[] = [];
  constructor(
    readonly file: string,
    readonly config: CheckConfig,
  ) {}

  loc(item: { startLine: number; endLine: number }): SourceLocation {
    return { file: this.file, line: item.startLine, endLine: item.endLine };
  }

  run(rule: Rule, location: SourceLocation, message: string, config: CheckConfig = this.config): void {
    if (!ruleEnabled(config, rule)) return;
    this.warnings.push({ rule: rule.name, description: rule.description, url: ruleURL(rule.name), message, location });
  }
}

const isLower = (s: string): boolean => goToLower(s) === s;
const isUpper = (s: string): boolean => goToUpper(s) === s;

/** Runs the checks; throws DockerfileError when the Dockerfile does not parse or convert. */
export function checkDockerfile(text: string, options: CheckOptions = {}): CheckReport {
  const file = options.file ?? 'Dockerfile';
  const directive = parseDirective('check', text);
  const config = parseCheckConfig(directive?.cmdline ?? '', directive ? { file, line: Math.max(directive.line, 1) } : undefined);
  const lint = new Linter(file, config);

  const parsed = parse(text, { file });
  for (const w of parsed.warnings) {
    if (w.short.startsWith('Empty continuation line')) {
      lint.run(Rules.NoEmptyContinuation, { file, line: w.startLine ?? 0 }, 'Empty continuation line');
    }
  }
  const df = convert(parsed, { file });
  parseTimeRules(df, lint);
  validateStageNames(df, lint);
  validateCommandCasing(df, lint);

  const { lex, rawLex } = lexers(df);
  const host = hostPlatform();
  const defaults = new EnvList(platformArgs(host, host));
  validateBaseImagesWithDefaultArgs(df, lint, defaults);

  const buildArgs = options.buildArgs ?? {};
  const plan = planBuild(
    df,
    { lex, buildArgs, defaultArgs: defaults.toEntries(), ...(options.target ? { target: options.target } : {}) },
    triggerHooks,
  );
  fromLineRules(df, plan, lint);

  const stagesToCheck = options.target ? new Set(plan.reachable) : new Set(df.stages.map((s) => s.index));
  const scopes: StageScope[] = [];
  for (const planned of plan.stages) {
    const st = planned.stage;
    const scope = initialScope(planned.base, scopes, options, planned.baseName);
    scopes[st.index] = scope;
    if (!stagesToCheck.has(st.index)) continue;
    const trackers = { CMD: undefined, ENTRYPOINT: undefined, HEALTHCHECK: undefined } as Record<string, SourceLocation | undefined>;
    for (const ins of st.instructions) {
      const cfg = configForComments(config, ins.comments);
      dispatch(ins, scope, trackers, cfg, { lint, df, lex, rawLex, buildArgs, plan });
    }
  }

  const warnings = lint.warnings
    .map((w, i) => ({ w, i }))
    .sort((a, b) => a.w.location.line - b.w.location.line || a.i - b.i)
    .map(({ w }) => w);
  return { file, warnings, config, failed: config.error && warnings.length > 0 };
}

/** Rules BuildKit applies while converting nodes to instructions: every stage, whatever the target. */
function parseTimeRules(df: Dockerfile, lint: Linter): void {
  for (const st of df.stages) {
    const from = st.from;
    const words = from.original.split(/\s+/).filter(Boolean);
    // FROM [--flags] base AS name: the original stage name is the last word.
    if (from.asWord && st.name) {
      const name = words[words.length - 1] ?? '';
      if (!isLower(name)) lint.run(Rules.StageNameCasing, lint.loc(from), `Stage name '${name}' should be lowercase`);
      const kw = from.keyword;
      // Only a self-consistent FROM is compared; ConsistentInstructionCasing reports the others.
      const fromLower = isLower(kw);
      const fromUpper = isUpper(kw);
      if ((fromLower || fromUpper) && !(fromLower ? isLower(from.asWord) : isUpper(from.asWord))) {
        lint.run(Rules.FromAsCasing, lint.loc(from), `'${from.asWord}' and '${kw}' keywords' casing do not match`);
      }
    }
    if (st.name) definitionDescription(lint, 'FROM', [st.name], from.comments, lint.loc(from));
    for (const ins of st.instructions) {
      if (ins.kind === 'MAINTAINER') {
        lint.run(Rules.MaintainerDeprecated, lint.loc(ins), 'Maintainer instruction is deprecated in favor of using label');
      }
      if (ins.kind === 'ARG') {
        definitionDescription(lint, 'ARG', ins.args.map((a) => a.key), ins.comments, lint.loc(ins));
      }
    }
  }
  for (const arg of df.metaArgs) {
    definitionDescription(lint, 'ARG', arg.args.map((a) => a.key), arg.comments, lint.loc(arg));
  }
}

function definitionDescription(lint: Linter, instruction: string, keys: string[], comments: readonly string[], loc: SourceLocation): void {
  if (comments.length === 0 || keys.length === 0) return;
  const first = (comments[comments.length - 1] ?? '').split(' ')[0] ?? '';
  if (keys.includes(first)) return;
  const example = keys.length > 1 ? '<arg_key>' : keys[0]!;
  lint.run(
    Rules.InvalidDefinitionDescription,
    loc,
    `Comment for ${instruction} should follow the format: \`# ${example} <description>\``,
  );
}

function validateStageNames(df: Dockerfile, lint: Linter): void {
  const seen = new Set<string>();
  for (const st of df.stages) {
    if (!st.name) continue;
    if (RESERVED_STAGE_NAMES.has(st.name)) {
      lint.run(Rules.ReservedStageName, lint.loc(st.from), `Stage name should not use the same name as reserved stage ${goQuote(st.name)}`);
    }
    if (seen.has(st.name)) {
      lint.run(Rules.DuplicateStageName, lint.loc(st.from), `Duplicate stage name ${goQuote(st.name)}, stage names should be unique`);
    }
    seen.add(st.name);
  }
}

function validateCommandCasing(df: Dockerfile, lint: Linter): void {
  const all: Array<{ keyword: string; startLine: number; endLine: number }> = [];
  for (const st of df.stages) all.push(st.from, ...st.instructions);
  let lower = 0;
  let upper = 0;
  for (const c of all) {
    if (isLower(c.keyword)) lower++;
    else if (isUpper(c.keyword)) upper++;
  }
  const majorityLower = lower > upper;
  for (const c of all) {
    let casing = '';
    if (majorityLower && !isLower(c.keyword)) casing = 'lowercase';
    else if (!majorityLower && !isUpper(c.keyword)) casing = 'uppercase';
    if (casing) {
      lint.run(
        Rules.ConsistentInstructionCasing,
        lint.loc(c),
        `Command '${c.keyword}' should match the case of the command majority (${casing})`,
      );
    }
  }
}

/** With only the ARG defaults (no --build-arg), every FROM must still name a valid image. */
function validateBaseImagesWithDefaultArgs(df: Dockerfile, lint: Linter, defaults: EnvList): void {
  const { lex } = lexers(df);
  let args: EnvList;
  try {
    args = buildMetaArgs(df, lex, defaults, {}).args;
  } catch {
    return; // the build itself reports this failure
  }
  for (const st of df.stages) {
    let result: string;
    try {
      result = lex.processWordWithMatches(st.baseName, args).result;
    } catch {
      return;
    }
    if (!isValidReference(result)) {
      lint.run(
        Rules.InvalidDefaultArgInFrom,
        lint.loc(st.from),
        `Default value for ARG ${st.baseName} results in empty or invalid base image name`,
      );
    }
  }
}

function fromLineRules(df: Dockerfile, plan: BuildPlan, lint: Linter): void {
  const { lex } = lexers(df);
  const declared = new Set<string>(plan.globalArgs.keys());
  for (const a of df.metaArgs) for (const kv of a.args) declared.add(kv.key);
  const argKeys = [...declared];
  for (const st of df.stages) {
    const cfg = configForComments(lint.config, st.from.comments);
    const loc = lint.loc(st.from);
    const undeclared = (unmatched: Set<string>): void => {
      for (const name of [...unmatched].sort()) {
        if (declared.has(name)) continue;
        lint.run(Rules.UndefinedArgInFrom, loc, withSuggestion(`FROM argument '${name}' is not declared`, name, argKeys, true), cfg);
      }
    };
    undeclared(lex.processWordWithMatches(st.baseName, plan.globalArgs).unmatched);
    if (st.platform) {
      const m = lex.processWordWithMatches(st.platform, plan.globalArgs);
      undeclared(m.unmatched);
      if (m.matched.size === 1 && m.unmatched.size === 0 && m.matched.has('TARGETPLATFORM')) {
        if (m.result === plan.globalArgs.get('TARGETPLATFORM')) {
          lint.run(
            Rules.RedundantTargetPlatform,
            loc,
            `Setting platform to predefined ${st.platform} in FROM is redundant as this is the default behavior`,
            cfg,
          );
        }
      }
      if (m.matched.size === 0 && m.unmatched.size === 0) constPlatform(st, m.result, loc, lint, cfg);
    }
  }
}

function constPlatform(st: Stage, value: string, loc: SourceLocation, lint: Linter, cfg: CheckConfig): void {
  let p;
  try {
    p = parsePlatform(value);
  } catch {
    return; // an invalid platform fails the build itself
  }
  // A stage named for its platform (`FROM --platform=linux/amd64 x AS build-amd64`) means it.
  if (st.name.includes(p.os) || st.name.includes(p.architecture)) return;
  lint.run(Rules.FromPlatformFlagConstDisallowed, loc, `FROM --platform flag should not use constant value ${goQuote(value)}`, cfg);
}

function initialScope(
  base: BuildPlan['stages'][number]['base'],
  scopes: StageScope[],
  options: CheckOptions,
  baseName: string,
): StageScope {
  if (base.kind === 'stage') {
    const parent = scopes[base.index]!;
    return {
      env: parent.env.clone(),
      envUnknown: parent.envUnknown,
      declared: new Set(parent.declared),
      shellSet: parent.shellSet,
      workdirSet: parent.workdirSet,
    };
  }
  const env = new EnvList();
  let envUnknown = false;
  let shellSet = false;
  if (base.kind === 'image') {
    const info = options.baseImage?.(baseName);
    if (info) {
      for (const kv of info.env) {
        const eq = kv.indexOf('=');
        env.set(eq < 0 ? kv : kv.slice(0, eq), eq < 0 ? '' : kv.slice(eq + 1));
      }
      shellSet = (info.shell?.length ?? 0) > 0;
    } else {
      envUnknown = true;
    }
  }
  // BuildKit makes sure PATH is always set for Linux stages.
  if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
  return { env, envUnknown, declared: new Set(), shellSet, workdirSet: false };
}

interface DispatchContext {
  lint: Linter;
  df: Dockerfile;
  lex: ReturnType<typeof lexers>['lex'];
  rawLex: ReturnType<typeof lexers>['rawLex'];
  buildArgs: Readonly<Record<string, string>>;
  plan: BuildPlan;
}

function reportUnmatched(ins: Instruction, unmatched: Set<string>, scope: StageScope, cfg: CheckConfig, ctx: DispatchContext): void {
  if (scope.envUnknown) return;
  const options = scope.env.keys();
  for (const name of [...unmatched].sort()) {
    if (scope.declared.has(name) || NON_ENV_ARGS.has(name)) continue;
    ctx.lint.run(
      Rules.UndefinedVar,
      ctx.lint.loc(ins),
      withSuggestion(`Usage of undefined variable '$${name}'`, name, options, true).replace(/\(did you mean (.*)\?\)$/, '(did you mean $$$1?)'),
      cfg,
    );
  }
}

function secretKey(kind: 'ARG' | 'ENV', key: string, ins: Instruction, cfg: CheckConfig, ctx: DispatchContext): void {
  if (SECRET_DENY.test(key) && !SECRET_ALLOW.test(key)) {
    ctx.lint.run(Rules.SecretsUsedInArgOrEnv, ctx.lint.loc(ins), `Do not use ARG or ENV instructions for sensitive data (${kind} ${goQuote(key)})`, cfg);
  }
}

function usedOnce(ins: Instruction, trackers: Record<string, SourceLocation | undefined>, cfg: CheckConfig, ctx: DispatchContext): void {
  const previous = trackers[ins.kind];
  if (previous) {
    // The earlier one is the instruction that has no effect, so that is where the warning points.
    ctx.lint.run(
      Rules.MultipleInstructionsDisallowed,
      previous,
      `Multiple ${ins.keyword} instructions should not be used in the same stage because only the last one will be used`,
      cfg,
    );
  }
  trackers[ins.kind] = ctx.lint.loc(ins);
}

function dispatch(
  ins: Instruction,
  scope: StageScope,
  trackers: Record<string, SourceLocation | undefined>,
  cfg: CheckConfig,
  ctx: DispatchContext,
): void {
  const { lint } = ctx;
  const base = { file: ctx.df.file, lex: ctx.lex, rawLex: ctx.rawLex, env: scope.env };
  if (ins.kind === 'ARG') {
    const unmatched = new Set<string>();
    for (const a of ins.args) secretKey('ARG', a.key, ins, cfg, ctx);
    const resolved = resolveArgs(ins, { ...base, unmatched }, { buildArgs: ctx.buildArgs, globalArgs: ctx.plan.globalArgs });
    reportUnmatched(ins, unmatched, scope, cfg, ctx);
    for (const r of resolved) {
      scope.declared.add(r.key);
      if (r.value !== undefined && !NON_ENV_ARGS.has(r.key)) scope.env.set(r.key, r.value);
    }
    return;
  }
  const unmatched = new Set<string>();
  const expanded = expandInstruction(ins, { ...base, unmatched });
  reportUnmatched(ins, unmatched, scope, cfg, ctx);
  switch (expanded.kind) {
    case 'ENV':
      for (const kv of expanded.env) {
        if (kv.noDelim) lint.run(Rules.LegacyKeyValueFormat, lint.loc(ins), legacyKeyValue(ins.keyword), cfg);
        secretKey('ENV', kv.key, ins, cfg, ctx);
        scope.env.set(kv.key, kv.value);
      }
      break;
    case 'LABEL':
      for (const kv of expanded.labels) {
        if (kv.noDelim) lint.run(Rules.LegacyKeyValueFormat, lint.loc(ins), legacyKeyValue(ins.keyword), cfg);
      }
      break;
    case 'WORKDIR':
      // Only the first WORKDIR of the build chain matters: fixing it fixes the relative ones after it.
      if (!scope.workdirSet && !expanded.path.startsWith('/')) {
        lint.run(
          Rules.WorkdirRelativePath,
          lint.loc(ins),
          `Relative workdir ${goQuote(expanded.path)} can have unexpected results if the base image changes`,
          cfg,
        );
      }
      scope.workdirSet = true;
      break;
    case 'CMD':
    case 'ENTRYPOINT':
      usedOnce(ins, trackers, cfg, ctx);
      if (expanded.prependShell && !scope.shellSet) {
        lint.run(
          Rules.JSONArgsRecommended,
          lint.loc(ins),
          `JSON arguments recommended for ${ins.keyword} to prevent unintended behavior related to OS signals`,
          cfg,
        );
      }
      break;
    case 'HEALTHCHECK':
      usedOnce(ins, trackers, cfg, ctx);
      break;
    case 'SHELL':
      scope.shellSet = true;
      break;
    case 'EXPOSE':
      for (const port of expanded.ports) {
        const notes: PortSpecNotes = { protoCasing: false, hostPart: false };
        try {
          parsePortSpec(port, notes);
        } catch (err) {
          throw new DockerfileError(err instanceof Error ? err.message : String(err), lint.loc(ins));
        }
        if (notes.protoCasing) {
          lint.run(Rules.ExposeProtoCasing, lint.loc(ins), `Defined protocol '${port}' in EXPOSE instruction should be lowercase`, cfg);
        }
        if (notes.hostPart) {
          lint.run(
            Rules.ExposeInvalidFormat,
            lint.loc(ins),
            `EXPOSE instruction should not define an IP address or host-port mapping, found '${port}'`,
            cfg,
          );
        }
      }
      break;
    default:
      break;
  }
}

function legacyKeyValue(keyword: string): string {
  return `"${keyword} key=value" should be used instead of legacy "${keyword} key value" format`;
}
