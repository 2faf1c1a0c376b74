/**
 * Parser directives (`# syntax=`, `# escape=`, `# check=`), read the way BuildKit reads them:
 * only a run of directive lines at the very top counts; the first line that is not a directive of a
 * known name (a blank line, an ordinary comment, `# key=value` with an unknown key, an instruction)
 * ends the run for good; names are case-insensitive; a repeated directive is an error.
 *
 * dockerfile-ast's directive scanner is not used: it keeps scanning past unknown names (so
 * `# key=v` followed by `# escape=\`` would switch the escape token, which BuildKit does not), cuts
 * the value at the first blank (`# syntax=img // opts` loses `// opts`), accepts any characters in
 * the name, does not know `check`, silently ignores an invalid `# escape=` value and never reports
 * duplicates. See parser.test.ts
 * ("dockerfile-ast divergences").
 */
import { DockerfileError } from '../../errors.js';
import { goToLower, trimLeftSpace, utf8Length } from './gostr.js';
import { parseJSONValue } from './json.js';

export type DirectiveName = 'syntax' | 'escape' | 'check';

export interface Directive {
  name: DirectiveName;
  /** The value with surrounding blanks removed (e.g. `docker/dockerfile:1 // opts`). */
  value: string;
  /** 1-based line (counting a skipped shebang line, as BuildKit does). */
  line: number;
}

const KNOWN: ReadonlySet<string> = new Set(['syntax', 'escape', 'check']);

/** The `\s` class of Go's RE2 (`[\t\n\f\r ]`): narrower than Unicode white space, and without \v. */
function isReSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d;
}

function isAsciiLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/**
 * Matches `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` (Go RE2 semantics: `.` is any character but
 * `\n`) in linear time; the lazy `(.+?)\s*$` would be quadratic on a long run of blanks in a
 * backtracking engine.
 */
export function matchDirectiveLine(s: string): { name: string; value: string } | undefined {
  if (s.length === 0 || !isAsciiLetter(s.charCodeAt(0))) return undefined;
  let i = 1;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (!isAsciiLetter(c) && !(c >= 0x30 && c <= 0x39)) break;
    i++;
  }
  const name = s.slice(0, i);
  while (i < s.length && isReSpace(s.charCodeAt(i))) i++;
  if (s.charCodeAt(i) !== 0x3d /* = */) return undefined;
  const rest = s.slice(i + 1);
  let k = 0;
  while (k < rest.length && isReSpace(rest.charCodeAt(k))) k++;
  if (k < rest.length) {
    let end = rest.length;
    while (end > k && isReSpace(rest.charCodeAt(end - 1))) end--;
    const value = rest.slice(k, end);
    // `.` cannot cross a newline, and whatever follows the value may only be blanks.
    return value.includes('\n') ? undefined : { name, value };
  }
  // Only blanks after `=`: the greedy `\s*` gives back one character so that `.+?` can match it.
  for (let c = k - 1; c >= 0; c--) {
    if (rest.charCodeAt(c) !== 0x0a) return { name, value: rest[c]! };
  }
  return undefined;
}

/**
 * BuildKit's DirectiveParser: feed it lines in order; it returns the directive on each line while
 * the run of directives at the top lasts, then nothing.
 */
export class DirectiveParser {
  private line: number;
  private done = false;
  private readonly seen = new Set<string>();
  private readonly prefix: string;

  /** `prefix` is the comment marker (`#`, or `//` for syntax detection); `line` the lines already skipped. */
  constructor(options: { prefix?: string; line?: number } = {}) {
    this.prefix = options.prefix ?? '#';
    this.line = options.line ?? 0;
  }

  /** Throws DockerfileError (without location) for a repeated directive. */
  parseLine(text: string): Directive | undefined {
    this.line++;
    if (this.done) return undefined;
    if (!text.startsWith(this.prefix)) {
      this.done = true;
      return undefined;
    }
    const m = matchDirectiveLine(trimLeftSpace(text.slice(this.prefix.length)));
    const name = m ? goToLower(m.name) : '';
    if (!m || !KNOWN.has(name)) {
      this.done = true;
      return undefined;
    }
    if (this.seen.has(name)) throw new DockerfileError(`only one ${name} parser directive can be used`);
    this.seen.add(name);
    return { name: name as DirectiveName, value: m.value, line: this.line };
  }

  get finished(): boolean {
    return this.done;
  }

  /**
   * Reads the directives at the top of `text` (lines split like Go's bufio.ScanLines: one trailing
   * CR dropped). Throws on a repeated directive.
   */
  parseAll(text: string): Directive[] {
    const { directives, error } = this.parseAllPartial(text);
    if (error) throw error;
    return directives;
  }

  /** Like parseAll, but a repeated directive ends the scan and is returned with those read before it. */
  parseAllPartial(text: string): { directives: Directive[]; error?: DockerfileError } {
    const directives: Directive[] = [];
    for (const line of scanLines(text)) {
      if (this.done) break;
      try {
        const d = this.parseLine(line);
        if (d) directives.push(d);
      } catch (err) {
        if (err instanceof DockerfileError) return { directives, error: err };
        throw err;
      }
    }
    return { directives };
  }
}

/** bufio.Scanner + ScanLines over `text`: stops (silently) at a line longer than 65535 bytes. */
function* scanLines(text: string): Generator<string> {
  let pos = 0;
  while (pos < text.length) {
    const nl = text.indexOf('\n', pos);
    const end = nl < 0 ? text.length : nl;
    let line = text.slice(pos, end);
    if (line.length > 21845 && utf8Length(line) > 65535) return;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    yield line;
    pos = nl < 0 ? text.length : nl + 1;
  }
}

function discardBOM(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

export interface DetectedDirective {
  /** The value up to the first space (`docker/dockerfile:1`), which is what BuildKit acts on. */
  ref: string;
  /** The whole value (`docker/dockerfile:1 // opts`). */
  cmdline: string;
  /** Line of the directive (for the JSON form: 1 after a shebang, else 0, as BuildKit reports it). */
  line: number;
}

function fromParser(key: string, text: string, parser: DirectiveParser): DetectedDirective | undefined {
  // A repeated directive ends the scan; the ones read before it still count.
  for (const d of parser.parseAllPartial(text).directives) {
    if (d.name === key) {
      const space = d.value.indexOf(' ');
      return { ref: space < 0 ? d.value : d.value.slice(0, space), cmdline: d.value, line: d.line };
    }
  }
  return undefined;
}

function directive(key: DirectiveName, input: string, anyFormat: boolean): DetectedDirective | undefined {
  let text = discardBOM(input);
  let line = 0;
  const nl = text.indexOf('\n');
  const first = nl < 0 ? text : text.slice(0, nl);
  if (first.startsWith('#!')) {
    text = nl < 0 ? '' : text.slice(nl + 1);
    line = 1;
  }
  const hash = fromParser(key, text, new DirectiveParser({ line }));
  if (hash || !anyFormat) return hash;
  const slashes = fromParser(key, text, new DirectiveParser({ prefix: '//', line }));
  if (slashes) return slashes;
  const json = parseJSONValue(text);
  if (json !== undefined && json !== null && typeof json === 'object' && !Array.isArray(json)) {
    const v = (json as Record<string, unknown>)[key];
    if (Object.prototype.hasOwnProperty.call(json, key) && typeof v === 'string') {
      return { ref: v, cmdline: v, line };
    }
  }
  return undefined;
}

/**
 * BuildKit's DetectSyntax: the `syntax` directive in `#` form, else `//` form, else a JSON object
 * `{"syntax": "..."}`; a leading BOM and a `#!` shebang line are skipped.
 */
export function detectSyntax(text: string): DetectedDirective | undefined {
  return directive('syntax', text, true);
}

/** BuildKit's ParseDirective: a directive in `#` form only (used for `# check=`). */
export function parseDirective(key: DirectiveName, text: string): DetectedDirective | undefined {
  return directive(key, text, false);
}

/** The escape token a `# escape=` value selects; throws for anything but backslash or backtick. */
export function escapeTokenFrom(value: string): '\\' | '`' {
  if (value === '`' || value === '\\') return value;
  throw new DockerfileError(`invalid escape token '${value}' does not match \` or \\`);
}
