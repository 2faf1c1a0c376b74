/**
 * The parsed form of a Dockerfile, shaped like BuildKit's parser.Node so that `dump()` can be compared
 * byte for byte with BuildKit's test corpus and so that instruction conversion follows BuildKit's
 * rules. Produced by parse.ts (which explains why `dockerfile-ast` is not the source of it).
 */

/** A heredoc attached to an instruction (`RUN <<EOF ... EOF`). */
export interface Heredoc {
  /** The delimiter word, without quotes or `-`. */
  name: string;
  /** File descriptor before `<<` (`3<<EOF`), 0 when none. */
  fileDescriptor: number;
  /** Variables are expanded in the body unless the delimiter was quoted. */
  expand: boolean;
  /** `<<-`: leading tabs are stripped from every body line. */
  chomp: boolean;
  /** The body, each line ending with `\n`. */
  content: string;
}

export interface Node {
  /** The instruction keyword as written (top level), or one argument's value. */
  value: string;
  /** Argument nodes, in order (BuildKit's `Next` chain). */
  next: Node[];
  /** Sub-instructions: the root's instructions, or ONBUILD's single trigger. */
  children: Node[];
  /** Leading `--flag` words, as written, on an instruction node. */
  flags: string[];
  /** `json: true` when the arguments were a JSON array (exec form). */
  attributes: { json?: boolean };
  /** The whole instruction text after line continuations were joined. */
  original: string;
  heredocs: Heredoc[];
  /** 1-based first and last physical line of the instruction (heredoc bodies included). */
  startLine: number;
  endLine: number;
  /** Comment lines directly above the instruction, without `#` (BuildKit's PrevComment). */
  prevComment: string[];
}

export interface ParseWarning {
  short: string;
  detail?: string;
  url?: string;
  /** 1-based line range the warning is about. */
  startLine?: number;
  endLine?: number;
}

/** Parser directives read from the top of the file. */
export interface Directives {
  /** `# syntax=` frontend image, when given. */
  syntax?: string;
  /** The escape token: `\` unless `# escape=` says otherwise. */
  escapeToken: '\\' | '`';
  /**
   * Value of `# check=` up to the first space, when given (parsed by the checks module). Like
   * `syntax`, read as BuildKit reads it: from the first lines, after an optional `#!` line.
   */
  check?: string;
  /** Line of each directive that was present. */
  lines: Partial<Record<'syntax' | 'escape' | 'check', number>>;
  /** Each present directive's whole value (`docker/dockerfile:1 // opts`). */
  raw?: Partial<Record<'syntax' | 'escape' | 'check', string>>;
}

export interface ParseResult {
  /** Root node: `value` is empty and `children` holds one node per instruction. */
  ast: Node;
  directives: Directives;
  warnings: ParseWarning[];
}

export function newNode(partial: Partial<Node> = {}): Node {
  return {
    value: '',
    next: [],
    children: [],
    flags: [],
    attributes: {},
    original: '',
    heredocs: [],
    startLine: 0,
    endLine: 0,
    prevComment: [],
    ...partial,
  };
}
