import { describe, expect, it } from 'vitest';
import type { ImageConfig } from '../oci/types.js';
import { imageVolumes, parseMountFlag, parseMounts, parseVolumeFlag, processConfig, type ContainerFlags } from './spec.js';

const flags = (over: Partial<ContainerFlags> = {}): ContainerFlags => ({ env: [], envFile: [], volume: [], mount: [], tmpfs: [], publish: [], label: {}, ...over });
const image = (config: ImageConfig['config']): ImageConfig => ({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config });

describe('processConfig', () => {
  const img = image({ Entrypoint: ['/entry'], Cmd: ['default'], Env: ['A=1', 'B=2'], User: 'app', WorkingDir: '/srv', StopSignal: 'SIGQUIT' });

  it('joins ENTRYPOINT and CMD; a command replaces CMD only', () => {
    expect(processConfig(flags(), img, [], 'h')).toMatchObject({ path: '/entry', args: ['default'] });
    expect(processConfig(flags(), img, ['x', 'y'], 'h')).toMatchObject({ path: '/entry', args: ['x', 'y'] });
  });

  it('--entrypoint drops the image CMD; an empty one removes the entrypoint', () => {
    expect(processConfig(flags({ entrypoint: 'sh' }), img, [], 'h')).toMatchObject({ path: 'sh', args: [] });
    expect(processConfig(flags({ entrypoint: '' }), img, ['ls', '-l'], 'h')).toMatchObject({ path: 'ls', args: ['-l'], entrypoint: [] });
  });

  it('refuses a container with no command at all (exit status 125)', () => {
    expect(() => processConfig(flags(), image({}), [], 'h')).toThrow(expect.objectContaining({ exitCode: 125 }));
  });

  it('takes the image user, workdir and stop signal unless flags override them; -e NAME copies from the environment', () => {
    process.env.KILN_SPEC_TEST = 'from-env';
    const c = processConfig(flags({ env: ['B=3', 'KILN_SPEC_TEST', 'KILN_SPEC_UNSET'], user: '1000:1000' }), img, [], 'h');
    expect(c).toMatchObject({ user: '1000:1000', workingDir: '/srv', stopSignal: 'SIGQUIT' });
    expect(c.env).toEqual(['A=1', 'B=2', 'B=3', 'KILN_SPEC_TEST=from-env']);
  });
});

describe('mount flags', () => {
  it('-v tells bind mounts (paths), named volumes and anonymous volumes apart', () => {
    expect(parseVolumeFlag('/tmp:/mnt:ro', '/')).toEqual({ type: 'bind', source: '/tmp', destination: '/mnt', readOnly: true });
    expect(parseVolumeFlag('data:/var/lib/data', '/')).toEqual({ type: 'volume', source: 'data', destination: '/var/lib/data', readOnly: false });
    expect(parseVolumeFlag('/cache', '/')).toEqual({ type: 'volume', source: '', destination: '/cache', readOnly: false, anonymous: true });
    expect(() => parseVolumeFlag('data:relative', '/')).toThrow(/absolute path/);
    expect(() => parseVolumeFlag('bad name!:/x', '/')).toThrow(/invalid characters for a local volume name/);
  });

  it('--mount reads docker keys and aliases', () => {
    expect(parseMountFlag('type=bind,src=/tmp,dst=/m,readonly', '/')).toEqual({ type: 'bind', source: '/tmp', destination: '/m', readOnly: true });
    expect(parseMountFlag('type=tmpfs,destination=/t,tmpfs-size=1m', '/')).toEqual({ type: 'tmpfs', destination: '/t', readOnly: false, options: ['size=1m'] });
    expect(parseMountFlag('source=v,target=/v', '/')).toMatchObject({ type: 'volume', source: 'v', destination: '/v' });
    expect(() => parseMountFlag('type=bind,source=/no/such/dir/here,target=/m', '/')).toThrow(/bind source path does not exist/);
    expect(() => parseMountFlag('type=bind,source=/tmp', '/')).toThrow(/target is required/);
  });

  it('refuses two mounts on one destination', () => {
    expect(() => parseMounts({ volume: ['/a'], mount: [], tmpfs: ['/a'] })).toThrow(/Duplicate mount point: \/a/);
  });

  it('gives every image VOLUME no mount covers an anonymous volume', () => {
    const mounts = parseMounts({ volume: ['named:/data'], mount: [], tmpfs: [] });
    const extra = imageVolumes(image({ Volumes: { '/data': {}, '/logs': {} } }), mounts);
    expect(extra).toEqual([{ type: 'volume', source: '', destination: '/logs', readOnly: false, anonymous: true }]);
  });
});
