import { describe, expect, it } from 'vitest';
import { MediaType } from '../oci/mediatypes.js';
import { ManifestInvalidError } from './errors.js';
import { parseManifest } from './manifest.js';

const ctx = { registry: 'reg.example', endpoint: 'GET /v2/app/manifests/1' };
const d = (n: string) => ({ mediaType: 'x', digest: `sha256:${n.repeat(64)}`, size: 3 });
const parse = (doc: unknown, type?: string) => parseManifest(Buffer.from(typeof doc === 'string' ? doc : JSON.stringify(doc)), type, ctx);

describe('parseManifest', () => {
  it('reads OCI and Docker manifests and indexes, by their mediaType or by the header', () => {
    expect(parse({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: d('a'), layers: [d('b')] }).kind).toBe('manifest');
    expect(parse({ schemaVersion: 2, config: d('a'), layers: [] }, `${MediaType.dockerManifest}; charset=utf-8`).mediaType).toBe(MediaType.dockerManifest);
    expect(parse({ schemaVersion: 2, manifests: [d('c')] }, MediaType.dockerManifestList).kind).toBe('index');
    // No type anywhere: the shape decides.
    expect(parse({ schemaVersion: 2, manifests: [] }, 'application/json').mediaType).toBe(MediaType.ociIndex);
  });

  it.each([
    ['not JSON', '{ nope', /not JSON/],
    ['an array', '[]', /not a JSON object/],
    ['schema 1', { schemaVersion: 1, name: 'x' }, /schema 1 manifests are not supported/],
    ['schemaVersion 3', { schemaVersion: 3 }, /schemaVersion is 3/],
    ['no layers', { schemaVersion: 2, mediaType: MediaType.ociManifest, config: d('a') }, /layers is missing/],
    ['a bad config', { schemaVersion: 2, mediaType: MediaType.ociManifest, config: { ...d('a'), size: -1 }, layers: [] }, /config is missing or not a descriptor/],
    ['a bad layer digest', { schemaVersion: 2, mediaType: MediaType.ociManifest, config: d('a'), layers: [{ ...d('b'), digest: 'sha256:zz' }] }, /layers\[0\] has an invalid digest/],
    ['sha512', { schemaVersion: 2, mediaType: MediaType.ociManifest, config: { ...d('a'), digest: `sha512:${'a'.repeat(128)}` }, layers: [] }, /digest algorithm kiln does not support \(sha512\)/],
    ['an index without manifests', { schemaVersion: 2, mediaType: MediaType.ociIndex }, /without a manifests array/],
    ['an unknown type', { schemaVersion: 2, mediaType: 'application/vnd.example+json' }, /unsupported media type/],
  ])('refuses %s, saying why', (_name, doc, why) => {
    let err: unknown;
    try {
      parse(doc);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ManifestInvalidError);
    expect((err as ManifestInvalidError).message).toMatch(why);
    expect((err as ManifestInvalidError).message).toMatch(/^reg\.example: invalid manifest: .*\(GET \/v2\/app\/manifests\/1\)$/);
  });

  it('refuses documents over 4 MiB', () => {
    expect(() => parseManifest(Buffer.alloc(4 * 1024 * 1024 + 1, 32), undefined, ctx)).toThrow(/larger than the 4194304-byte limit/);
  });
});
