import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers/copy-fixtures.js';
import { DirFS } from '../fsview/index.js';
import { ContextFS } from './context-fs.js';
import { copyLayer } from './index.js';

let ctx: string;

beforeAll(async () => {
  ctx = await tempDir('kiln-context-fs-');
  await fsp.mkdir(join(ctx, 'app/lib/deep'), { recursive: true });
  await fsp.writeFile(join(ctx, 'app/b.txt'), 'b');
  await fsp.writeFile(join(ctx, 'app/A.txt'), 'a');
  await fsp.writeFile(join(ctx, 'app/lib/deep/x'), 'x');
  await fsp.symlink('lib', join(ctx, 'app/link'));
  await fsp.symlink('../../outside', join(ctx, 'app/escape'));
  await fsp.writeFile(join(ctx, 'ignored.log'), 'log');
});

afterAll(async () => {
  await fsp.rm(ctx, { recursive: true, force: true });
});

async function layerOf(source: DirFS): Promise<Buffer> {
  const { stream } = await copyLayer({ source, sources: ['.'], dest: '/dst/', options: { sourceDateEpoch: 0 } });
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('the context as a COPY source', () => {
  it('lists directories as DirFS does, through symlinks, owned by root', async () => {
    const fast = new ContextFS(ctx, []);
    const general = new DirFS(ctx);
    for (const dir of ['/', '/app', '/app/link', '/app/lib/deep']) {
      expect(await fast.entries(dir)).toEqual(await general.entries(dir));
    }
    expect((await fast.entries('/app')).map((e) => `${e.name}:${e.uid}:${e.gid}`)).toEqual(['A.txt:0:0', 'b.txt:0:0', 'escape:0:0', 'lib:0:0', 'link:0:0']);
    await expect(fast.entries('/app/b.txt')).rejects.toThrow(/not a directory/);
    await expect(fast.entries('/nope')).rejects.toThrow(/no such file/);
  });

  it('gives the same layer as DirFS, with and without ignore rules', async () => {
    expect(await layerOf(new ContextFS(ctx, []))).toEqual(await layerOf(new DirFS(ctx)));
    const ignoring = await layerOf(new ContextFS(ctx, ['*.log']));
    expect(ignoring).toEqual(await layerOf(new DirFS(ctx, { ignore: { excludePatterns: ['*.log'] } })));
    expect(ignoring.includes(Buffer.from('ignored.log'))).toBe(false);
  });
});
