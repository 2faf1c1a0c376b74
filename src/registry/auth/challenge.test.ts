import { describe, expect, it } from 'vitest';
import { challengeScopes, parseChallenges } from './challenge.js';

describe('parseChallenges', () => {
  it('reads a docker token challenge', () => {
    expect(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"')).toEqual([
      {
        scheme: 'bearer',
        params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' },
      },
    ]);
  });

  it('reads Basic with a realm, case-insensitively', () => {
    expect(parseChallenges('BASIC Realm="Registry Realm"')).toEqual([{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
  });

  it('splits several challenges in one header', () => {
    const got = parseChallenges('Basic realm="a, b", Bearer realm="https://t/token", service=reg ,scope="x y"');
    expect(got).toEqual([
      { scheme: 'basic', params: { realm: 'a, b' } },
      { scheme: 'bearer', params: { realm: 'https://t/token', service: 'reg', scope: 'x y' } },
    ]);
    expect(challengeScopes(got[1])).toEqual(['x', 'y']);
  });

  it('reads several header values', () => {
    expect(parseChallenges(['Basic realm="r"', 'Bearer realm="t"']).map((c) => c.scheme)).toEqual(['basic', 'bearer']);
  });

  it('unescapes quoted values', () => {
    expect(parseChallenges('Bearer realm="a \\"quoted\\" \\\\ realm",error="insufficient_scope"')[0]!.params).toEqual({
      realm: 'a "quoted" \\ realm',
      error: 'insufficient_scope',
    });
  });

  it('keeps schemes without parameters and token68 forms', () => {
    expect(parseChallenges('Negotiate, NTLM abc123==, Basic realm=x')).toEqual([
      { scheme: 'negotiate', params: {} },
      { scheme: 'ntlm', params: {}, token68: 'abc123==' },
      { scheme: 'basic', params: { realm: 'x' } },
    ]);
  });

  it('tolerates empty list elements, spaces around =, and garbage', () => {
    expect(parseChallenges(' , Bearer  realm = "r" , , service="s",')).toEqual([{ scheme: 'bearer', params: { realm: 'r', service: 's' } }]);
    expect(parseChallenges('')).toEqual([]);
    expect(parseChallenges(undefined)).toEqual([]);
    expect(parseChallenges('"bad", Basic realm="ok"')).toEqual([{ scheme: 'basic', params: { realm: 'ok' } }]);
  });

  it('keeps an unterminated quoted value to the end', () => {
    expect(parseChallenges('Bearer realm="https://x/token')[0]!.params.realm).toBe('https://x/token');
  });
});
