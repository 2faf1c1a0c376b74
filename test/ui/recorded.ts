/** Event streams recorded from real builds (`kiln build --progress=rawjson`), read back as BuildEvents. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BuildEvent } from '../../src/build/events.js';

export function recordedStream(name: string): BuildEvent[] {
  const text = readFileSync(join(import.meta.dirname, 'recorded', `${name}.jsonl`), 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const e = JSON.parse(line) as Record<string, unknown>;
      if (e.type === 'vertex-log') return { ...e, data: Buffer.from(e.data as string, e.encoding === 'base64' ? 'base64' : 'utf8') } as BuildEvent;
      return e as unknown as BuildEvent;
    });
}
