import { describe, expect, it } from 'vitest';
import { DockerfileError } from '../../errors.js';
import { newNode, type Node } from '../parser/ast.js';
import { ShellLex, envFromRecord } from '../shell/index.js';
import { convert } from './convert.js';
import { expandInstruction, resolveArgs } from './expand.js';
import { EnvList } from './lexer.js';
import { baseChain, planBuild } from './stages.js';
import type { Dockerfile, ExpandedRunInstruction } from './types.js';

const FILE = 'Dockerfile';
let line = 0;

function ins(value: string, args: string[], extra: Partial<Node> = {}): Node {
  line++;
  return newNode({
    value,
    next: args.map((a) => newNode({ value: a })),
    original: [value, ...(extra.flags ?? []), ...args].join(' '),
    startLine: line,
    endLine: line,
    ...extra,
  });
}

function df(...children: Node[]): Dockerfile {
  line = 0;
  return convert(
    { ast: newNode({ children }), directives: { escapeToken: '\\', lines: {} }, warnings: [] },
    { file: FILE },
  );
}

const lex = new ShellLex('\\');

function errorOf(fn: () => unknown): DockerfileError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DockerfileError);
    return err as DockerfileError;
  }
  throw new Error('expected an error');
}

describe('planBuild', () => {
  it('resolves bases, --from by name and index, and reachability', () => {
    const d = df(
      ins('FROM', ['scratch', 'AS', 'foo']),
      ins('ENV', ['FOO', 'bar', '']),
      ins('FROM', ['alpine', 'as', 'other']),
      ins('FROM', ['foo']),
      ins('COPY', ['f1', '/'], { flags: ['--from=foo'] }),
      ins('COPY', ['f2', '/'], { flags: ['--from=0'] }),
      ins('COPY', ['f3', '/'], { flags: ['--from=busybox'] }),
      ins('RUN', ['x'], { flags: ['--mount=type=cache,target=/c'] }),
    );
    const plan = planBuild(d, { lex });
    expect(plan.stages.map((s) => s.base)).toEqual([
      { kind: 'scratch' },
      { kind: 'image', ref: 'alpine' },
      { kind: 'stage', index: 0 },
    ]);
    expect(plan.target).toBe(2);
    expect(plan.reachable).toEqual([0, 2]);
    expect(plan.stages[2]!.deps).toEqual([
      { source: { kind: 'stage', index: 0 }, instruction: 0, trigger: false },
      { source: { kind: 'stage', index: 0 }, instruction: 1, trigger: false },
      { source: { kind: 'image', ref: 'busybox' }, instruction: 2, trigger: false },
      { source: { kind: 'image', ref: 'scratch' }, instruction: 3, trigger: false, mount: 0 },
    ]);
    expect(plan.stages.map((s) => s.displayName)).toEqual(['foo', 'other', 'stage-2']);
    expect(baseChain(plan, 2)).toEqual([0, 2]);
    expect(planBuild(d, { lex, target: 'OTHER' }).reachable).toEqual([1]);
  });

  it('expands FROM with meta args and build args', () => {
    const d = df(
      ins('ARG', ['TAG=3.19']),
      ins('ARG', ['IMG=alpine:${TAG}']),
      ins('FROM', ['${IMG}'], { flags: ['--platform=$BUILDPLATFORM'] }),
    );
    const plan = planBuild(d, { lex, defaultArgs: [['BUILDPLATFORM', 'linux/amd64']] });
    expect(plan.stages[0]).toMatchObject({ baseName: 'alpine:3.19', platform: 'linux/amd64' });
    expect(plan.stages[0]!.usedArgs.sort()).toEqual(['BUILDPLATFORM', 'IMG']);
    const p2 = planBuild(d, { lex, buildArgs: { TAG: 'edge', BUILDPLATFORM: 'linux/arm64' }, defaultArgs: [['BUILDPLATFORM', 'linux/amd64']] });
    expect(p2.stages[0]!.platform).toBe('linux/arm64');
    expect(p2.stages[0]!.baseName).toBe('alpine:edge');
    expect(p2.consumedBuildArgs).toEqual(['TAG']);
    expect(p2.globalArgs.get('TARGETSTAGE')).toBe('default');
  });

  it('rejects blank base names and empty platforms', () => {
    expect(errorOf(() => planBuild(df(ins('FROM', ['${BLANK}', 'AS', 'foo'])), { lex })).detail).toBe(
      'base name (${BLANK}) should not be blank',
    );
    expect(errorOf(() => planBuild(df(ins('FROM', ['""'])), { lex })).detail).toBe('base name ("") should not be blank');
    expect(
      errorOf(() => planBuild(df(ins('FROM', ['a'], { flags: ['--platform=$TARGETPLATFROM'] })), {
        lex,
        defaultArgs: [['TARGETPLATFORM', 'linux/arm64']],
      })).detail,
    ).toBe('empty platform value from expression $TARGETPLATFROM (did you mean TARGETPLATFORM?)');
  });

  it('reports an unknown target with a hint', () => {
    const d = df(ins('FROM', ['a', 'AS', 'build']), ins('FROM', ['b', 'AS', 'test']));
    expect(errorOf(() => planBuild(d, { lex, target: 'buidl' })).detail).toBe(
      'target stage "buidl" could not be found (did you mean build?)',
    );
  });

  it('detects cycles and forward references', () => {
    const self = df(ins('FROM', ['busybox', 'AS', 'stage0']), ins('COPY', ['f1', '/sub/'], { flags: ['--from=stage0'] }));
    const e = errorOf(() => planBuild(self, { lex }));
    expect(e.detail).toBe('circular dependency detected on stage: stage0');
    expect(e.location?.line).toBe(2);
    const fwd = df(
      ins('FROM', ['busybox', 'AS', 'a']),
      ins('COPY', ['f', '/'], { flags: ['--from=b'] }),
      ins('FROM', ['a', 'AS', 'b']),
    );
    expect(errorOf(() => planBuild(fwd, { lex, target: 'a' })).detail).toBe(
      'cannot copy from stage "b", it needs to be defined before current stage "a"',
    );
    const mnt = df(
      ins('FROM', ['busybox', 'AS', 'a']),
      ins('RUN', ['x'], { flags: ['--mount=from=b,target=/m'] }),
      ins('FROM', ['a', 'AS', 'b']),
    );
    expect(errorOf(() => planBuild(mnt, { lex, target: 'a' })).detail).toBe(
      'cannot mount from stage "b" to "/m", stage needs to be defined before current command',
    );
  });

  it('rejects variables in --from, bad indexes, COPY URLs', () => {
    expect(
      errorOf(() => planBuild(df(ins('FROM', ['a']), ins('COPY', ['f', '/'], { flags: ['--from=$X'] })), { lex })).detail,
    ).toBe(
      'variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround',
    );
    expect(
      errorOf(() => planBuild(df(ins('FROM', ['a']), ins('COPY', ['f', '/'], { flags: ['--from=3'] })), { lex })).detail,
    ).toBe('invalid stage index 3');
    expect(
      errorOf(() => planBuild(df(ins('FROM', ['a']), ins('COPY', ['http://x/y', '/'])), { lex })).detail,
    ).toBe("source can't be a URL for COPY");
    expect(() => planBuild(df(ins('FROM', ['a']), ins('ADD', ['http://x/y', '/'])), { lex })).not.toThrow();
  });

  it('plans ONBUILD triggers of a base stage', () => {
    const d = df(
      ins('FROM', ['alpine', 'AS', 'dep']),
      ins('FROM', ['alpine', 'AS', 'base']),
      newNode({
        value: 'ONBUILD',
        next: [newNode({ children: [ins('COPY', ['x', '/'], { flags: ['--from=dep'] })] })],
        original: 'ONBUILD COPY --from=dep x /',
        startLine: 9,
        endLine: 9,
      }),
      ins('FROM', ['base']),
    );
    const plan = planBuild(d, { lex }, {
      parseTrigger: (expr, loc) => {
        expect(expr).toBe('COPY --from=dep x /');
        return { kind: 'COPY', keyword: 'COPY', original: expr, startLine: loc.line, endLine: loc.endLine ?? loc.line,
          comments: [], from: 'dep', chown: '', chmod: '', link: false, excludePatterns: [], parents: false,
          sourcePaths: ['x'], destPath: '/', sourceContents: [] };
      },
    });
    expect(plan.stages[2]!.triggers).toHaveLength(1);
    expect(plan.reachable).toEqual([0, 1, 2]);
  });

  it('needs a stage', () => {
    expect(errorOf(() => planBuild(df(ins('ARG', ['a'])), { lex })).detail).toBe('dockerfile contains no stages to build');
  });
});

describe('expandInstruction', () => {
  const env = envFromRecord({ A: 'x', U: '1000', D: '/dst', P: '8080 9090' });
  const ctx = { file: FILE, lex, rawLex: new ShellLex('\\', { skipProcessQuotes: true }), env };
  it('expands where BuildKit does', () => {
    const d = df(
      ins('FROM', ['a']),
      ins('ENV', ['K$A', '${A}y', '=']),
      ins('COPY', ['<<EOF', 's$A', '$D'], {
        flags: ['--chown=$U', '--from=b$A'],
        heredocs: [{ name: 'EOF', fileDescriptor: 0, expand: true, chomp: false, content: '"$A"\n' }],
      }),
      ins('RUN', ['echo $A'], { flags: ['--mount=type=cache,target=/c/$A,uid=$U'] }),
      ins('EXPOSE', ['$P']),
      ins('CMD', ['echo $A']),
    );
    const [env1, copy, run, expose, cmd] = d.stages[0]!.instructions;
    expect(expandInstruction(env1!, ctx)).toMatchObject({ env: [{ key: 'Kx', value: 'xy' }] });
    expect(expandInstruction(copy!, ctx)).toMatchObject({
      chown: '1000', from: 'b$A', sourcePaths: ['sx'], destPath: '/dst',
      sourceContents: [{ path: 'EOF', data: '"x"\n', expand: true }],
    });
    const r = expandInstruction(run!, ctx) as ExpandedRunInstruction;
    expect(r.cmdLine).toEqual(['echo $A']);
    expect(r.mounts).toEqual([
      { type: 'cache', from: '', source: '', target: '/c/x', readOnly: false, sizeLimit: 0, cacheId: '', cacheSharing: '', required: false, uid: 1000 },
    ]);
    expect(expandInstruction(expose!, ctx)).toMatchObject({ ports: ['8080', '9090'] });
    expect(expandInstruction(cmd!, ctx)).toMatchObject({ cmdLine: ['echo $A'] });
  });
  it('reports mount errors at the instruction', () => {
    const d = df(ins('FROM', ['a']), ins('RUN', ['x'], { flags: ['--mount=type=bind,mode=0600'] }));
    const e = errorOf(() => expandInstruction(d.stages[0]!.instructions[0]!, ctx));
    expect(e.detail).toBe('mode not allowed for "bind" type mounts');
    expect(e.location?.line).toBe(2);
  });
  it('reports expansion errors at the instruction', () => {
    const d = df(ins('FROM', ['a']), ins('WORKDIR', ['${NOPE?is required}']));
    const e = errorOf(() => expandInstruction(d.stages[0]!.instructions[0]!, ctx));
    expect(e.location?.line).toBe(2);
    expect(e.detail).toContain('is required');
  });
  it('resolves ARG values', () => {
    const d = df(ins('FROM', ['a']), ins('ARG', ['V=${A}1', 'W=$V', 'G', 'N', 'B=z']));
    const out = resolveArgs(d.stages[0]!.instructions[0]! as never, ctx, {
      buildArgs: { B: 'from-cli' },
      globalArgs: new EnvList([['G', 'global']]),
    });
    expect(out).toEqual([
      { key: 'V', value: 'x1', source: 'default' },
      { key: 'W', value: 'x1', source: 'default' },
      { key: 'G', value: 'global', source: 'global' },
      { key: 'N', value: undefined, source: 'unset' },
      { key: 'B', value: 'from-cli', source: 'build-arg' },
    ]);
  });
});
