import { describe, expect, it } from 'vitest';
import { lexers, parseDockerfile, type Instruction } from '../dockerfile/instructions/index.js';
import { applyArg, applyMetadata, applyWorkdir, copyCreatedBy, dockerOCIImage, isSignal, runArgs, runCommandString, startStage } from './image-config.js';

const linux = { os: 'linux', architecture: 'amd64' };

function instructions(text: string): Instruction[] {
  const df = parseDockerfile(`FROM scratch\n${text}`);
  void lexers(df);
  return df.stages[0]!.instructions;
}

function apply(text: string, base?: Parameters<typeof startStage>[0]) {
  const image = startStage(base, linux);
  for (const ins of instructions(text)) applyMetadata(image, ins);
  return image;
}

describe('image config as BuildKit writes it', () => {
  it('scratch starts with the default PATH and no history', () => {
    const image = startStage(undefined, linux);
    expect(image.config.config?.Env).toEqual(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
    expect(image.config.history).toEqual([]);
  });

  it('ENV replaces a variable in place and records one history entry', () => {
    const image = apply('ENV A=1 B=2\nENV PATH=/x A=3\n');
    expect(image.config.config?.Env).toEqual(['PATH=/x', 'A=3', 'B=2']);
    expect(image.config.history?.map((h) => h.created_by)).toEqual(['ENV A=1 B=2', 'ENV PATH=/x A=3']);
    expect(image.config.history?.every((h) => h.empty_layer && h.comment === 'buildkit.dockerfile.v0')).toBe(true);
  });

  it('ENTRYPOINT resets an inherited CMD but keeps one set in the same stage', () => {
    const base = apply('CMD ["base"]\n').config;
    expect(apply('ENTRYPOINT ["e"]\n', base).config.config?.Cmd).toBeNull();
    expect(apply('CMD ["mine"]\nENTRYPOINT ["e"]\n', base).config.config?.Cmd).toEqual(['mine']);
  });

  it('shell forms use SHELL or /bin/sh -c, and history quotes them as Go does', () => {
    const image = apply('CMD echo "hi"\nSHELL ["/bin/bash", "-eu", "-c"]\nENTRYPOINT run it\n');
    expect(image.config.config?.Entrypoint).toEqual(['/bin/bash', '-eu', '-c', 'run it']);
    expect(image.config.history?.map((h) => h.created_by)).toEqual([
      'CMD ["/bin/sh" "-c" "echo \\"hi\\""]',
      'SHELL [/bin/bash -eu -c]',
      'ENTRYPOINT ["/bin/bash" "-eu" "-c" "run it"]',
    ]);
  });

  it('LABEL, EXPOSE, USER, VOLUME, STOPSIGNAL, MAINTAINER, ONBUILD', () => {
    const image = apply('LABEL a=b\nEXPOSE 80 53/udp\nUSER app\nVOLUME /data\nSTOPSIGNAL SIGINT\nMAINTAINER me\nONBUILD RUN x\n');
    const c = image.config.config!;
    expect(c.Labels).toEqual({ a: 'b' });
    expect(c.ExposedPorts).toEqual({ '53/udp': {}, '80/tcp': {} });
    expect(c.User).toBe('app');
    expect(c.Volumes).toEqual({ '/data': {} });
    expect(c.StopSignal).toBe('SIGINT');
    expect(c.OnBuild).toEqual(['RUN x']);
    expect(image.config.author).toBe('me');
    // ONBUILD leaves no history entry.
    expect(image.config.history).toHaveLength(6);
  });

  it('a base image passes on its config but not its ONBUILD triggers', () => {
    const base = apply('ENV A=1\nONBUILD RUN x\n').config;
    const child = startStage(base, linux);
    expect(child.config.config?.Env).toContain('A=1');
    expect(child.config.config?.OnBuild).toBeNull();
    expect(child.config.history).toHaveLength(1);
  });

  it('WORKDIR joins relative paths and creates a layer unless it is /', () => {
    const image = startStage(undefined, linux);
    expect(applyWorkdir(image, '/app')).toEqual({ dir: '/app', withLayer: true });
    expect(applyWorkdir(image, 'sub/../src/')).toEqual({ dir: '/app/src', withLayer: true });
    expect(applyWorkdir(image, '/')).toEqual({ dir: '/', withLayer: false });
    expect(image.config.history?.map((h) => [h.created_by, h.empty_layer ?? false])).toEqual([
      ['WORKDIR /app', false],
      ['WORKDIR /app/src', false],
      ['WORKDIR /', true],
    ]);
  });

  it('RUN history lists the stage build args first, as BuildKit', () => {
    const image = startStage(undefined, linux);
    applyArg(image, [{ key: 'V', value: '1' }, { key: 'U', value: undefined }]);
    const args = runArgs(image, ['echo $V'], true);
    expect(args).toEqual(['/bin/sh', '-c', 'echo $V']);
    expect(runCommandString(args, image, (k) => (k === 'V' ? '2' : undefined))).toBe('|2 V=2 U= /bin/sh -c echo $V');
    expect(image.config.history?.[0]?.created_by).toBe('ARG V=1 U');
  });

  it('COPY/ADD history text', () => {
    const [copy] = instructions('COPY --chown=1:2 --chmod=644 a b /dst/\n');
    expect(copyCreatedBy(copy as Extract<Instruction, { kind: 'COPY' }>)).toBe('COPY --chown=1:2 --chmod=644 a b /dst/');
  });

  it('STOPSIGNAL takes what moby’s ParseSignal takes', () => {
    for (const ok of ['SIGTERM', 'term', 'KILL', '9', 'SIGRTMIN+3', 'RTMAX-14']) expect(isSignal(ok), ok).toBe(true);
    for (const bad of ['FOO', '0', 'SIGRTMIN+16', '']) expect(isSignal(bad), bad).toBe(false);
    expect(() => apply('STOPSIGNAL FOO\n')).toThrow('Invalid signal: FOO');
  });

  it('a base config keeps only what BuildKit reads from it, empty values dropped', () => {
    const base = {
      ...linux,
      created: '2024-01-01T00:00:00Z',
      comment: 'Imported from -',
      container_config: { Hostname: 'x' },
      config: { Hostname: 'abc', Env: ['A=1'], Cmd: null, OnBuild: [], Labels: {}, User: '' },
      rootfs: { type: 'layers' as const, diff_ids: [] },
      history: [{ created_by: 'x' }],
    };
    const out = dockerOCIImage(base as Parameters<typeof dockerOCIImage>[0]);
    expect(out).toEqual({ created: '2024-01-01T00:00:00Z', ...linux, config: { Env: ['A=1'] }, rootfs: { type: 'layers', diff_ids: [] }, history: [{ created_by: 'x' }] });
    // A stage on it starts without the base's creation time.
    expect(startStage(base as Parameters<typeof startStage>[0], linux).config.created).toBeUndefined();
  });
});
