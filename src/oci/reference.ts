/**
 * Image references as docker normalises them: `busybox` is `docker.io/library/busybox:latest`,
 * `host:port/repo`, tags, `@sha256:` digests, or both. The grammar is the distribution project's
 * reference grammar; normalisation is docker's (`ParseNormalizedNamed`).
 */
import { KilnError } from '../errors.js';

export const DEFAULT_DOMAIN = 'docker.io';
export const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
export const OFFICIAL_REPO_PREFIX = 'library/';
export const DEFAULT_TAG = 'latest';
const NAME_TOTAL_LENGTH_MAX = 255;

// Path components: lowercase alphanumerics separated by `.`, `_`, `__` or runs of `-`.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
// A host name or IPv4 (labels of alphanumerics and inner dashes), or a bracketed IPv6, with a port.
const DOMAIN = /^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;
const HEX64 = /^[a-f0-9]{64}$/;

export class InvalidReferenceError extends KilnError {
  constructor(readonly reference: string, reason: string) {
    super('INVALID_REFERENCE', `invalid reference "${reference}": ${reason}`, {
      hint: 'references look like name[:tag][@digest], e.g. busybox, registry.example:5000/team/app:1.0',
    });
  }
}

/** A fully normalised image reference. */
export interface Reference {
  /** Registry host (with port): `docker.io`, `127.0.0.1:5000`. */
  domain: string;
  /** Repository path within the registry: `library/busybox`. */
  path: string;
  /** Tag, when given (or defaulted by `withDefaultTag`). */
  tag?: string;
  /** Digest, when given. */
  digest?: string;
}

/** `domain/path` */
export function repositoryName(ref: Reference): string {
  return `${ref.domain}/${ref.path}`;
}

/** The canonical string: `docker.io/library/busybox:latest`, `host/repo@sha256:...`, or both. */
export function formatReference(ref: Reference): string {
  let s = repositoryName(ref);
  if (ref.tag) s += `:${ref.tag}`;
  if (ref.digest) s += `@${ref.digest}`;
  return s;
}

/** The short form docker shows: `busybox:latest`, `team/app:1`, `127.0.0.1:5000/app:1`. */
export function familiarString(ref: Reference): string {
  let name = repositoryName(ref);
  if (ref.domain === DEFAULT_DOMAIN) {
    name = ref.path.startsWith(OFFICIAL_REPO_PREFIX) && !ref.path.slice(OFFICIAL_REPO_PREFIX.length).includes('/')
      ? ref.path.slice(OFFICIAL_REPO_PREFIX.length)
      : ref.path;
  }
  return name + (ref.tag ? `:${ref.tag}` : '') + (ref.digest ? `@${ref.digest}` : '');
}

/** Splits `name` into domain and remainder the way docker decides whether the first part is a host. */
function splitDomain(name: string): [string, string] {
  const slash = name.indexOf('/');
  let domain: string;
  let remainder: string;
  if (slash === -1) {
    [domain, remainder] = [DEFAULT_DOMAIN, name];
  } else {
    const first = name.slice(0, slash);
    // A first component is a host only when it looks like one: a dot, a port, `localhost`, or
    // upper case (repository paths are always lower case).
    const isHost = /[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first;
    [domain, remainder] = isHost ? [first, name.slice(slash + 1)] : [DEFAULT_DOMAIN, name];
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !remainder.includes('/')) remainder = OFFICIAL_REPO_PREFIX + remainder;
  return [domain, remainder];
}

/**
 * Parses and normalises a reference as docker does. Throws InvalidReferenceError with docker's
 * reason (`repository name must be lowercase`, `invalid reference format`, ...).
 */
export function parseReference(input: string): Reference {
  if (input === '') throw new InvalidReferenceError(input, 'repository name must have at least one component');
  if (HEX64.test(input)) {
    throw new InvalidReferenceError(input, 'cannot specify 64-byte hexadecimal strings');
  }
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new InvalidReferenceError(input, 'invalid reference format');
    if (digest.startsWith('sha256:') && !SHA256_DIGEST.test(digest)) {
      throw new InvalidReferenceError(input, 'invalid checksum digest format');
    }
  }
  let tag: string | undefined;
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > rest.lastIndexOf('/')) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG.test(tag)) throw new InvalidReferenceError(input, 'invalid reference format');
  }
  const [domain, path] = splitDomain(rest);
  if (!DOMAIN.test(domain)) throw new InvalidReferenceError(input, 'invalid reference format');
  const components = path.split('/');
  for (const c of components) {
    if (!PATH_COMPONENT.test(c)) {
      const reason = PATH_COMPONENT.test(c.toLowerCase())
        ? 'repository name must be lowercase'
        : 'invalid reference format';
      throw new InvalidReferenceError(input, reason);
    }
  }
  if (domain.length + 1 + path.length > NAME_TOTAL_LENGTH_MAX) {
    throw new InvalidReferenceError(input, `repository name must not be more than ${NAME_TOTAL_LENGTH_MAX} characters`);
  }
  const ref: Reference = { domain, path };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** The reference with `latest` added when it has neither tag nor digest (docker's TagNameOnly). */
export function withDefaultTag(ref: Reference): Reference {
  return ref.tag === undefined && ref.digest === undefined ? { ...ref, tag: DEFAULT_TAG } : ref;
}

/** Parses, normalises and defaults the tag: what `docker pull NAME` would fetch. */
export function normalizeReference(input: string): Reference {
  return withDefaultTag(parseReference(input));
}

export function isValidReference(input: string): boolean {
  try {
    parseReference(input);
    return true;
  } catch {
    return false;
  }
}

/** `busybox` → `docker.io/library/busybox:latest`: the name the store records. */
export function normalizeName(input: string): string {
  return formatReference(normalizeReference(input));
}

/** A normalised name in the short form people type, for display. */
export function familiarName(normalized: string): string {
  return familiarString(parseReference(normalized));
}
