import { describe, expect, it } from 'vitest';
import { isInsecureAllowed, isLoopbackHost } from '../hosts.js';
import { parseErrorBody } from '../errors.js';
import { errorForStatus } from './status.js';
import { Backoff, parseRetryAfter } from './retry.js';

describe('Backoff', () => {
  it('doubles up to the cap and stops after the attempts', () => {
    const b = new Backoff({ attempts: 4, baseDelayMs: 100, maxDelayMs: 250, budgetMs: 60_000 });
    const waits = [b.next(), b.next(), b.next(), b.next()];
    expect(waits[0]).toBeGreaterThanOrEqual(50);
    expect(waits[0]).toBeLessThanOrEqual(100);
    expect(waits[1]).toBeGreaterThanOrEqual(100);
    expect(waits[2]).toBeLessThanOrEqual(250);
    expect(waits[3]).toBeUndefined();
  });

  it('honours a Retry-After that fits the budget and refuses one that does not', () => {
    const b = new Backoff({ attempts: 5, baseDelayMs: 100, maxDelayMs: 1000, budgetMs: 5_000 });
    expect(b.next(2_000)).toBe(2_000);
    expect(b.next(60_000)).toBeUndefined();
  });

  it('parses Retry-After seconds and dates', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter(new Date(Date.now() + 10_000).toUTCString())).toBeGreaterThan(8_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });
});

describe('hosts', () => {
  it('knows loopback and the insecure list', () => {
    for (const h of ['127.0.0.1:5000', '127.9.8.7', 'localhost:5000', 'foo.localhost', '[::1]:5000', '::1']) expect(isLoopbackHost(h)).toBe(true);
    for (const h of ['10.0.0.1:5000', 'registry.example', '128.0.0.1', '[::2]:5000']) expect(isLoopbackHost(h)).toBe(false);
    expect(isInsecureAllowed('registry.example:5000', ['registry.example'])).toBe(true);
    expect(isInsecureAllowed('registry.example:5000', ['registry.example:5000'])).toBe(true);
    expect(isInsecureAllowed('registry.example:5000', ['other.example'])).toBe(false);
  });
});

describe('registry errors', () => {
  it('maps statuses and codes to typed errors with the registry and endpoint in one line', () => {
    const info = { registry: 'reg.example', endpoint: 'GET /v2/a/manifests/1' };
    const body = (s: string) => parseErrorBody(Buffer.from(s));
    expect(errorForStatus(401, body('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'), info).constructor.name).toBe('AuthError');
    expect(errorForStatus(403, [], info).constructor.name).toBe('DeniedError');
    const nf = errorForStatus(404, body('{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"a"}}]}'), info);
    expect(nf.constructor.name).toBe('NotFoundError');
    expect(nf.message).toBe('reg.example: repository not found: repository name not known to registry (GET /v2/a/manifests/1: 404)');
    expect(errorForStatus(429, [], { ...info, retryAfter: '7' }).message).toMatch(/wait 7s/);
    expect(errorForStatus(400, body('{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}'), info).constructor.name).toBe('ManifestInvalidError');
    expect(errorForStatus(400, body('{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}'), info).constructor.name).toBe(
      'DigestMismatchError',
    );
    expect(errorForStatus(502, body('<html>bad gateway</html>'), info).message).toBe('reg.example: server error 502 (GET /v2/a/manifests/1: 502)');
    expect(parseErrorBody(Buffer.from('{"error":"invalid_grant"}'))).toEqual([{ code: 'INVALID_GRANT', message: '' }]);
  });
});
