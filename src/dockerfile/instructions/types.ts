/**
 * Typed Dockerfile instructions, one interface per instruction, shaped after BuildKit's
 * `frontend/dockerfile/instructions` commands. Values are as written (unexpanded) unless a comment
 * says otherwise; `expandInstruction` gives the per-step expanded copy.
 */
import type { Directives, ParseWarning } from '../parser/ast.js';
import type { Device, Mount, NetworkMode, SecurityMode } from './mounts.js';

/** What every instruction carries, whatever its kind. */
export interface InstructionBase {
  /** The keyword as written (`RUN`, `run`): BuildKit's `Name()`. */
  keyword: string;
  /** The instruction's text with continuations joined, trimmed: BuildKit's `String()`. */
  original: string;
  /** 1-based first and last line (heredoc bodies included). */
  startLine: number;
  endLine: number;
  /** Comment lines directly above the instruction, without `#`. */
  comments: string[];
}

/** `k=v` of ENV and LABEL. */
export interface KeyValuePair {
  key: string;
  value: string;
  /** The legacy space-separated form (`ENV k v`). */
  noDelim: boolean;
}

/** One `name[=default]` of ARG. */
export interface ArgDefinition {
  key: string;
  /** The default as written; undefined when there is none (`ARG name`). */
  value: string | undefined;
  /** Text of a comment line above the ARG that starts with the name (`# name does X` → `does X`). */
  docComment: string;
}

/** An inline file of COPY/ADD given as a heredoc. */
export interface SourceContent {
  /** The heredoc name, used as the file name. */
  path: string;
  /** The body (`<<-` tab stripping already applied). */
  data: string;
  /** Variables in the body are expanded (the delimiter was not quoted). */
  expand: boolean;
}

export interface SourcesAndDest {
  destPath: string;
  /** Paths, URLs or git refs, in order. */
  sourcePaths: string[];
  /** Heredoc sources, in order. */
  sourceContents: SourceContent[];
}

/** A heredoc attached to RUN/CMD/ENTRYPOINT. */
export interface ShellInlineFile {
  name: string;
  /** The body as written (RUN applies `<<-` tab stripping itself when it runs it). */
  data: string;
  chomp: boolean;
}

/** Arguments of RUN, CMD and ENTRYPOINT. */
export interface CommandLine {
  /** Exec form: the JSON array; shell form: one string with the whole command. */
  cmdLine: string[];
  files: ShellInlineFile[];
  /** Shell form: the image's shell is put in front when it runs. */
  prependShell: boolean;
}

export interface EnvInstruction extends InstructionBase {
  kind: 'ENV';
  env: KeyValuePair[];
}

export interface MaintainerInstruction extends InstructionBase {
  kind: 'MAINTAINER';
  maintainer: string;
}

export interface LabelInstruction extends InstructionBase {
  kind: 'LABEL';
  labels: KeyValuePair[];
}

export interface AddInstruction extends InstructionBase, SourcesAndDest {
  kind: 'ADD';
  chown: string;
  chmod: string;
  link: boolean;
  /** `--exclude` patterns, in order (never expanded). */
  excludePatterns: string[];
  /** `--keep-git-dir`; undefined when the flag was not given. */
  keepGitDir: boolean | undefined;
  checksum: string;
  /** `--unpack`; undefined when the flag was not given. */
  unpack: boolean | undefined;
}

export interface CopyInstruction extends InstructionBase, SourcesAndDest {
  kind: 'COPY';
  /** `--from`: a stage name, a stage index or an image; empty for the build context. */
  from: string;
  chown: string;
  chmod: string;
  link: boolean;
  excludePatterns: string[];
  parents: boolean;
}

export interface OnbuildInstruction extends InstructionBase {
  kind: 'ONBUILD';
  /** The trigger as stored in the image config (`RUN echo hi`, heredoc bodies appended). */
  expression: string;
}

export interface WorkdirInstruction extends InstructionBase {
  kind: 'WORKDIR';
  path: string;
}

export interface RunInstruction extends InstructionBase, CommandLine {
  kind: 'RUN';
  /** `--mount` values as written; `expandInstruction` turns them into `mounts`. */
  mountSpecs: string[];
  /** `from=` of each mount spec ('' when none), known before expansion for stage dependencies. */
  mountSources: string[];
  network: NetworkMode;
  security: SecurityMode;
  devices: Device[];
  /** Names of the flags given (`mount`, `network`, ...). */
  flagsUsed: string[];
}

/** A RUN whose variables have been expanded: the mount specs are read. */
export interface ExpandedRunInstruction extends RunInstruction {
  mounts: Mount[];
}

export interface CmdInstruction extends InstructionBase, CommandLine {
  kind: 'CMD';
}

export interface EntrypointInstruction extends InstructionBase, Omit<CommandLine, 'cmdLine'> {
  kind: 'ENTRYPOINT';
  /** null for `ENTRYPOINT []`, which clears the entrypoint. */
  cmdLine: string[] | null;
}

/** HEALTHCHECK settings as in the image config; durations in nanoseconds (0 = inherit default). */
export interface HealthConfig {
  /** `["NONE"]`, `["CMD", ...]` (exec form) or `["CMD-SHELL", "cmd"]`. */
  test: string[];
  interval: number;
  timeout: number;
  startPeriod: number;
  startInterval: number;
  retries: number;
}

export interface HealthcheckInstruction extends InstructionBase {
  kind: 'HEALTHCHECK';
  health: HealthConfig;
}

export interface ExposeInstruction extends InstructionBase {
  kind: 'EXPOSE';
  /** Port specs as written, sorted (as BuildKit sorts them); `parsePortSpecs` reads them. */
  ports: string[];
}

export interface UserInstruction extends InstructionBase {
  kind: 'USER';
  user: string;
}

export interface VolumeInstruction extends InstructionBase {
  kind: 'VOLUME';
  volumes: string[];
}

export interface StopsignalInstruction extends InstructionBase {
  kind: 'STOPSIGNAL';
  signal: string;
}

export interface ArgInstruction extends InstructionBase {
  kind: 'ARG';
  args: ArgDefinition[];
}

export interface ShellInstruction extends InstructionBase {
  kind: 'SHELL';
  shell: string[];
}

/** FROM: starts a stage. */
export interface FromInstruction extends InstructionBase {
  kind: 'FROM';
  /** Image, stage name or `scratch`, as written (expanded with the meta-args when the build is planned). */
  baseName: string;
  /** `AS name`, lower-cased; '' when the stage has no name. */
  stageName: string;
  /** The `AS` word as written (`AS`, `as`), '' when absent; for casing checks. */
  asWord: string;
  /** `--platform` as written; '' when not given. */
  platform: string;
  /** Comment text above FROM that starts with the stage name, without the name. */
  docComment: string;
}

/** Every instruction that can appear inside a stage. */
export type Instruction =
  | AddInstruction
  | ArgInstruction
  | CmdInstruction
  | CopyInstruction
  | EntrypointInstruction
  | EnvInstruction
  | ExposeInstruction
  | HealthcheckInstruction
  | LabelInstruction
  | MaintainerInstruction
  | OnbuildInstruction
  | RunInstruction
  | ShellInstruction
  | StopsignalInstruction
  | UserInstruction
  | VolumeInstruction
  | WorkdirInstruction;

export type InstructionKind = Instruction['kind'] | 'FROM';

/** What converting one parser node gives. */
export type ParsedInstruction = Instruction | FromInstruction;

/** The expanded form of an instruction: the same shape, except that RUN gains its mounts. */
export type Expanded<T extends Instruction> = T extends RunInstruction ? ExpandedRunInstruction : T;

/** A build stage: a FROM and the instructions up to the next FROM. */
export interface Stage {
  /** Position among the stages (what `--from=0` refers to). */
  index: number;
  /** `AS` name, lower-cased; '' when unnamed. */
  name: string;
  /** Base as written in FROM (unexpanded). */
  baseName: string;
  /** `--platform` as written; '' when not given. */
  platform: string;
  docComment: string;
  /** The FROM instruction itself (keyword, text, lines, comments). */
  from: FromInstruction;
  startLine: number;
  endLine: number;
  instructions: Instruction[];
}

/** A Dockerfile turned into stages, before any variable is expanded. */
export interface Dockerfile {
  file: string;
  stages: Stage[];
  /** ARG instructions before the first FROM (the global scope for FROM lines). */
  metaArgs: ArgInstruction[];
  directives: Directives;
  /** The escape token (`\` or backtick) the lexer must use for this file. */
  escapeToken: '\\' | '`';
  warnings: ParseWarning[];
}
