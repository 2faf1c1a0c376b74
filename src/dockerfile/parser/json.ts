/**
 * JSON-array arguments (exec form), decided exactly as BuildKit's `parseJSON` with Go's
 * encoding/json: text that is not a JSON array falls back to shell form; a valid array holding
 * anything but strings is an error.
 *
 * JSON.parse accepts the same grammar as encoding/json, with three differences corrected here:
 * - a number beyond float64 range becomes Infinity in JavaScript but is a decode error in Go
 *   (so the text is "not JSON" and falls back to shell form instead of failing as non-strings);
 * - Go refuses nesting deeper than 10000 levels (again: not JSON);
 * - Go decodes an unpaired `\uD800` escape to U+FFFD, JavaScript keeps the lone surrogate.
 */
import { DockerfileError } from '../../errors.js';
import { toWellFormed, trimLeftSpace } from './gostr.js';

export const NOT_STRING_ARRAY = 'when using JSON array syntax, arrays must be comprised of strings only';

const MAX_DEPTH = 10000;

/** Deepest nesting of arrays/objects in syntactically valid JSON text. */
function nestingDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) max = Math.max(max, ++depth);
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** True when the decoded value holds a number encoding/json could not store in a float64. */
function hasOverflow(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length) {
    const v = stack.pop();
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return true;
    } else if (Array.isArray(v)) {
      for (const item of v) stack.push(item);
    } else if (v !== null && typeof v === 'object') {
      for (const item of Object.values(v)) stack.push(item);
    }
  }
  return false;
}

/**
 * Decodes `text` as one JSON value the way Go's json.Unmarshal into `any` would succeed or fail;
 * `undefined` when Go would report an error.
 */
export function parseJSONValue(text: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value === 'object' && value !== null) {
    if (hasOverflow(value) || nestingDepth(text) > MAX_DEPTH) return undefined;
  } else if (typeof value === 'number' && !Number.isFinite(value)) {
    return undefined;
  }
  return value;
}

/**
 * BuildKit's parseJSON: `rest` (leading white space ignored) as a JSON array of strings.
 * Returns `undefined` when it is not a JSON array (the caller falls back to shell form) and throws
 * DockerfileError when it is an array with a non-string element.
 */
export function parseJSONArray(rest: string): string[] | undefined {
  const text = trimLeftSpace(rest);
  if (!text.startsWith('[')) return undefined;
  const value = parseJSONValue(text);
  if (!Array.isArray(value)) return undefined;
  const out: string[] = [];
  for (const item of value) {
    if (typeof item !== 'string') throw new DockerfileError(NOT_STRING_ARRAY);
    out.push(toWellFormed(item));
  }
  return out;
}
