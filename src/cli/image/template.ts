/**
 * The part of Go's `text/template` that `--format` strings use in practice with docker's image
 * commands: field paths (`{{.Repository}}`, `{{.Config.Env}}`), pipelines (`{{.RepoTags | join ","}}`)
 * and docker's template functions (`json`, `join`, `index`, `upper`, `lower`, `title`, `split`,
 * `len`, `println`). Values print the way Go prints them (`[a b]` for lists, `map[k:v]` for
 * objects), and `json` marshals the way Go's encoder does (HTML characters escaped).
 */
import { UsageError } from '../../errors.js';
import { tabwrite } from './tabwriter.js';

type Arg =
  | { kind: 'field'; path: string[] }
  | { kind: 'string'; value: string }
  | { kind: 'number'; value: number }
  | { kind: 'bool'; value: boolean }
  | { kind: 'ident'; name: string }
  | { kind: 'pipeline'; pipeline: Command[] };
type Command = Arg[];
type Node = { text: string } | { pipeline: Command[] };

export interface Template {
  execute(data: unknown): string;
}

/** Go's `json.Marshal`: like JSON.stringify, with `<`, `>`, `&` and U+2028/2029 escaped. */
export function goJson(value: unknown, indent?: string): string {
  const s = JSON.stringify(value ?? null, null, indent);
  return s.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** How Go's template engine prints a value. */
export function goPrint(value: unknown): string {
  if (value === undefined) return '<no value>';
  if (value === null) return '<nil>';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return `[${value.map(goPrint).join(' ')}]`;
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    return `map[${Object.keys(obj).sort().map((k) => `${k}:${goPrint(obj[k])}`).join(' ')}]`;
  }
  return String(value);
}

function templateError(message: string): UsageError {
  return new UsageError(`template parsing error: template: ${message}`);
}

const FUNCTIONS: Record<string, (...args: unknown[]) => unknown> = {
  json: (v) => goJson(v),
  join: (list, sep) => {
    if (!Array.isArray(list)) throw templateError('join: expected a list');
    return list.map(goPrint).join(String(sep ?? ''));
  },
  split: (s, sep) => String(s).split(String(sep)),
  upper: (s) => goPrint(s).toUpperCase(),
  lower: (s) => goPrint(s).toLowerCase(),
  title: (s) => goPrint(s).replace(/\b\w/g, (c) => c.toUpperCase()),
  len: (v) => {
    if (typeof v === 'string' || Array.isArray(v)) return v.length;
    if (v && typeof v === 'object') return Object.keys(v).length;
    throw templateError('len of a value that has no length');
  },
  println: (...args) => `${args.map(goPrint).join(' ')}\n`,
  print: (...args) => args.map(goPrint).join(''),
  index: (v, ...keys) => {
    let cur = v;
    for (const k of keys) {
      if (cur === null || cur === undefined) return undefined;
      if (Array.isArray(cur)) {
        if (typeof k !== 'number' || k < 0 || k >= cur.length) throw templateError(`index out of range: ${goPrint(k)}`);
        cur = cur[k];
      } else if (typeof cur === 'object') {
        cur = (cur as Record<string, unknown>)[String(k)];
      } else {
        throw templateError(`can't index item of type ${typeof cur}`);
      }
    }
    return cur;
  },
};

function tokenize(src: string): string[] {
  const tokens: string[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '"' || c === '`') {
      let j = i + 1;
      while (j < src.length && src[j] !== c) j += c === '"' && src[j] === '\\' ? 2 : 1;
      if (j >= src.length) throw templateError('unterminated quoted string');
      tokens.push(src.slice(i, j + 1));
      i = j + 1;
    } else if (c === '|' || c === '(' || c === ')') {
      tokens.push(c);
      i++;
    } else {
      let j = i;
      while (j < src.length && !/[\s|()"`]/.test(src[j]!)) j++;
      tokens.push(src.slice(i, j));
      i = j;
    }
  }
  return tokens;
}

function parsePipeline(tokens: string[], pos: { i: number }, closing?: string): Command[] {
  const commands: Command[] = [];
  let cmd: Command = [];
  while (pos.i < tokens.length) {
    const t = tokens[pos.i++]!;
    if (t === closing) {
      if (cmd.length) commands.push(cmd);
      return commands;
    }
    if (t === '|') {
      if (!cmd.length) throw templateError('missing command before |');
      commands.push(cmd);
      cmd = [];
    } else if (t === '(') {
      cmd.push({ kind: 'pipeline', pipeline: parsePipeline(tokens, pos, ')') });
    } else if (t === ')') {
      throw templateError('unexpected )');
    } else {
      cmd.push(parseArg(t));
    }
  }
  if (closing) throw templateError(`missing ${closing}`);
  if (cmd.length) commands.push(cmd);
  if (!commands.length) throw templateError('missing value for command');
  return commands;
}

function parseArg(t: string): Arg {
  if (t.startsWith('"')) {
    try {
      return { kind: 'string', value: JSON.parse(t) as string };
    } catch {
      throw templateError(`bad string ${t}`);
    }
  }
  if (t.startsWith('`')) return { kind: 'string', value: t.slice(1, -1) };
  if (t === '.') return { kind: 'field', path: [] };
  if (t.startsWith('.')) {
    const path = t.slice(1).split('.');
    if (path.some((p) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(p))) throw templateError(`bad field ${t}`);
    return { kind: 'field', path };
  }
  if (/^-?\d+(\.\d+)?$/.test(t)) return { kind: 'number', value: Number(t) };
  if (t === 'true' || t === 'false') return { kind: 'bool', value: t === 'true' };
  if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(t)) {
    if (!(t in FUNCTIONS)) throw templateError(`function "${t}" not defined`);
    return { kind: 'ident', name: t };
  }
  throw templateError(`unexpected "${t}" in command`);
}

/** Parses a template; errors are UsageErrors naming what kiln does not understand. */
export function parseTemplate(src: string): Template {
  const nodes: Node[] = [];
  let i = 0;
  while (i < src.length) {
    const open = src.indexOf('{{', i);
    if (open < 0) {
      nodes.push({ text: src.slice(i) });
      break;
    }
    let text = src.slice(i, open);
    let start = open + 2;
    // `{{- ` and ` -}}` trim the whitespace beside the action, as in Go.
    if (src.startsWith('- ', start)) {
      text = text.replace(/\s+$/, '');
      start += 2;
    }
    const close = src.indexOf('}}', start);
    if (close < 0) throw templateError('unclosed action');
    let body = src.slice(start, close);
    let next = close + 2;
    if (body.endsWith(' -')) {
      body = body.slice(0, -2);
      while (next < src.length && /\s/.test(src[next]!)) next++;
    }
    if (text) nodes.push({ text });
    const trimmed = body.trim();
    if (/^(if|range|with|else|end|define|template|block)\b/.test(trimmed)) {
      throw templateError(`"${trimmed.split(/\s/)[0]}" actions are not supported by kiln's --format`);
    }
    nodes.push({ pipeline: parsePipeline(tokenize(body), { i: 0 }) });
    i = next;
  }
  return {
    execute(data: unknown): string {
      return nodes.map((n) => ('text' in n ? n.text : goPrint(runPipeline(n.pipeline, data)))).join('');
    },
  };
}

function runPipeline(pipeline: Command[], data: unknown): unknown {
  let value: unknown;
  let first = true;
  for (const cmd of pipeline) {
    const extra = first ? [] : [value];
    value = runCommand(cmd, data, extra);
    first = false;
  }
  return value;
}

function runCommand(cmd: Command, data: unknown, piped: unknown[]): unknown {
  const [head, ...rest] = cmd;
  if (head!.kind === 'ident') {
    const args = [...rest.map((a) => evalArg(a, data)), ...piped];
    return FUNCTIONS[head!.name]!(...args);
  }
  if (rest.length || piped.length) throw templateError(`can't give arguments to a non-function ${describeArg(head!)}`);
  return evalArg(head!, data);
}

function describeArg(a: Arg): string {
  return a.kind === 'field' ? `.${a.path.join('.')}` : a.kind;
}

function evalArg(a: Arg, data: unknown): unknown {
  switch (a.kind) {
    case 'string':
    case 'number':
    case 'bool':
      return a.value;
    case 'ident':
      return FUNCTIONS[a.name]!();
    case 'pipeline':
      return runPipeline(a.pipeline, data);
    case 'field': {
      let cur = data;
      for (const p of a.path) {
        if (cur === null || cur === undefined) return undefined;
        if (typeof cur !== 'object' || Array.isArray(cur)) throw templateError(`can't evaluate field ${p} in type ${Array.isArray(cur) ? 'list' : typeof cur}`);
        cur = (cur as Record<string, unknown>)[p];
      }
      return cur;
    }
  }
}

/**
 * Docker's list formatting: `''`/`table` (the default table), `table TEMPLATE` (aligned, with a
 * header made by rendering TEMPLATE over the column titles), `json` (one JSON object per line) or a
 * bare TEMPLATE (one line per row, no header). `\t` and `\n` written literally in the flag become
 * tab and newline, as docker does.
 */
export function renderList(
  format: string | undefined,
  rows: Array<Record<string, unknown>>,
  defaults: { table: string; headers: Record<string, string> },
): string {
  let fmt = (format ?? '').trim();
  if (fmt === '' || fmt === 'table') fmt = defaults.table;
  if (fmt === 'json') return rows.map((r) => `${goJson(sortKeys(r))}\n`).join('');
  const table = fmt.startsWith('table');
  if (table) fmt = fmt.slice('table'.length).trim();
  fmt = fmt.replace(/\\t/g, '\t').replace(/\\n/g, '\n');
  const tmpl = parseTemplate(fmt);
  const lines = rows.map((r) => tmpl.execute(r));
  if (!table) return lines.map((l) => `${l}\n`).join('');
  const header = tmpl.execute(defaults.headers);
  return `${tabwrite([header, ...lines].join('\n'))}\n`;
}

/** Go marshals maps with sorted keys; docker's `--format json` rows are maps. */
function sortKeys(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(obj).sort()) out[k] = obj[k];
  return out;
}
