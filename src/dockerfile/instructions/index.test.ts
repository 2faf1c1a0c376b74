import { describe, expect, it } from 'vitest';
import { DockerfileError } from '../../errors.js';
import { envFromRecord } from '../shell/index.js';
import {
  expandInstruction,
  lexerFor,
  lexers,
  parseDockerfile,
  parseTrigger,
  planBuild,
  triggerHooks,
  type AddInstruction,
  type ExpandedRunInstruction,
  type Instruction,
} from './index.js';

function errorOf(fn: () => unknown): DockerfileError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DockerfileError);
    return err as DockerfileError;
  }
  throw new Error('expected an error');
}

describe('parseDockerfile', () => {
  it('converts a multi-stage file', () => {
    const df = parseDockerfile(
      [
        '# syntax=docker/dockerfile:1',
        'ARG GO=1.22',
        '# build compiles the binary',
        'FROM --platform=$BUILDPLATFORM golang:${GO} AS build',
        'RUN --mount=type=cache,target=/root/.cache/go-build \\',
        '    --mount=type=secret,id=netrc,target=/root/.netrc \\',
        '    go build -o /out/app .',
        'COPY --link --chmod=0755 <<-EOF /usr/local/bin/run',
        '\t#!/bin/sh',
        '\texec /app',
        '\tEOF',
        'FROM scratch',
        'COPY --from=build /out/app /app',
        'HEALTHCHECK --interval=30s CMD ["/app", "health"]',
        'ENTRYPOINT ["/app"]',
      ].join('\n'),
      { file: 'build/Dockerfile' },
    );
    expect(df.file).toBe('build/Dockerfile');
    expect(df.directives.syntax).toBe('docker/dockerfile:1');
    expect(df.metaArgs.map((a) => a.args)).toEqual([[{ key: 'GO', value: '1.22', docComment: '' }]]);
    const [build, final] = df.stages;
    expect(build).toMatchObject({ name: 'build', baseName: 'golang:${GO}', platform: '$BUILDPLATFORM', docComment: 'compiles the binary', startLine: 4 });
    const run = build!.instructions[0]!;
    expect(run).toMatchObject({
      kind: 'RUN',
      startLine: 5,
      endLine: 7,
      mountSpecs: ['type=cache,target=/root/.cache/go-build', 'type=secret,id=netrc,target=/root/.netrc'],
      cmdLine: ['go build -o /out/app .'],
    });
    expect(build!.instructions[1]).toMatchObject({
      kind: 'COPY',
      link: true,
      chmod: '0755',
      destPath: '/usr/local/bin/run',
      sourceContents: [{ path: 'EOF', data: '#!/bin/sh\nexec /app\n', expand: true }],
    });
    expect(final!.instructions.map((i) => i.kind)).toEqual(['COPY', 'HEALTHCHECK', 'ENTRYPOINT']);
    expect(final!.instructions[1]).toMatchObject({ health: { test: ['CMD', '/app', 'health'], interval: 30e9 } });

    const plan = planBuild(df, { lex: lexerFor(df), defaultArgs: [['BUILDPLATFORM', 'linux/amd64']] });
    expect(plan.reachable).toEqual([0, 1]);
    expect(plan.stages[0]).toMatchObject({ baseName: 'golang:1.22', platform: 'linux/amd64' });

    const env = envFromRecord({});
    const ex = expandInstruction(run, { file: df.file, ...lexers(df), env }) as ExpandedRunInstruction;
    expect(ex.mounts.map((m) => [m.type, m.target, m.cacheId, m.readOnly])).toEqual([
      ['cache', '/root/.cache/go-build', '', false],
      ['secret', '/root/.netrc', 'netrc', true],
    ]);
  });

  it('locates errors in the named file', () => {
    const e = errorOf(() => parseDockerfile('FROM a\n\nCOPY x\n', { file: 'sub/Dockerfile.dev' }));
    expect(e.location).toEqual({ file: 'sub/Dockerfile.dev', line: 3, endLine: 3 });
    expect(e.message).toBe(
      'sub/Dockerfile.dev:3: COPY requires at least two arguments, but only one was provided. Destination could not be determined',
    );
  });

  it('uses the escape directive for expansion', () => {
    const df = parseDockerfile('# escape=`\nFROM a\nWORKDIR C:\\$X`$Y\n');
    expect(df.escapeToken).toBe('`');
    const wd = df.stages[0]!.instructions[0]!;
    const out = expandInstruction(wd, { file: df.file, ...lexers(df), env: envFromRecord({ X: 'x', Y: 'y' }) });
    expect(out).toMatchObject({ path: 'C:\\x$Y' });
  });

  it('expands heredoc bodies with quotes kept, only when unquoted', () => {
    const df = parseDockerfile('FROM a\nCOPY <<A <<"B" /d/\n"$V" \'$V\'\nA\n$V\nB\n');
    const out = expandInstruction(df.stages[0]!.instructions[0]!, {
      file: df.file,
      ...lexers(df),
      env: envFromRecord({ V: 'v' }),
    }) as AddInstruction;
    expect(out.sourceContents).toEqual([
      { path: 'A', data: '"v" \'v\'\n', expand: true },
      { path: 'B', data: '$V\n', expand: false },
    ]);
  });

  it('survives instructions the build does not need', () => {
    const df = parseDockerfile('FROM a AS x\nRUN --mount=type=nope true\nFROM b\n');
    expect(() => planBuild(df, { lex: lexerFor(df) })).not.toThrow();
  });
});

describe('ONBUILD triggers', () => {
  const text = [
    'FROM alpine AS dep',
    'FROM alpine AS base',
    'ONBUILD RUN <<EOF',
    'echo hi',
    'EOF',
    'ONBUILD COPY --from=dep /x /x',
    'FROM base',
    'RUN true',
  ].join('\n');
  it('are planned before the stage’s own instructions, at its FROM', () => {
    const df = parseDockerfile(text);
    const plan = planBuild(df, { lex: lexerFor(df) }, triggerHooks);
    const t = plan.stages[2]!.triggers;
    expect(t.map((i: Instruction) => [i.kind, i.startLine])).toEqual([
      ['RUN', 7],
      ['COPY', 7],
    ]);
    expect(t[0]).toMatchObject({ cmdLine: ['<<EOF'], files: [{ name: 'EOF', data: 'echo hi\n' }] });
    expect(plan.reachable).toEqual([0, 1, 2]);
    expect(planBuild(df, { lex: lexerFor(df), target: 'base' }, triggerHooks).reachable).toEqual([1]);
  });
  it('reject what BuildKit rejects', () => {
    const loc = { file: 'Dockerfile', line: 4, endLine: 4 };
    expect(errorOf(() => parseTrigger('FROM x', loc)).detail).toBe('*instructions.Stage is not a command type');
    expect(errorOf(() => parseTrigger('RUN a\nRUN b', loc)).detail).toBe('onbuild trigger should be a single expression');
    const e = errorOf(() => parseTrigger('COPY a', loc));
    expect(e.location).toEqual(loc);
    expect(parseTrigger('MAINTAINER me', loc)).toMatchObject({ kind: 'MAINTAINER', startLine: 4 });
  });
});
