/**
 * Manifests and indexes over the API: GET with an Accept list of the types kiln reads, validation of
 * what comes back (shape, media type, digests), verification against the digest that named it, and
 * PUT with the document's exact media type.
 */
import { isDigest, sha256, type Digest } from '../oci/digest.js';
import { MediaType, isIndexMediaType, isManifestMediaType } from '../oci/mediatypes.js';
import type { Descriptor, Index, Manifest } from '../oci/types.js';
import { repositoryScope } from './auth/authenticator.js';
import { RegistryClient } from './client.js';
import { DigestMismatchError, ManifestInvalidError, NotFoundError } from './errors.js';
import { headerValue, readBody } from './transport/http.js';
import { endpointOf } from './transport/status.js';

/** What kiln asks for, most capable first: indexes, then single manifests, OCI and Docker. */
export const MANIFEST_ACCEPT = [MediaType.ociIndex, MediaType.dockerManifestList, MediaType.ociManifest, MediaType.dockerManifest].join(', ');

/** containerd's bound: a manifest larger than this is not a manifest. */
export const MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

export type ManifestDocument = { kind: 'manifest'; mediaType: string; manifest: Manifest } | { kind: 'index'; mediaType: string; index: Index };

export interface FetchedManifest {
  raw: Buffer;
  digest: Digest;
  mediaType: string;
  doc: ManifestDocument;
}

function contentType(value: string | undefined): string | undefined {
  return value?.split(';')[0]?.trim().toLowerCase() || undefined;
}

/** `repo:tag` or `repo@digest`, for messages. */
export function refLabel(repository: string, reference: string): string {
  return isDigest(reference) ? `${repository}@${reference}` : `${repository}:${reference}`;
}

function validDescriptor(d: unknown): d is Descriptor {
  if (typeof d !== 'object' || d === null) return false;
  const x = d as Descriptor;
  return typeof x.mediaType === 'string' && typeof x.digest === 'string' && Number.isSafeInteger(x.size) && x.size >= 0;
}

/**
 * Parses and checks a manifest or index. `headerType` is the response's Content-Type; the
 * document's own `mediaType` wins when present (a registry may label OCI documents loosely).
 */
export function parseManifest(raw: Buffer, headerType: string | undefined, ctx: { registry: string; endpoint?: string }): ManifestDocument {
  const fail = (why: string): never => {
    throw new ManifestInvalidError(`invalid manifest: ${why}`, ctx);
  };
  if (raw.length > MAX_MANIFEST_SIZE) fail(`${raw.length} bytes is larger than the ${MAX_MANIFEST_SIZE}-byte limit`);
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    return fail(`not JSON (${(err as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) fail('not a JSON object');
  if (doc.schemaVersion === 1) fail('Docker schema 1 manifests are not supported (push the image again with a current client)');
  if (doc.schemaVersion !== 2) fail(`schemaVersion is ${JSON.stringify(doc.schemaVersion)}, expected 2`);
  const declared = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  let mediaType = declared ?? contentType(headerType);
  if (!mediaType || (!isManifestMediaType(mediaType) && !isIndexMediaType(mediaType))) {
    // OCI documents may omit mediaType; their shape says what they are.
    if (Array.isArray(doc.manifests)) mediaType = MediaType.ociIndex;
    else if (doc.config !== undefined) mediaType = MediaType.ociManifest;
    else fail(`unsupported media type ${JSON.stringify(mediaType ?? null)}`);
  }
  const mt = mediaType!;
  if (isIndexMediaType(mt)) {
    if (!Array.isArray(doc.manifests)) fail('an index without a manifests array');
    const manifests = doc.manifests as unknown[];
    manifests.forEach((d, i) => {
      if (!validDescriptor(d)) fail(`manifests[${i}] is not a descriptor`);
      checkDigest((d as Descriptor).digest, `manifests[${i}]`, fail);
    });
    return { kind: 'index', mediaType: mt, index: doc as unknown as Index };
  }
  if (!validDescriptor(doc.config)) fail('config is missing or not a descriptor');
  checkDigest((doc.config as Descriptor).digest, 'config', fail);
  if (!Array.isArray(doc.layers)) fail('layers is missing or not an array');
  (doc.layers as unknown[]).forEach((d, i) => {
    if (!validDescriptor(d)) fail(`layers[${i}] is not a descriptor`);
    checkDigest((d as Descriptor).digest, `layers[${i}]`, fail);
  });
  return { kind: 'manifest', mediaType: mt, manifest: doc as unknown as Manifest };
}

function checkDigest(d: string, where: string, fail: (why: string) => never): void {
  if (isDigest(d)) return;
  if (!d.startsWith('sha256:') && /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(d)) fail(`${where} uses a digest algorithm kiln does not support (${d.split(':')[0]})`);
  fail(`${where} has an invalid digest ${JSON.stringify(d.slice(0, 80))}`);
}

/**
 * Fetches a manifest or index by tag or digest, verified: against `reference` when it is a digest,
 * and against the registry's Docker-Content-Digest header when it sent one.
 */
export async function fetchManifest(client: RegistryClient, repository: string, reference: string): Promise<FetchedManifest> {
  const res = await client.request({
    method: 'GET',
    path: `/v2/${repository}/manifests/${reference}`,
    scopes: [repositoryScope(repository, 'pull')],
    headers: { Accept: MANIFEST_ACCEPT },
    expect: [200],
    subject: refLabel(repository, reference),
  });
  const ctx = { registry: client.registry, endpoint: endpointOf('GET', res.url) };
  const declared = Number(headerValue(res.headers, 'content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > MAX_MANIFEST_SIZE) {
    res.body.destroy();
    throw new ManifestInvalidError(`invalid manifest: ${declared} bytes is larger than the ${MAX_MANIFEST_SIZE}-byte limit`, ctx);
  }
  const raw = await readBody(res, MAX_MANIFEST_SIZE + 1);
  const digest = sha256(raw);
  if (isDigest(reference) && digest !== reference) {
    throw new DigestMismatchError(`manifest ${refLabel(repository, reference)} hashes to ${digest}`, ctx);
  }
  const claimed = headerValue(res.headers, 'docker-content-digest');
  if (claimed && isDigest(claimed) && claimed !== digest) {
    throw new DigestMismatchError(`manifest ${refLabel(repository, reference)} hashes to ${digest}, the registry says ${claimed}`, ctx);
  }
  const doc = parseManifest(raw, headerValue(res.headers, 'content-type'), ctx);
  return { raw, digest, mediaType: doc.mediaType, doc };
}

/** The digest, type and size the registry has for a tag or digest, or undefined when it has none. */
export async function headManifest(
  client: RegistryClient,
  repository: string,
  reference: string,
  scopes: readonly string[] = [repositoryScope(repository, 'pull')],
): Promise<{ digest: Digest | undefined; mediaType: string | undefined; size: number | undefined } | undefined> {
  try {
    const res = await client.request({
      method: 'HEAD',
      path: `/v2/${repository}/manifests/${reference}`,
      scopes,
      headers: { Accept: MANIFEST_ACCEPT },
      expect: [200],
      subject: refLabel(repository, reference),
    });
    res.body.resume();
    const d = headerValue(res.headers, 'docker-content-digest');
    const size = Number(headerValue(res.headers, 'content-length') ?? NaN);
    return {
      digest: d && isDigest(d) ? d : undefined,
      mediaType: contentType(headerValue(res.headers, 'content-type')),
      size: Number.isFinite(size) ? size : undefined,
    };
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

/** Uploads a manifest or index under a tag or its digest, with its exact media type. */
export async function putManifest(client: RegistryClient, repository: string, reference: string, raw: Buffer, mediaType: string): Promise<Digest> {
  const digest = sha256(raw);
  const res = await client.request({
    method: 'PUT',
    path: `/v2/${repository}/manifests/${reference}`,
    scopes: [repositoryScope(repository, 'pull,push')],
    headers: { 'Content-Type': mediaType },
    body: raw,
    expect: [200, 201, 202],
    subject: refLabel(repository, reference),
  });
  res.body.resume();
  const claimed = headerValue(res.headers, 'docker-content-digest');
  if (claimed && isDigest(claimed) && claimed !== digest) {
    throw new DigestMismatchError(`the registry stored manifest ${refLabel(repository, reference)} as ${claimed}, kiln sent ${digest}`, {
      registry: client.registry,
      endpoint: endpointOf('PUT', res.url),
    });
  }
  return digest;
}
