/**
 * `kiln build --explain` names the cause of every cache miss, comparing with the previous build of
 * the same target in another process: an ARG, one changed file, a base image re-tagged to another
 * digest, --no-cache, a first build.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunKey } from '../../src/build/cache-key.js';
import { explainMiss } from '../../src/build/explain.js';
import type { BuildRecord } from '../../src/build/history/record.js';
import { busyboxStore, busyboxTar, type BusyboxStore } from '../helpers/busybox.js';
import { copyFixture, kilnRun } from '../helpers/build.js';
import { kilnAt } from '../helpers/store.js';

let base: BusyboxStore;
let ctx: string;

/** Imports the busybox rootfs as `kiln-test/base:1`; a different epoch gives a different digest. */
async function tagBase(epoch: number): Promise<void> {
  const r = kilnAt(base.root, ['import', await busyboxTar(), 'kiln-test/base:1'], { env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) } });
  if (r.status !== 0) throw new Error(r.stderr);
}

/** Builds with --explain; answers the `cache miss:` reasons by step name. */
async function explain(...args: string[]): Promise<Map<string, string[]>> {
  const r = await kilnRun(base.root, ['build', '--progress', 'plain', '--explain', '--build-arg', 'NAP=0', '--build-arg', 'BASE=kiln-test/base:1', ...args, ctx]);
  if (r.status !== 0) throw new Error(r.stderr);
  const names = new Map<string, string>();
  const out = new Map<string, string[]>();
  for (const line of r.stderr.split('\n')) {
    const start = /^#(\d+) (\[.*)$/.exec(line);
    if (start) names.set(start[1]!, start[2]!);
    const miss = /^#(\d+) cache miss: (.*)$/.exec(line);
    if (miss) {
      const name = names.get(miss[1]!)!;
      out.set(name, [...(out.get(name) ?? []), miss[2]!]);
    }
  }
  return out;
}

function reasonsOf(misses: Map<string, string[]>, prefix: string): string[] | undefined {
  for (const [name, r] of misses) if (name.startsWith(prefix)) return r;
  return undefined;
}

beforeAll(async () => {
  base = await busyboxStore();
  ctx = await copyFixture('progress', join(base.dir, 'progress'));
  await tagBase(1_000_000);
}, 120_000);
afterAll(async () => {
  await base?.cleanup();
});

describe('kiln build --explain', () => {
  it('a first build: every step is new', async () => {
    const misses = await explain();
    expect(misses.size).toBe(6);
    for (const r of misses.values()) expect(r).toEqual(['first build of this step']);
  });

  it('an ARG changed: the step using it says which and how, the steps after it name their parent', async () => {
    const misses = await explain('--build-arg', 'VERSION=1.1');
    expect(reasonsOf(misses, '[left 2/2] RUN')).toEqual(['ARG VERSION changed (1.0 -> 1.1)']);
    expect(reasonsOf(misses, '[stage-2 2/4] COPY --from=left')).toEqual(['COPY --from=left /left.txt /left.txt: source stage changed']);
    // The right stage does not use VERSION: cached, nothing to explain.
    expect(reasonsOf(misses, '[right')).toBeUndefined();
  });

  it('one file changed: the COPY names it', async () => {
    writeFileSync(join(ctx, 'src/b.ts'), 'export const b = 3;\n');
    const misses = await explain('--build-arg', 'VERSION=1.1');
    expect(reasonsOf(misses, '[right 2/3] COPY')).toEqual(['COPY src/ /src/: 1 file changed: src/b.ts']);
    expect(reasonsOf(misses, '[right 3/3] RUN')).toEqual(['previous step changed: [right 2/3] COPY src/ /src/']);
    expect(reasonsOf(misses, '[left')).toBeUndefined();
  });

  it('three files changed, one added: the COPY lists them all', async () => {
    writeFileSync(join(ctx, 'src/a.ts'), 'export const a = 5;\n');
    writeFileSync(join(ctx, 'src/package.json'), '{"name":"demo","version":"2"}\n');
    writeFileSync(join(ctx, 'src/c.ts'), 'export const c = 1;\n');
    const misses = await explain('--build-arg', 'VERSION=1.1');
    expect(reasonsOf(misses, '[right 2/3] COPY')).toEqual(['COPY src/ /src/: 3 files changed: src/a.ts, src/c.ts, src/package.json']);
  });

  it('the base image was re-tagged to another digest: the first step of each stage says so', async () => {
    await tagBase(2_000_000);
    const misses = await explain('--build-arg', 'VERSION=1.1');
    const reason = /^base image docker\.io\/kiln-test\/base:1 changed digest \([0-9a-f]{12} -> [0-9a-f]{12}\)$/;
    expect(reasonsOf(misses, '[left 2/2] RUN')).toEqual([expect.stringMatching(reason)]);
    expect(reasonsOf(misses, '[right 2/3] COPY')).toEqual([expect.stringMatching(reason)]);
  });

  it('--no-cache says so', async () => {
    const misses = await explain('--build-arg', 'VERSION=1.1', '--no-cache');
    expect(reasonsOf(misses, '[left 2/2] RUN')).toEqual(['--no-cache']);
  });
});

describe('explainMiss on key records', () => {
  const run = (over: Partial<RunKey> = {}): RunKey => ({
    kind: 'run',
    parent: 'sha256:p',
    platform: 'linux/amd64',
    args: ['/bin/sh', '-c', 'make'],
    env: ['PATH=/bin', 'MODE=fast'],
    user: '',
    workdir: '/',
    network: 'default',
    security: 'sandbox',
    mounts: [],
    ...over,
  });
  const previous = (record: RunKey): BuildRecord => ({
    version: 1,
    id: '20260101-000000-abcd',
    target: { contextDir: '/c', dockerfile: '/c/Dockerfile', stage: '' },
    tags: [],
    started: '2026-01-01T00:00:00Z',
    outcome: 'success',
    bases: {},
    steps: [{ vertex: 2, name: '[2/2] RUN make', status: 'done', logBytes: 0, key: 'sha256:k', record, ordinal: 2 }],
  });
  const explainRun = (before: RunKey, now: RunKey) =>
    explainMiss({ record: now, name: '[2/2] RUN make', stage: undefined, ordinal: 2, previous: previous(before), bases: {}, stepNames: new Map(), argNames: new Set() });

  it('names an ENV that changed, a changed command, user and workdir', async () => {
    expect(await explainRun(run(), run({ env: ['PATH=/bin', 'MODE=slow'] }))).toEqual(['ENV MODE changed (fast -> slow)']);
    expect(await explainRun(run(), run({ args: ['/bin/sh', '-c', 'make all'] }))).toEqual(['command changed (/bin/sh -c make -> /bin/sh -c make all)']);
    expect(await explainRun(run(), run({ user: 'app', workdir: '/src' }))).toEqual(['USER changed (root -> app)', 'WORKDIR changed (/ -> /src)']);
  });

  it('a bind mount whose content changed, and an identical record whose cache entry is gone', async () => {
    const m = (content: string) => [{ type: 'bind', target: '/src', content }];
    expect(await explainRun(run({ mounts: m('sha256:a') }), run({ mounts: m('sha256:b') }))).toEqual(['--mount target=/src: content changed']);
    expect(await explainRun(run(), run())).toEqual(['cache record was pruned since the last build']);
  });
});
