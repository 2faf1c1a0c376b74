/** `--filter key=value` for the image commands, with docker's keys and matching rules. */
import { UsageError } from '../../errors.js';

export type Filters = Map<string, string[]>;

/** Parses repeated `--filter` values; `allowed` are the keys the command understands. */
export function parseFilters(values: string[], allowed: string[]): Filters {
  const filters: Filters = new Map();
  for (const v of values) {
    const eq = v.indexOf('=');
    if (eq <= 0) throw new UsageError(`bad format of filter (expected name=value): ${v}`);
    const key = v.slice(0, eq).trim().toLowerCase();
    const value = v.slice(eq + 1);
    if (!allowed.includes(key)) throw new UsageError(`invalid filter '${key}'`);
    filters.set(key, [...(filters.get(key) ?? []), value]);
  }
  return filters;
}

/** `dangling=true|false` (docker also accepts 1 and 0). */
export function danglingFilter(filters: Filters): boolean | undefined {
  const values = filters.get('dangling');
  if (!values?.length) return undefined;
  const v = values[values.length - 1]!.toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new UsageError(`invalid filter 'dangling=${values[values.length - 1]}'`);
}

/** `label=KEY` or `label=KEY=VALUE`: every given label must be present (with that value). */
export function labelsMatch(filters: Filters, labels: Record<string, string> | undefined): boolean {
  for (const want of filters.get('label') ?? []) {
    const eq = want.indexOf('=');
    const key = eq < 0 ? want : want.slice(0, eq);
    if (!labels || !(key in labels)) return false;
    if (eq >= 0 && labels[key] !== want.slice(eq + 1)) return false;
  }
  return true;
}

/**
 * Go's `path.Match`: `*` is any run of characters other than `/`, `?` one such character, `[...]`
 * a class (`[^...]` negated, ranges allowed), `\` escapes. docker matches reference filters with it.
 */
export function pathMatch(pattern: string, name: string): boolean {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\' && i + 1 < pattern.length) re += escapeRe(pattern[++i]!);
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) throw new UsageError(`syntax error in pattern: ${pattern}`);
      let cls = pattern.slice(i + 1, end);
      const negate = cls.startsWith('^');
      if (negate) cls = cls.slice(1);
      re += `[${negate ? '^/' : ''}${cls.replace(/[\]\\]/g, '\\$&')}]`;
      i = end;
    } else re += escapeRe(c);
  }
  return new RegExp(`${re}$`).test(name);
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
