/**
 * The Dockerfile parser: text -> BuildKit-shaped AST (see ast.ts), reproducing BuildKit's
 * frontend/dockerfile/parser line handling exactly, so that `dump()` of the result is
 * byte-identical to BuildKit's and instruction conversion sees the same arguments.
 *
 * Line handling, in BuildKit's order:
 * - The file is read as physical lines split on `\n` only; a line longer than 65535 bytes is an
 *   error (BuildKit's scanner limit). A UTF-8 BOM at the start is dropped.
 * - Each line that starts an instruction has its leading white space and trailing CR/LF removed;
 *   parser directives are read from the top (directives.ts); comment lines (first non-blank `#`)
 *   are collected as the next instruction's `prevComment` (a bare `#` clears them) and skipped;
 *   blank lines are skipped.
 * - A line whose last non-blank character is the escape token (and not an escaped escape token)
 *   continues on the next line: the token and the blanks after it are removed and the next line
 *   is appended verbatim (its leading white space kept). Comment lines inside a continuation are
 *   skipped; empty ones too, with a warning.
 * - The joined line is split into keyword, flags and arguments (line-parsers.ts).
 * - ADD/COPY/RUN (also as ONBUILD trigger; not in JSON form) whose line contains `<<` take their
 *   heredoc bodies from the following lines (heredoc.ts).
 *
 * Why the line handling is not dockerfile-ast's (each case is run through dockerfile-ast in
 * parser.test.ts, "dockerfile-ast divergences"):
 * - it treats a lone CR as a line break (BuildKit keeps it inside the line, where it separates words);
 * - it continues a line ending in an escaped escape token (`x\\`), BuildKit does not;
 * - when joining, it drops the blanks of a continuation line that holds nothing but blanks and the
 *   escape token (the `<TAB>\` paragraph separators of most docker-library Dockerfiles), which
 *   BuildKit keeps, so the RUN text differs;
 * - only space and tab count as white space before a keyword or `#` (BuildKit: Unicode white space),
 *   and the keyword ends only at space or tab (BuildKit: also \v \f \r);
 * - its directive and heredoc handling differ (see directives.ts, heredoc.ts).
 * Correcting its output would mean re-deriving every instruction boundary and joined line, i.e.
 * doing this pass anyway, so the pass is done here once, in linear time.
 */
import { newNode, type Directives, type Node, type ParseResult, type ParseWarning } from './ast.js';
import { DockerfileError } from '../../errors.js';
import { DirectiveParser, detectSyntax, escapeTokenFrom, parseDirective } from './directives.js';
import { isSpace, trimLeftSpace, trimNewline, trimSpace, utf8Length } from './gostr.js';
import { heredocsFromLine } from './heredoc.js';
import { canContainHeredoc, nodeFromLine } from './line-parsers.js';
import type { EscapeToken } from './words.js';

export interface ParseOptions {
  /** File name used in error messages (default `Dockerfile`). */
  file?: string;
}

/** bufio.Scanner's limit: a line (without its `\n`) may hold at most this many bytes. */
export const MAX_LINE_BYTES = 65535;
export const LINE_TOO_LONG = `dockerfile line greater than max allowed size of ${MAX_LINE_BYTES}`;

export const EMPTY_CONTINUATION_DETAIL = 'Empty continuation lines will become errors in a future release';
const EMPTY_CONTINUATION_URL = 'https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/';

/** Physical lines, each with its `\n`, stopping (with `tooLong` set) at an over-long line. */
class LineScanner {
  private pos = 0;
  /** The current line, including its `\n` when it has one. */
  line = '';
  tooLong = false;

  constructor(private readonly text: string) {}

  scan(): boolean {
    if (this.tooLong || this.pos >= this.text.length) return false;
    const nl = this.text.indexOf('\n', this.pos);
    const end = nl < 0 ? this.text.length : nl + 1;
    const contentLength = end - this.pos - (nl < 0 ? 0 : 1);
    // A UTF-16 unit is 1 to 3 UTF-8 bytes, so only long lines need the exact count.
    if (contentLength * 3 > MAX_LINE_BYTES) {
      const content = this.text.slice(this.pos, nl < 0 ? end : nl);
      if (contentLength > MAX_LINE_BYTES || utf8Length(content) > MAX_LINE_BYTES) {
        this.tooLong = true;
        return false;
      }
    }
    this.line = this.text.slice(this.pos, end);
    this.pos = end;
    return true;
  }
}

/** First non-white-space character is `#`. */
function isComment(line: string): boolean {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (!isSpace(c)) return c === 0x23;
  }
  return false;
}

/**
 * The text of a comment line as BuildKit records it: the line minus its first byte, trimmed. When
 * the `#` is indented that byte is the first indentation character, so `  # x` is recorded as
 * `# x`; a first character wider than one byte leaves invalid UTF-8 behind in Go, which is
 * represented as U+FFFD here.
 */
function commentText(line: string): string {
  const cp = line.codePointAt(0)!;
  if (cp < 0x80) return trimSpace(line.slice(1));
  const width = cp > 0xffff ? 2 : 1;
  const bytes = cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  return trimSpace('\uFFFD'.repeat(bytes - 1) + line.slice(width));
}

/**
 * BuildKit's line-continuation test (`([^E])E[ \t]*$|^E[ \t]*$` for escape token E): returns the
 * line without the token and trailing blanks, and whether the instruction ends on this line.
 */
export function trimContinuation(line: string, escapeToken: EscapeToken): [string, boolean] {
  let end = line.length;
  while (end > 0) {
    const c = line.charCodeAt(end - 1);
    if (c !== 0x20 && c !== 0x09) break;
    end--;
  }
  if (end === 0 || line[end - 1] !== escapeToken) return [line, true];
  if (end === 1) return ['', false];
  // An escaped escape token at the end is literal text, not a continuation.
  if (line[end - 2] === escapeToken) return [line, true];
  return [line.slice(0, end - 1), false];
}

function fail(err: unknown, file: string, line: number, endLine?: number): never {
  const location = { file, line: Math.max(1, line), ...(endLine !== undefined && endLine > line ? { endLine } : {}) };
  if (err instanceof DockerfileError) throw err.location ? err : err.at(location);
  throw err;
}

/**
 * Parses a Dockerfile. Throws DockerfileError (with the line) when BuildKit's parser would fail:
 * no instructions, a repeated or invalid directive, `ENV k` without value, `k=v` lists with a word
 * lacking `=`, a JSON array with non-strings, an unterminated heredoc, a line over 65535 bytes.
 * Argument counts and instruction names are not checked here (the instruction layer does that).
 *
 * Error lines are the real lines: for a bad directive and an over-long line BuildKit reports the
 * line before (its counter is not advanced yet); instruction errors cover the instruction's first
 * to last line, as in BuildKit.
 */
export function parse(text: string, options: ParseOptions = {}): ParseResult {
  const file = options.file ?? 'Dockerfile';
  const scanner = new LineScanner(text);
  const directiveParser = new DirectiveParser();
  const directives: Directives = { escapeToken: '\\', lines: {} };
  const warnings: ParseWarning[] = [];
  const root = newNode({ startLine: -1 });
  let escapeToken: EscapeToken = '\\';
  let comments: string[] = [];
  let currentLine = 0;

  while (scanner.scan()) {
    let raw = scanner.line;
    if (currentLine === 0 && raw.charCodeAt(0) === 0xfeff) raw = raw.slice(1);
    if (isComment(raw)) {
      const comment = commentText(raw);
      if (comment === '') comments = [];
      else comments.push(comment);
    }
    let token = trimLeftSpace(trimNewline(raw));
    try {
      const directive = directiveParser.parseLine(token);
      if (directive) {
        if (directive.name === 'escape') {
          escapeToken = escapeTokenFrom(directive.value);
          directives.escapeToken = escapeToken;
          directives.lines.escape = directive.line;
          directives.raw = { ...directives.raw, escape: directive.value };
        }
        // The directive line was collected as a comment above; it is not one.
        comments.pop();
      }
    } catch (err) {
      fail(err, file, currentLine + 1);
    }
    if (isComment(token)) token = '';
    currentLine++;

    const startLine = currentLine;
    let [part, endOfInstruction] = trimContinuation(token, escapeToken);
    if (endOfInstruction && part.length === 0) continue;
    const parts = [part];
    let hasEmptyContinuationLine = false;
    while (!endOfInstruction && scanner.scan()) {
      const next = scanner.line;
      currentLine++;
      if (isComment(next)) continue;
      const content = trimNewline(next);
      if (trimLeftSpace(content).length === 0) {
        hasEmptyContinuationLine = true;
        continue;
      }
      [part, endOfInstruction] = trimContinuation(content, escapeToken);
      parts.push(part);
    }
    const line = parts.join('');

    if (hasEmptyContinuationLine) {
      warnings.push({
        short: `Empty continuation line found in: ${line}`,
        detail: EMPTY_CONTINUATION_DETAIL,
        url: EMPTY_CONTINUATION_URL,
        startLine: currentLine,
        endLine: currentLine,
      });
    }

    let child: Node;
    try {
      child = nodeFromLine(line, escapeToken, comments);
      if (canContainHeredoc(child) && line.includes('<<')) {
        for (const heredoc of heredocsFromLine(line)) {
          const body: string[] = [];
          let terminated = false;
          while (scanner.scan()) {
            const bodyLine = scanner.line;
            currentLine++;
            let candidate = trimNewline(bodyLine);
            if (heredoc.chomp) candidate = candidate.replace(/^\t+/, '');
            if (candidate === heredoc.name) {
              terminated = true;
              break;
            }
            body.push(bodyLine);
          }
          if (!terminated) throw new DockerfileError('unterminated heredoc');
          heredoc.content = body.join('');
          child.heredocs.push(heredoc);
        }
      }
    } catch (err) {
      fail(err, file, startLine, currentLine);
    }

    child.startLine = startLine;
    child.endLine = currentLine;
    if (root.startLine < 0) root.startLine = startLine;
    root.endLine = currentLine;
    root.children.push(child);
    comments = [];
  }

  if (root.startLine < 0) fail(new DockerfileError('file with no instructions'), file, currentLine);
  if (scanner.tooLong) fail(new DockerfileError(LINE_TOO_LONG), file, currentLine + 1);

  // `syntax` and `check` are not the parser's business in BuildKit; its frontend reads them with
  // DetectSyntax / ParseDirective, which (unlike the loop above) skip a leading `#!` line.
  const syntax = detectSyntax(text);
  if (syntax) {
    directives.syntax = syntax.ref;
    directives.lines.syntax = syntax.line;
    directives.raw = { ...directives.raw, syntax: syntax.cmdline };
  }
  const check = parseDirective('check', text);
  if (check) {
    directives.check = check.ref;
    directives.lines.check = check.line;
    directives.raw = { ...directives.raw, check: check.cmdline };
  }
  return { ast: root, directives, warnings };
}
