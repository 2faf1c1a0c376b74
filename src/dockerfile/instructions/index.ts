/**
 * Typed Dockerfile instructions and stages, converted from parser nodes with BuildKit's rules
 * (`frontend/dockerfile/instructions`), plus build planning (stages, target, dependencies) and
 * per-step variable expansion.
 *
 *   const df = parseDockerfile(text, { file: 'Dockerfile' });          // stages, meta-ARGs
 *   const plan = planBuild(df, { lex: lexerFor(df), target, buildArgs, defaultArgs }, triggerHooks(df));
 *   // per step, with the stage's scope:
 *   const step = expandInstruction(ins, { file: df.file, ...lexers(df), env });
 */
import { DockerfileError, type SourceLocation } from '../../errors.js';
import { parse, type ParseResult } from '../parser/index.js';
import { ShellLex } from '../shell/index.js';
import { convert, parseInstruction } from './convert.js';
import type { PlanHooks } from './stages.js';
import type { Dockerfile, Instruction } from './types.js';

export type * from './types.js';
export { BFlags, FlagError, type Flag, type FlagType } from './bflags.js';
export {
  INSTRUCTION_NAMES,
  convert,
  docComment,
  handleJSONArgs,
  nodeArgs,
  parseBuildStageName,
  parseInstruction,
  parseOptInterval,
  type ConvertOptions,
} from './convert.js';
export { DurationError, formatGoDuration, parseGoDuration } from './duration.js';
export { expandInstruction, resolveArgs, type ArgScope, type ExpandContext, type ResolvedArg } from './expand.js';
export { PortSpecError, parsePortSpec, parsePortSpecs, type PortSpecNotes } from './expose.js';
export { healthcheckCreatedBy } from './history.js';
export { EnvList, lexAt, type EnvGetter, type WordLexer } from './lexer.js';
export {
  MOUNT_TYPES,
  MountError,
  NETWORK_MODES,
  SECURITY_MODES,
  SHARE_MODES,
  parseDevice,
  parseMount,
  ramInBytes,
  type Device,
  type Mount,
  type MountType,
  type NetworkMode,
  type SecurityMode,
  type ShareMode,
} from './mounts.js';
export {
  baseChain,
  buildMetaArgs,
  copySourceProblem,
  planBuild,
  reachableStages,
  type BuildPlan,
  type DependencySource,
  type PlanHooks,
  type PlanOptions,
  type PlannedStage,
  type StageBase,
  type StageDependency,
} from './stages.js';
export { withSuggestion } from './suggest.js';

export interface ParseDockerfileOptions {
  /** File name for error locations (default `Dockerfile`). */
  file?: string;
}

/** Parses and converts a Dockerfile: stages, meta-ARGs, directives, parser warnings. Throws DockerfileError. */
export function parseDockerfile(text: string, options: ParseDockerfileOptions = {}): Dockerfile {
  const file = options.file ?? 'Dockerfile';
  return convert(parse(text, { file }), { file });
}

/** The lexer for a Dockerfile's own escape token (FROM lines, instruction arguments). */
export function lexerFor(df: Pick<Dockerfile, 'escapeToken'>): ShellLex {
  return new ShellLex(df.escapeToken);
}

/**
 * Both lexers a step's expansion needs: the Dockerfile's, and the one for heredoc bodies (escape
 * token `\`, quotes kept as written).
 */
export function lexers(df: Pick<Dockerfile, 'escapeToken'>): { lex: ShellLex; rawLex: ShellLex } {
  return { lex: lexerFor(df), rawLex: new ShellLex('\\', { skipProcessQuotes: true }) };
}

/**
 * An ONBUILD trigger (from a base stage, or from a base image's config `OnBuild` list) parsed into
 * the instruction it runs, placed at `location` (the FROM of the stage that inherits it), as
 * BuildKit does. Throws DockerfileError.
 */
export function parseTrigger(expression: string, location: SourceLocation): Instruction {
  let result: ParseResult;
  try {
    result = parse(expression, { file: location.file });
  } catch (err) {
    // The trigger text has no lines of its own in this file: report it at the inheriting FROM.
    if (err instanceof DockerfileError) throw new DockerfileError(err.detail, location, { cause: err });
    throw err;
  }
  const nodes = result.ast.children;
  if (nodes.length !== 1) throw new DockerfileError('onbuild trigger should be a single expression', location);
  const node = { ...nodes[0]!, startLine: location.line, endLine: location.endLine ?? location.line };
  const ins = parseInstruction(node, { file: location.file });
  // BuildKit's ParseCommand: a FROM is a stage, not a command.
  if (ins.kind === 'FROM') throw new DockerfileError('*instructions.Stage is not a command type', location);
  return ins;
}

/** Plan hooks that parse base-stage ONBUILD triggers with `parseTrigger`. */
export const triggerHooks: PlanHooks = { parseTrigger };
