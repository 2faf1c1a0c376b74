import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers/copy-fixtures.js';
import { createExtract } from '../../oci/layer/tar.js';
import { DirFS } from '../fsview/index.js';
import { copyLayer } from './index.js';

const DIRS = 20;
const PER_DIR = 1000;

let base: string;

beforeAll(async () => {
  base = await tempDir('kiln-copy-perf-');
  for (let d = 0; d < DIRS; d++) {
    const dir = join(base, 'ctx', `d${d}`);
    await fsp.mkdir(dir, { recursive: true });
    const writes: Promise<void>[] = [];
    for (let f = 0; f < PER_DIR; f++) writes.push(fsp.writeFile(join(dir, `f${f}.txt`), `file ${d}/${f}\n`));
    await Promise.all(writes);
  }
}, 120_000);

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

describe('large copies', () => {
  it('streams a copy of 20,000 small files', async () => {
    const started = Date.now();
    const { stream, plan } = await copyLayer({ source: new DirFS(join(base, 'ctx')), sources: ['.'], dest: '/app/' });
    expect(plan.entries.length).toBe(1 + DIRS + DIRS * PER_DIR);
    // Count entries as they stream by, without keeping any content.
    const ex = createExtract();
    stream.pipe(ex as unknown as NodeJS.WritableStream);
    let files = 0;
    let bytes = 0;
    for await (const entry of ex as AsyncIterable<AsyncIterable<Buffer> & { header: { type?: string | null } }>) {
      if (entry.header.type === 'file') files++;
      for await (const chunk of entry) bytes += chunk.length;
    }
    expect(files).toBe(DIRS * PER_DIR);
    expect(bytes).toBeGreaterThan(DIRS * PER_DIR * 8);
    expect(Date.now() - started).toBeLessThan(60_000);
  }, 120_000);
});
