import { describe, expect, it } from 'vitest';
import { UsageError } from '../errors.js';
import { DEFAULT_MOUNTS_MAX_SIZE, parseCacheFrom, parseCacheTo } from './spec.js';

describe('--cache-to', () => {
  it('reads buildx syntax with kiln options', () => {
    expect(parseCacheTo('type=registry,ref=reg.example:5000/team/app:cache,mode=max,mounts=true,mounts-max-size=64m')).toEqual({
      type: 'registry',
      ref: 'reg.example:5000/team/app:cache',
      mode: 'max',
      mounts: true,
      mountsMaxSize: 64 * 1024 * 1024,
      ignoreError: false,
    });
    expect(parseCacheTo('type=local,dest=/tmp/c')).toEqual({ type: 'local', dest: '/tmp/c', mode: 'min', mounts: false, mountsMaxSize: DEFAULT_MOUNTS_MAX_SIZE, ignoreError: false });
    expect(parseCacheTo('type=registry,ref=r.example/a:c,image-manifest=true,oci-mediatypes=true,compression=gzip,ignore-error=true')).toMatchObject({ ignoreError: true });
    expect(parseCacheTo('type=inline')).toEqual({ type: 'inline' });
    expect(parseCacheTo('type=registry,ref=app:cache').type === 'registry' && parseCacheTo('type=registry,ref=app:cache')).toMatchObject({ ref: 'docker.io/library/app:cache' });
  });

  it('refuses what it cannot do, in one line naming the part at fault', () => {
    for (const [value, message] of [
      ['type=gha', /unsupported --cache-to type "gha"/],
      ['ref=x', /type= is missing/],
      ['type=registry', /needs ref=/],
      ['type=local,mode=max', /needs dest=DIR/],
      ['type=registry,ref=x,mode=all', /invalid mode "all"/],
      ['type=registry,ref=x,mounts=yes', /invalid mounts "yes"/],
      ['type=registry,ref=x,mounts-max-size=lots', /invalid mounts-max-size "lots"/],
      ['type=registry,ref=x,colour=blue', /unknown option "colour"/],
      ['type=inline,mode=max', /only mode=min/],
      ['type=registry,ref=x,compression=zstd', /unsupported compression "zstd"/],
      ['type=registry,ref=x,image-manifest=false', /image-manifest=false is not supported/],
      ['type=registry,ref=app:t:t', /invalid ref "app:t:t"/],
    ] as const) {
      expect(() => parseCacheTo(value), value).toThrow(UsageError);
      expect(() => parseCacheTo(value), value).toThrow(message);
    }
  });
});

describe('--cache-from', () => {
  it('takes a bare reference as type=registry, as buildx', () => {
    expect(parseCacheFrom('localhost:5000/app:cache')).toEqual({ type: 'registry', ref: 'localhost:5000/app:cache' });
    expect(parseCacheFrom('type=registry,ref=localhost:5000/app:cache')).toEqual({ type: 'registry', ref: 'localhost:5000/app:cache' });
    expect(parseCacheFrom('type=local,src=./cache')).toEqual({ type: 'local', src: './cache' });
    expect(() => parseCacheFrom('type=local')).toThrow(/needs src=DIR/);
    expect(() => parseCacheFrom('type=s3,bucket=b')).toThrow(/unsupported --cache-from type "s3"/);
  });
});
