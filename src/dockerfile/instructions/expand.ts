/**
 * Variable expansion of instruction arguments, done per build step with the stage's scope (ARGs,
 * ENVs, the base image's environment), exactly where BuildKit expands:
 *  - ENV and LABEL keys and values; WORKDIR, USER, STOPSIGNAL; each VOLUME;
 *  - COPY/ADD sources, destination, `--chown`, `--chmod` (and ADD `--checksum`); heredoc bodies whose
 *    delimiter was not quoted (with the raw lexer, which keeps quotes);
 *  - RUN `--mount` values (every `key=value`), which are then read into typed mounts;
 *  - EXPOSE specs, with word splitting;
 *  - ARG defaults, via `resolveArgs` (build args win, then the global scope).
 * CMD, ENTRYPOINT, SHELL, HEALTHCHECK, MAINTAINER, ONBUILD and RUN's command are never expanded by the
 * builder (the shell does it at run time), nor are `COPY --from` and `--exclude`.
 */
import { DockerfileError, type SourceLocation } from '../../errors.js';
import { ShellLex } from '../shell/index.js';
import { EnvList, lexAt, type EnvGetter, type WordLexer } from './lexer.js';
import { MountError, parseMount, type Mount } from './mounts.js';
import { copySourceProblem } from './stages.js';
import type {
  AddInstruction,
  ArgInstruction,
  CopyInstruction,
  Expanded,
  ExpandedRunInstruction,
  Instruction,
  KeyValuePair,
  SourceContent,
} from './types.js';

export interface ExpandContext {
  /** File name for error locations. */
  file: string;
  /** Lexer with the Dockerfile's escape token. */
  lex: WordLexer;
  /**
   * Lexer for heredoc bodies: whatever the Dockerfile's escape token, BuildKit expands them with
   * `\` as escape and quotes left in place (`SkipProcessQuotes`). That is the default.
   */
  rawLex?: WordLexer;
  /** The step's variable scope. */
  env: EnvGetter;
  /** When given, collects names referenced but unset (for the UndefinedVar check). */
  unmatched?: Set<string>;
}

const HEREDOC_LEX = new ShellLex('\\', { skipProcessQuotes: true });

function location(ctx: ExpandContext, ins: { startLine: number; endLine: number }): SourceLocation {
  return { file: ctx.file, line: ins.startLine, endLine: ins.endLine };
}

function expander(ctx: ExpandContext, loc: SourceLocation, lex: WordLexer, env: EnvGetter = ctx.env) {
  return (word: string): string => {
    const r = lexAt(loc, () => lex.processWordWithMatches(word, env));
    if (ctx.unmatched) for (const u of r.unmatched) ctx.unmatched.add(u);
    return r.result;
  };
}

function expandKvps(kvps: readonly KeyValuePair[], ex: (w: string) => string): KeyValuePair[] {
  return kvps.map((kv) => ({ key: ex(kv.key), value: ex(kv.value), noDelim: kv.noDelim }));
}

function expandContents(contents: readonly SourceContent[], raw: (w: string) => string): SourceContent[] {
  return contents.map((c) => (c.expand ? { ...c, data: raw(c.data) } : { ...c }));
}

function checkCopySources(ins: CopyInstruction, loc: SourceLocation): void {
  for (const src of ins.sourcePaths) {
    const problem = copySourceProblem(src);
    if (problem) throw new DockerfileError(problem, loc);
  }
}

/**
 * The instruction with its variables expanded against `ctx.env` (a new object; the input is not
 * changed). RUN additionally gets its `--mount` specs read into `mounts`. Throws DockerfileError.
 */
export function expandInstruction<T extends Instruction>(ins: T, ctx: ExpandContext): Expanded<T> {
  return expandAny(ins, ctx) as Expanded<T>;
}

function expandAny(ins: Instruction, ctx: ExpandContext): Instruction | ExpandedRunInstruction {
  const loc = location(ctx, ins);
  const ex = expander(ctx, loc, ctx.lex);
  switch (ins.kind) {
    case 'ENV':
      return { ...ins, env: expandKvps(ins.env, ex) };
    case 'LABEL':
      return { ...ins, labels: expandKvps(ins.labels, ex) };
    case 'WORKDIR':
      return { ...ins, path: ex(ins.path) };
    case 'USER':
      return { ...ins, user: ex(ins.user) };
    case 'STOPSIGNAL':
      return { ...ins, signal: ex(ins.signal) };
    case 'VOLUME':
      return { ...ins, volumes: ins.volumes.map(ex) };
    case 'ADD': {
      const raw = expander(ctx, loc, ctx.rawLex ?? HEREDOC_LEX);
      const out: AddInstruction = {
        ...ins,
        chown: ex(ins.chown),
        chmod: ex(ins.chmod),
        checksum: ex(ins.checksum),
        sourcePaths: ins.sourcePaths.map(ex),
        destPath: '',
        excludePatterns: [...ins.excludePatterns],
      };
      out.destPath = ex(ins.destPath);
      out.sourceContents = expandContents(ins.sourceContents, raw);
      return out;
    }
    case 'COPY': {
      const raw = expander(ctx, loc, ctx.rawLex ?? HEREDOC_LEX);
      const out: CopyInstruction = {
        ...ins,
        chown: ex(ins.chown),
        chmod: ex(ins.chmod),
        sourcePaths: ins.sourcePaths.map(ex),
        destPath: '',
        excludePatterns: [...ins.excludePatterns],
      };
      out.destPath = ex(ins.destPath);
      out.sourceContents = expandContents(ins.sourceContents, raw);
      checkCopySources(out, loc);
      return out;
    }
    case 'RUN': {
      const mounts: Mount[] = ins.mountSpecs.map((spec) => {
        try {
          return parseMount(spec, ex);
        } catch (err) {
          if (err instanceof MountError) throw new DockerfileError(err.message, loc);
          throw err;
        }
      });
      return { ...ins, mounts };
    }
    case 'EXPOSE': {
      const ports: string[] = [];
      for (const p of ins.ports) ports.push(...lexAt(loc, () => ctx.lex.processWords(p, ctx.env)));
      return { ...ins, ports };
    }
    default:
      return { ...ins };
  }
}

export interface ArgScope {
  /** `--build-arg` values. */
  buildArgs: Readonly<Record<string, string>>;
  /** The global scope (BuildPlan.globalArgs). */
  globalArgs: EnvGetter;
}

export interface ResolvedArg {
  key: string;
  /** The value the variable gets; undefined when it stays unset. */
  value: string | undefined;
  /** Where the value came from. */
  source: 'build-arg' | 'default' | 'global' | 'unset';
}

/**
 * ARG inside a stage: each name gets the build arg if given, else its default expanded against the
 * scope (earlier names of the same ARG included), else — with no default — the global value of that
 * name. Unset names stay unset (they still are declared, which the caller tracks).
 */
export function resolveArgs(ins: ArgInstruction, ctx: ExpandContext, scope: ArgScope): ResolvedArg[] {
  const loc = location(ctx, ins);
  const local = new EnvList();
  const env: EnvGetter = {
    get: (k) => (local.has(k) ? local.get(k) : ctx.env.get(k)),
    keys: () => new Set([...ctx.env.keys(), ...local.keys()]),
  };
  const ex = expander(ctx, loc, ctx.lex, env);
  return ins.args.map((arg) => {
    let out: ResolvedArg;
    if (Object.prototype.hasOwnProperty.call(scope.buildArgs, arg.key)) {
      out = { key: arg.key, value: scope.buildArgs[arg.key]!, source: 'build-arg' };
    } else if (arg.value !== undefined) {
      out = { key: arg.key, value: ex(arg.value), source: 'default' };
    } else {
      const g = scope.globalArgs.get(arg.key);
      out = g !== undefined ? { key: arg.key, value: g, source: 'global' } : { key: arg.key, value: undefined, source: 'unset' };
    }
    if (out.value !== undefined) local.set(arg.key, out.value);
    return out;
  });
}
