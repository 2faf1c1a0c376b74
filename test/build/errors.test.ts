/**
 * Bad input to `kiln build`: each mistake is reported as one line, `FILE:LINE: message` (BuildKit's
 * wording where BuildKit has one), with exit status 1 and nothing built. A failing RUN also shows
 * its last output lines above that line, as buildx does.
 */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxStore, type BusyboxStore } from '../helpers/busybox.js';
import { inParallel, kilnRun } from '../helpers/build.js';
import type { RunResult } from '../helpers/kiln.js';

let base: BusyboxStore;

interface Case {
  name: string;
  files: Record<string, string>;
  args?: string[];
  /** Made after the files: [link path, target]. */
  symlinks?: Array<[string, string]>;
}

const CASES: Case[] = [
  { name: 'missing-source', files: { Dockerfile: 'FROM kiln-test/busybox:latest\nCOPY missing.txt /x\n' } },
  { name: 'ignored-source', files: { Dockerfile: 'FROM kiln-test/busybox:latest\nCOPY secret.txt /x\n', 'secret.txt': 's', '.dockerignore': 'secret.txt\n' } },
  { name: 'bad-from', files: { Dockerfile: 'FROM kiln-test/busybox:latest AS build\nFROM kiln-test/busybox:latest\nCOPY --from=Bild /x /x\n' } },
  { name: 'cycle', files: { Dockerfile: 'FROM kiln-test/busybox:latest AS a\nCOPY --from=b /x /x\nFROM kiln-test/busybox:latest AS b\nCOPY --from=a /y /y\n' } },
  {
    name: 'run-fails',
    files: { Dockerfile: 'FROM kiln-test/busybox:latest\nRUN echo one\nRUN for i in 1 2 3; do echo "line $i"; done; echo "to stderr" >&2; exit 7\n' },
  },
  {
    name: 'symlink-escape',
    files: { Dockerfile: 'FROM kiln-test/busybox:latest\nCOPY app/ /app/\nCOPY app/config /config\n', 'app/readme': 'r' },
    symlinks: [['app/config', '../../outside.txt']],
  },
  { name: 'no-target', files: { Dockerfile: 'FROM kiln-test/busybox:latest AS build\n' }, args: ['--target', 'biuld'] },
  { name: 'secret-required', files: { Dockerfile: 'FROM kiln-test/busybox:latest\nRUN --mount=type=secret,id=npmrc,required=true cat /run/secrets/npmrc\n' } },
  { name: 'workdir-file', files: { Dockerfile: 'FROM kiln-test/busybox:latest\nWORKDIR /bin/busybox/sub\n' } },
];

const results: Record<string, RunResult> = {};

beforeAll(async () => {
  base = await busyboxStore();
  writeFileSync(join(base.dir, 'outside.txt'), 'outside the context\n');
  await inParallel(
    3,
    CASES.map((c) => async () => {
      const dir = join(base.dir, 'cases', c.name);
      for (const [name, content] of Object.entries(c.files)) {
        mkdirSync(join(dir, name, '..'), { recursive: true });
        writeFileSync(join(dir, name), content);
      }
      for (const [link, target] of c.symlinks ?? []) symlinkSync(target, join(dir, link));
      // Relative to the context's parent, so messages name `ctx/Dockerfile` as a user would see it.
      results[c.name] = await kilnRun(base.root, ['build', '-q', ...(c.args ?? []), c.name], { cwd: join(base.dir, 'cases') });
    }),
  );
}, 180_000);

afterAll(async () => {
  await base?.cleanup();
});

/** The single line of a failed build. */
function oneLine(name: string): string {
  const r = results[name]!;
  expect(r.status, r.stderr).toBe(1);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  return lines[0]!;
}

describe('bad input is one line naming the Dockerfile line', () => {
  it('a COPY source missing from the context, in BuildKit’s words', () => {
    expect(oneLine('missing-source')).toMatch(/^missing-source\/Dockerfile:2: failed to calculate checksum of ref context: "\/missing.txt": not found/);
  });

  it('a COPY source that .dockerignore leaves out is missing too', () => {
    expect(oneLine('ignored-source')).toMatch(/^ignored-source\/Dockerfile:2: .*"\/secret.txt": not found/);
  });

  it('a --from naming no stage or image', () => {
    expect(oneLine('bad-from')).toMatch(/^bad-from\/Dockerfile:3: .*"Bild".* \(did you mean build\?\)$/);
  });

  it('a dependency cycle between stages', () => {
    expect(oneLine('cycle')).toMatch(/^cycle\/Dockerfile:\d+: circular dependency detected on stage: (a|b)$/);
  });

  it('a context symlink that points outside the context', () => {
    expect(oneLine('symlink-escape')).toMatch(/^symlink-escape\/Dockerfile:3: symlink "app\/config" -> "\.\.\/\.\.\/outside\.txt" points outside the build context/);
  });

  it('a --target that names no stage', () => {
    expect(oneLine('no-target')).toMatch(/target stage "biuld" could not be found/);
  });

  it('a required secret that was not given', () => {
    expect(oneLine('secret-required')).toMatch(/^secret-required\/Dockerfile:2: .*secret npmrc not found/);
  });

  it('a WORKDIR through a file', () => {
    expect(oneLine('workdir-file')).toMatch(/^workdir-file\/Dockerfile:2: .*not a directory/);
  });

  it('a RUN that exits non-zero: its last output lines, then the one-line error', () => {
    const r = results['run-fails']!;
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(
      [
        '------',
        ' > [3/3] RUN for i in 1 2 3; do echo "line $i"; done; echo "to stderr" >&2; exit 7:',
        '   line 1',
        '   line 2',
        '   line 3',
        '   to stderr',
        '------',
        'run-fails/Dockerfile:3: process "/bin/sh -c for i in 1 2 3; do echo \\"line $i\\"; done; echo \\"to stderr\\" >&2; exit 7" did not complete successfully: exit code: 7',
        '',
      ].join('\n'),
    );
  });
});
