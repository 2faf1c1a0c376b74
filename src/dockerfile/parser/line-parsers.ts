/**
 * Turning one joined instruction line into a node: keyword, flags, and the argument list each
 * instruction uses (BuildKit's dispatch table of "line parsers"). Errors are DockerfileErrors
 * without a location; the caller adds the instruction's lines.
 *
 * dockerfile-ast's argument model is not used here: its flags split quoted values (`--a="b c"`
 * gives the flag `--a="b` and an argument `c"`), keep `--` as a flag instead of ending the flags
 * there, and are not recognized on CMD (BuildKit takes flags on every instruction); its ENV/LABEL
 * properties hold unquoted values where BuildKit's nodes keep them as written; and it splits the
 * arguments of every instruction on blanks, while BuildKit builds a different node list per
 * instruction (one string for RUN, name/value triples for ENV, JSON-or-words for COPY, ...), which
 * is what the instruction layer and the dump rely on.
 */
import { newNode, type Node } from './ast.js';
import { DockerfileError } from '../../errors.js';
import { goQuote, goToLower, isSpaceByte, splitBlanks, splitBlanksOnce } from './gostr.js';
import { parseJSONArray } from './json.js';
import { parseWords, splitCommand, type EscapeToken } from './words.js';

interface Parsed {
  next: Node[];
  json?: boolean;
}

type LineParser = (rest: string, escapeToken: EscapeToken) => Parsed;

const arg = (value: string): Node => newNode({ value });

/** Unknown instructions parse, with one empty argument node (the instruction layer rejects them). */
const parseIgnore: LineParser = () => ({ next: [arg('')] });

/** MAINTAINER, USER, WORKDIR, STOPSIGNAL: the whole rest as one argument. */
const parseString: LineParser = (rest) => ({ next: rest === '' ? [] : [arg(rest)] });

/** FROM, EXPOSE: the rest split on blanks. */
const parseStringsWhitespaceDelimited: LineParser = (rest) => ({
  next: rest === '' ? [] : splitBlanks(rest).map(arg),
});

/** RUN, CMD, ENTRYPOINT, SHELL: a JSON array of strings, else the whole rest as one argument. */
const parseMaybeJSON: LineParser = (rest) => {
  if (rest === '') return { next: [] };
  const json = parseJSONArray(rest);
  if (json) return { next: json.map(arg), json: true };
  return { next: [arg(rest)] };
};

/** ADD, COPY, VOLUME: a JSON array of strings, else the rest split on blanks. */
const parseMaybeJSONToList: LineParser = (rest, esc) => {
  const json = parseJSONArray(rest);
  if (json) return { next: json.map(arg), json: true };
  return parseStringsWhitespaceDelimited(rest, esc);
};

/**
 * BuildKit's parseNameVal (ENV, LABEL): `k=v ...` gives `k v =` per pair (values as written,
 * quotes kept); the legacy `k v w` form gives `k "v w" ""`.
 */
export function parseNameVal(rest: string, key: string, escapeToken: EscapeToken = '\\'): Node[] {
  const words = parseWords(rest, escapeToken);
  if (words.length === 0) return [];
  if (!words[0]!.includes('=')) {
    const parts = splitBlanksOnce(rest);
    if (parts.length < 2) throw new DockerfileError(`${key} must have two arguments`);
    return [arg(parts[0]), arg(parts[1]!), arg('')];
  }
  const out: Node[] = [];
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq < 0) {
      throw new DockerfileError(`Syntax error - can't find = in ${goQuote(word)}. Must be of the form: name=value`);
    }
    out.push(arg(word.slice(0, eq)), arg(word.slice(eq + 1)), arg('='));
  }
  return out;
}

/** ARG: one argument per word (`foo=bar` stays one word). */
const parseNameOrNameVal: LineParser = (rest, esc) => ({ next: parseWords(rest, esc).map(arg) });

/**
 * HEALTHCHECK: the first word (`CMD`, `NONE`, anything) and then the remainder parsed like CMD.
 * BuildKit finds the end of that word byte by byte, so bytes 0x85/0xA0 inside a multi-byte
 * character end it too; that split is reproduced (the broken character becomes U+FFFD).
 */
const parseHealthConfig: LineParser = (rest, esc) => {
  const { typ, after } = splitHealth(rest);
  if (typ === '') return { next: [] };
  const cmd = parseMaybeJSON(after, esc);
  return { next: [arg(typ), ...cmd.next], ...(cmd.json ? { json: true } : {}) };
};

/** The first word and the text after the blanks that follow it, split on bytes like BuildKit. */
function splitHealth(rest: string): { typ: string; after: string } {
  if (!/[^\x00-\x7f]/.test(rest)) {
    let sep = 0;
    while (sep < rest.length && !isSpaceByte(rest.charCodeAt(sep))) sep++;
    let next = sep;
    while (next < rest.length && isSpaceByte(rest.charCodeAt(next))) next++;
    return { typ: rest.slice(0, sep), after: rest.slice(next) };
  }
  const bytes = Buffer.from(rest, 'utf8');
  let sep = 0;
  while (sep < bytes.length && !isSpaceByte(bytes[sep]!)) sep++;
  let next = sep;
  while (next < bytes.length && isSpaceByte(bytes[next]!)) next++;
  return { typ: bytes.subarray(0, sep).toString('utf8'), after: bytes.subarray(next).toString('utf8') };
}

const DISPATCH: Readonly<Record<string, LineParser>> = {
  add: parseMaybeJSONToList,
  arg: parseNameOrNameVal,
  cmd: parseMaybeJSON,
  copy: parseMaybeJSONToList,
  entrypoint: parseMaybeJSON,
  env: (rest, esc) => ({ next: parseNameVal(rest, 'ENV', esc) }),
  expose: parseStringsWhitespaceDelimited,
  from: parseStringsWhitespaceDelimited,
  healthcheck: parseHealthConfig,
  label: (rest, esc) => ({ next: parseNameVal(rest, 'LABEL', esc) }),
  maintainer: parseString,
  run: parseMaybeJSON,
  shell: parseMaybeJSON,
  stopsignal: parseString,
  user: parseString,
  volume: parseMaybeJSONToList,
  workdir: parseString,
};

/**
 * BuildKit's newNodeFromLine: the node for one joined instruction line. ONBUILD's trigger is parsed
 * the same way into the single child of its argument node; nested ONBUILDs are handled in a loop
 * rather than by recursion so that a pathological line cannot overflow the stack.
 */
export function nodeFromLine(line: string, escapeToken: EscapeToken, prevComment: string[] = []): Node {
  const top = newNode({ original: line, prevComment });
  let node = top;
  let text = line;
  for (;;) {
    const { cmd, flags, args } = splitCommand(text, escapeToken);
    node.value = cmd;
    node.flags = flags;
    const kind = goToLower(cmd);
    if (kind === 'onbuild') {
      if (args === '') return top;
      const trigger = newNode({ original: args });
      node.next = [newNode({ children: [trigger] })];
      node = trigger;
      text = args;
      continue;
    }
    const parsed = Object.prototype.hasOwnProperty.call(DISPATCH, kind)
      ? DISPATCH[kind]!(args, escapeToken)
      : parseIgnore(args, escapeToken);
    node.next = parsed.next;
    if (parsed.json) node.attributes = { json: true };
    return top;
  }
}

const HEREDOC_KEYWORDS: ReadonlySet<string> = new Set(['add', 'copy', 'run']);

/** Whether heredoc bodies follow this instruction: ADD/COPY/RUN (also as ONBUILD trigger), not in JSON form. */
export function canContainHeredoc(node: Node): boolean {
  let n = node;
  if (goToLower(n.value) === 'onbuild' && n.next[0] && n.next[0].children.length > 0) {
    n = n.next[0].children[0]!;
  }
  return HEREDOC_KEYWORDS.has(goToLower(n.value)) && !n.attributes.json;
}
