import { describe, expect, it } from 'vitest';
import { InvalidReferenceError, familiarString, formatReference, normalizeReference, parseReference } from './reference.js';

describe('image references', () => {
  it.each([
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['team/app', 'docker.io/team/app:latest'],
    ['index.docker.io/library/alpine:3', 'docker.io/library/alpine:3'],
    ['127.0.0.1:5000/app:1', '127.0.0.1:5000/app:1'],
    ['localhost/app', 'localhost/app:latest'],
    ['registry.example/a/b/c:v1.2-rc', 'registry.example/a/b/c:v1.2-rc'],
    [`app@sha256:${'a'.repeat(64)}`, `docker.io/library/app@sha256:${'a'.repeat(64)}`],
    [`app:1@sha256:${'b'.repeat(64)}`, `docker.io/library/app:1@sha256:${'b'.repeat(64)}`],
    ['[::1]:5000/app', '[::1]:5000/app:latest'],
  ])('%s normalises to %s', (input, expected) => {
    expect(formatReference(normalizeReference(input))).toBe(expected);
  });

  it('shows familiar names as docker does', () => {
    expect(familiarString(normalizeReference('busybox'))).toBe('busybox:latest');
    expect(familiarString(normalizeReference('team/app:2'))).toBe('team/app:2');
    expect(familiarString(normalizeReference('127.0.0.1:5000/x'))).toBe('127.0.0.1:5000/x:latest');
  });

  it.each([
    ['', 'at least one component'],
    ['Busybox', 'must be lowercase'],
    ['a b', 'invalid reference format'],
    ['app:', 'invalid reference format'],
    ['app@sha256:abc', 'invalid reference format'],
    ['a'.repeat(64).replace(/a/g, 'f'), '64-byte hexadecimal'],
    ['-app', 'invalid reference format'],
  ])('refuses %j (%s)', (input, reason) => {
    expect(() => parseReference(input)).toThrow(InvalidReferenceError);
    expect(() => parseReference(input)).toThrow(reason);
  });
});
