import { describe, expect, it } from 'vitest';
import { DockerfileError } from '../../errors.js';
import { newNode, type Node, type ParseResult } from '../parser/ast.js';
import { convert, parseInstruction } from './convert.js';
import type { AddInstruction, CopyInstruction, RunInstruction } from './types.js';

const FILE = 'Dockerfile';

/** An instruction node: keyword, argument values, optional flags / json / heredocs. */
function ins(value: string, args: string[], extra: Partial<Node> = {}): Node {
  return newNode({
    value,
    next: args.map((a) => newNode({ value: a })),
    original: [value, ...(extra.flags ?? []), ...args].join(' '),
    startLine: 1,
    endLine: 1,
    ...extra,
  });
}

function errorOf(fn: () => unknown): DockerfileError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DockerfileError);
    return err as DockerfileError;
  }
  throw new Error('expected an error');
}

const parse1 = (n: Node) => parseInstruction(n, { file: FILE });

describe('argument counts', () => {
  it.each(['MAINTAINER', 'WORKDIR', 'USER', 'STOPSIGNAL'])('%s requires exactly one', (cmd) => {
    expect(errorOf(() => parse1(ins(cmd, []))).detail).toBe(`${cmd} requires exactly one argument`);
  });
  it.each(['ENV', 'LABEL', 'ONBUILD', 'HEALTHCHECK', 'EXPOSE', 'VOLUME', 'ARG'])('%s requires at least one', (cmd) => {
    expect(errorOf(() => parse1(ins(cmd, []))).detail).toBe(`${cmd} requires at least one argument`);
  });
  it('COPY/ADD need a destination', () => {
    expect(errorOf(() => parse1(ins('COPY', ['a']))).detail).toBe(
      'COPY requires at least two arguments, but only one was provided. Destination could not be determined',
    );
  });
  it('FROM takes one or three', () => {
    expect(errorOf(() => parse1(ins('FROM', ['a', 'b']))).detail).toBe('FROM requires either one or three arguments');
    expect(errorOf(() => parse1(ins('FROM', []))).detail).toBe('FROM requires either one or three arguments');
  });
  it('errors carry file and lines', () => {
    const e = errorOf(() => parse1(ins('USER', [], { startLine: 4, endLine: 6 })));
    expect(e.location).toEqual({ file: FILE, line: 4, endLine: 6 });
    expect(e.message).toBe('Dockerfile:4: USER requires exactly one argument');
  });
});

describe('FROM', () => {
  it('reads name and platform', () => {
    const f = parse1(ins('FROM', ['alpine', 'AS', 'Build'], { flags: ['--platform=$BUILDPLATFORM'] }));
    expect(f).toMatchObject({ kind: 'FROM', baseName: 'alpine', stageName: 'build', platform: '$BUILDPLATFORM' });
  });
  it('rejects bad stage names', () => {
    expect(errorOf(() => parse1(ins('FROM', ['a', 'as', '1x']))).detail).toBe(
      'invalid name for build stage: "1x", name can\'t start with a number or contain symbols',
    );
    expect(() => parse1(ins('FROM', ['a', 'as', 'a-b_c.d9']))).not.toThrow();
  });
  it('rejects unknown flags with a hint', () => {
    expect(errorOf(() => parse1(ins('FROM', ['a'], { flags: ['--platfrom=x'] }))).detail).toBe(
      'unknown flag: --platfrom (did you mean platform?)',
    );
  });
});

describe('flags', () => {
  it('COPY flags', () => {
    const c = parse1(
      ins('COPY', ['a', 'b', '/d/'], {
        flags: ['--from=build', '--chown=1:2', '--chmod=755', '--link', '--exclude=*.go', '--exclude=x', '--parents=true'],
      }),
    ) as CopyInstruction;
    expect(c).toMatchObject({
      from: 'build', chown: '1:2', chmod: '755', link: true, parents: true,
      excludePatterns: ['*.go', 'x'], sourcePaths: ['a', 'b'], destPath: '/d/',
    });
  });
  it('ADD-only flags', () => {
    const a = parse1(
      ins('ADD', ['u', '/d'], { flags: ['--checksum=sha256:x', '--keep-git-dir=false', '--unpack'] }),
    ) as AddInstruction;
    expect(a).toMatchObject({ checksum: 'sha256:x', keepGitDir: false, unpack: true, link: false });
    const b = parse1(ins('ADD', ['u', '/d'])) as AddInstruction;
    expect(b.keepGitDir).toBeUndefined();
    expect(b.unpack).toBeUndefined();
    expect(errorOf(() => parse1(ins('COPY', ['u', '/d'], { flags: ['--checksum=x'] }))).detail).toMatch(
      /^unknown flag: --checksum/,
    );
  });
  it('duplicates, missing values, bad bools', () => {
    expect(errorOf(() => parse1(ins('COPY', ['a', 'b'], { flags: ['--from=a', '--from=b'] }))).detail).toBe(
      'duplicate flag specified: --from',
    );
    expect(errorOf(() => parse1(ins('COPY', ['a', 'b'], { flags: ['--from'] }))).detail).toBe(
      'missing a value on flag: --from',
    );
    expect(errorOf(() => parse1(ins('COPY', ['a', 'b'], { flags: ['--link='] }))).detail).toBe(
      'missing a value on flag: --link',
    );
    expect(errorOf(() => parse1(ins('COPY', ['a', 'b'], { flags: ['--link=yes'] }))).detail).toBe(
      'expecting boolean value for flag --link, not: yes',
    );
  });
  it('STOPSIGNAL and ARG ignore flags, like BuildKit', () => {
    expect(() => parse1(ins('STOPSIGNAL', ['9'], { flags: ['--x'] }))).not.toThrow();
    expect(() => parse1(ins('ARG', ['a'], { flags: ['--x'] }))).not.toThrow();
  });
});

describe('RUN', () => {
  it('shell and exec form', () => {
    expect(parse1(ins('RUN', ['echo hi']))).toMatchObject({ cmdLine: ['echo hi'], prependShell: true, files: [] });
    expect(parse1(ins('RUN', ['ls', '/'], { attributes: { json: true } }))).toMatchObject({
      cmdLine: ['ls', '/'],
      prependShell: false,
    });
  });
  it('flags', () => {
    const r = parse1(
      ins('RUN', ['x'], {
        flags: ['--mount=type=cache,target=/c', '--mount=from=build,target=/b', '--network=none', '--security=insecure', '--device=v.com/d=x,required'],
      }),
    ) as RunInstruction;
    expect(r).toMatchObject({
      mountSpecs: ['type=cache,target=/c', 'from=build,target=/b'],
      mountSources: ['', 'build'],
      network: 'none',
      security: 'insecure',
      devices: [{ name: 'v.com/d=x', required: true }],
      flagsUsed: ['mount', 'network', 'security', 'device'],
    });
  });
  it('rejects bad network, security, from with variables, bad csv', () => {
    expect(errorOf(() => parse1(ins('RUN', ['x'], { flags: ['--network=bridge'] }))).detail).toBe('invalid network mode "bridge"');
    expect(errorOf(() => parse1(ins('RUN', ['x'], { flags: ['--security=x'] }))).detail).toBe('security "x" is not valid');
    expect(errorOf(() => parse1(ins('RUN', ['x'], { flags: ['--mount=from=$X'] }))).detail).toBe(
      "'from' doesn't support variable expansion, define alias stage instead",
    );
    expect(() => parse1(ins('RUN', ['x'], { flags: ['--mount=from=x$'] }))).not.toThrow();
    expect(errorOf(() => parse1(ins('RUN', ['x'], { flags: ['--mount=a"b'] }))).detail).toBe(
      'failed to parse csv mounts: parse error on line 1, column 2: bare " in non-quoted-field',
    );
    expect(errorOf(() => parse1(ins('RUN', ['x'], { flags: ['--mount='] }))).detail).toBe('failed to parse csv mounts: EOF');
  });
  it('heredoc files', () => {
    const r = parse1(
      ins('RUN', ['<<-EOF'], { heredocs: [{ name: 'EOF', fileDescriptor: 0, expand: true, chomp: true, content: '\tx\n' }] }),
    ) as RunInstruction;
    expect(r.files).toEqual([{ name: 'EOF', data: '\tx\n', chomp: true }]);
  });
});

describe('other instructions', () => {
  it('ENV and LABEL triples', () => {
    expect(parse1(ins('ENV', ['a', 'b', '=', 'c', 'd e', '']))).toMatchObject({
      env: [
        { key: 'a', value: 'b', noDelim: false },
        { key: 'c', value: 'd e', noDelim: true },
      ],
    });
    expect(errorOf(() => parse1(ins('env', ['a', 'b', 'c', '']))).detail).toBe('Bad input to ENV, too many arguments');
    expect(errorOf(() => parse1(ins('label', ['', 'b', '=']))).detail).toBe('LABEL names can not be blank');
  });
  it('ARG', () => {
    expect(parse1(ins('ARG', ['a', 'b=1', 'c=']))).toMatchObject({
      args: [
        { key: 'a', value: undefined },
        { key: 'b', value: '1' },
        { key: 'c', value: '' },
      ],
    });
    expect(errorOf(() => parse1(ins('ARG', ['=1']))).detail).toBe('ARG names can not be blank');
  });
  it('CMD / ENTRYPOINT / SHELL', () => {
    expect(parse1(ins('ENTRYPOINT', [], { attributes: { json: true } }))).toMatchObject({ cmdLine: null });
    expect(parse1(ins('CMD', [], { attributes: { json: true } }))).toMatchObject({ cmdLine: [] });
    expect(parse1(ins('SHELL', ['pwsh', '-c'], { attributes: { json: true } }))).toMatchObject({ shell: ['pwsh', '-c'] });
    expect(errorOf(() => parse1(ins('SHELL', ['sh -c']))).detail).toBe('SHELL requires the arguments to be in JSON form');
    expect(errorOf(() => parse1(ins('SHELL', [], { attributes: { json: true } }))).detail).toBe(
      'SHELL requires at least one argument',
    );
  });
  it('EXPOSE sorts its specs', () => {
    expect(parse1(ins('EXPOSE', ['8080', '443/tcp', '80']))).toMatchObject({ ports: ['443/tcp', '80', '8080'] });
  });
  it('VOLUME trims and rejects empty', () => {
    expect(parse1(ins('VOLUME', [' /a ', '/b']))).toMatchObject({ volumes: ['/a', '/b'] });
    expect(errorOf(() => parse1(ins('VOLUME', [' ']))).detail).toBe('VOLUME specified can not be an empty string');
  });
  it('HEALTHCHECK', () => {
    expect(parse1(ins('HEALTHCHECK', ['CMD', 'hello', 'world']))).toMatchObject({
      health: { test: ['CMD-SHELL', 'hello world'] },
    });
    expect(
      parse1(
        ins('HEALTHCHECK', ['cmd', 'a', 'b'], {
          attributes: { json: true },
          flags: ['--interval=1m30s', '--timeout=5s', '--start-period=0', '--start-interval=100ms', '--retries=3'],
        }),
      ),
    ).toMatchObject({
      health: { test: ['CMD', 'a', 'b'], interval: 90e9, timeout: 5e9, startPeriod: 0, startInterval: 1e8, retries: 3 },
    });
    expect(parse1(ins('HEALTHCHECK', ['none']))).toMatchObject({ health: { test: ['NONE'] } });
    expect(errorOf(() => parse1(ins('HEALTHCHECK', ['NONE', 'x']))).detail).toBe('HEALTHCHECK NONE takes no arguments');
    expect(errorOf(() => parse1(ins('HEALTHCHECK', ['CURL', 'x']))).detail).toBe(
      'Unknown type "CURL" in HEALTHCHECK (try CMD)',
    );
    expect(errorOf(() => parse1(ins('HEALTHCHECK', ['CMD'])))?.detail).toBe('Missing command after HEALTHCHECK CMD');
    expect(errorOf(() => parse1(ins('HEALTHCHECK', ['CMD', 'x'], { flags: ['--interval=50ns'] }))).detail).toBe(
      'Interval "interval" cannot be less than 1ms',
    );
    expect(errorOf(() => parse1(ins('HEALTHCHECK', ['CMD', 'x'], { flags: ['--timeout=5'] }))).detail).toBe(
      'time: missing unit in duration "5"',
    );
    expect(errorOf(() => parse1(ins('HEALTHCHECK', ['CMD', 'x'], { flags: ['--retries=-1'] }))).detail).toBe(
      '--retries cannot be negative (-1)',
    );
    expect(errorOf(() => parse1(ins('HEALTHCHECK', ['CMD', 'x'], { flags: ['--retries=x'] }))).detail).toBe(
      'strconv.ParseInt: parsing "x": invalid syntax',
    );
  });
  it('ONBUILD', () => {
    const sub = ins('RUN', ['echo hi'], { original: 'RUN echo hi' });
    const node = newNode({
      value: 'ONBUILD',
      next: [newNode({ children: [sub] })],
      original: 'ONBUILD RUN echo hi',
      startLine: 1,
      endLine: 1,
    });
    expect(parse1(node)).toMatchObject({ kind: 'ONBUILD', expression: 'RUN echo hi' });
    const bad = (kw: string) =>
      newNode({ value: 'onbuild', next: [newNode({ children: [ins(kw, ['x'])] })], startLine: 1, endLine: 1 });
    expect(errorOf(() => parse1(bad('from'))).detail).toBe("FROM isn't allowed as an ONBUILD trigger");
    expect(errorOf(() => parse1(bad('Maintainer'))).detail).toBe("MAINTAINER isn't allowed as an ONBUILD trigger");
    expect(errorOf(() => parse1(bad('ONBUILD'))).detail).toBe("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
  });
  it('folds case as Go does', () => {
    // Go maps U+0130 to "i" and folds U+017F with "s"; JavaScript's full mappings differ.
    expect(parse1(ins('WORKD\u0130R', ['/x']))).toMatchObject({ kind: 'WORKDIR', keyword: 'WORKD\u0130R' });
    expect(parse1(ins('FROM', ['a', 'a\u017f', 'B\u0130']))).toMatchObject({ stageName: 'bi', asWord: 'a\u017f' });
  });
  it('unknown instruction, with a hint', () => {
    expect(errorOf(() => parse1(ins('FORM', ['x']))).detail).toBe('unknown instruction: FORM (did you mean FROM?)');
    expect(errorOf(() => parse1(ins('foo', ['x']))).detail).toBe('unknown instruction: foo (did you mean from?)');
    expect(errorOf(() => parse1(ins('xyzzy', ['x']))).detail).toBe('unknown instruction: xyzzy');
  });
});

describe('COPY heredocs', () => {
  const hd = (name: string, content: string, chomp = false) => ({ name, fileDescriptor: 0, expand: true, chomp, content });
  it('splits sources and inline files', () => {
    const c = parse1(
      ins('COPY', ['<<EOF', 'foo.txt', '<<-"E2"', '/bar'], { heredocs: [hd('EOF', 'a\n'), hd('E2', '\tb\n', true)] }),
    ) as CopyInstruction;
    expect(c.sourcePaths).toEqual(['foo.txt']);
    expect(c.sourceContents).toEqual([
      { path: 'EOF', data: 'a\n', expand: true },
      { path: 'E2', data: 'b\n', expand: false },
    ]);
  });
  it('rejects a heredoc destination', () => {
    expect(errorOf(() => parse1(ins('COPY', ['/foo', '<<EOF']))).detail).toBe('COPY cannot accept a heredoc as a destination');
  });
});

describe('convert', () => {
  const root = (...children: Node[]): ParseResult => ({
    ast: newNode({ children }),
    directives: { escapeToken: '\\', lines: {} },
    warnings: [],
  });
  it('groups stages and meta args, with doc comments', () => {
    const df = convert(
      root(
        ins('ARG', ['v=1'], { prevComment: ['v sets the version'] }),
        ins('FROM', ['alpine', 'AS', 'base'], { prevComment: ['base is the base'], startLine: 2, endLine: 2 }),
        ins('ARG', ['a', 'b'], { prevComment: ['b is b', 'a is a'] }),
        ins('FROM', ['base']),
        ins('RUN', ['x']),
      ),
      { file: FILE },
    );
    expect(df.metaArgs).toHaveLength(1);
    expect(df.metaArgs[0]!.args[0]).toEqual({ key: 'v', value: '1', docComment: 'sets the version' });
    expect(df.stages.map((s) => [s.index, s.name, s.baseName, s.docComment, s.instructions.length])).toEqual([
      [0, 'base', 'alpine', 'is the base', 1],
      [1, '', 'base', '', 1],
    ]);
    expect(df.stages[0]!.instructions[0]).toMatchObject({ args: [{ docComment: 'is a' }, { docComment: 'is b' }] });
    expect(df.stages[0]!.startLine).toBe(2);
  });
  it('rejects instructions before FROM', () => {
    expect(errorOf(() => convert(root(ins('RUN', ['x'])), { file: FILE })).detail).toBe('no build stage in current context');
  });
});
