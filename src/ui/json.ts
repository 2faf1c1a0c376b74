/**
 * `--progress=json` and `--progress=rawjson`: the build's events, one JSON object per line on
 * standard error, as they happen (schema: docs/progress-json.md). The only difference: `json` gives
 * a step's output as UTF-8 text, `rawjson` as base64 of the exact bytes.
 */
import type { BuildEvent } from '../build/events.js';

/** One line of the json stream: a {@link BuildEvent} with a step's output made JSON-safe. */
export type JsonBuildEvent =
  | Exclude<BuildEvent, { type: 'vertex-log' }>
  | { type: 'vertex-log'; id: number; stream: 'stdout' | 'stderr'; data: string; encoding?: 'base64'; time: number };

export function toJsonEvent(event: BuildEvent, raw = false): JsonBuildEvent {
  if (event.type !== 'vertex-log') return event;
  return raw
    ? { type: 'vertex-log', id: event.id, stream: event.stream, data: event.data.toString('base64'), encoding: 'base64', time: event.time }
    : { type: 'vertex-log', id: event.id, stream: event.stream, data: event.data.toString('utf8'), time: event.time };
}

export function jsonRenderer(write: (text: string) => void, raw = false): (event: BuildEvent) => void {
  return (event) => write(`${JSON.stringify(toJsonEvent(event, raw))}\n`);
}
