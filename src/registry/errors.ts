/**
 * Typed failures of talking to a registry. Each names the registry and the endpoint (method and
 * path, never a query string: upload URLs carry signed state, token URLs carry scopes) and carries
 * what the registry itself said, parsed from the distribution spec's `{"errors": [...]}` body, so
 * the one line the CLI prints is enough to act on.
 */
import { KilnError, type KilnErrorOptions } from '../errors.js';

/** One entry of the distribution spec's error body. */
export interface RegistryErrorDetail {
  code: string;
  message: string;
  detail?: unknown;
}

export interface RegistryErrorContext {
  /** Registry host as the user named it (`127.0.0.1:5000`, `docker.io`). */
  registry: string;
  /** `GET /v2/app/manifests/1`: what was asked when it failed. */
  endpoint?: string;
  status?: number;
  /** The registry's own error entries, when its body had any. */
  errors?: RegistryErrorDetail[];
}

export class RegistryError extends KilnError {
  readonly registry: string;
  readonly endpoint: string | undefined;
  readonly status: number | undefined;
  readonly errors: RegistryErrorDetail[];
  /** Set when the request can be started over with success in view (e.g. a token was refreshed). */
  retryable = false;

  constructor(code: string, summary: string, ctx: RegistryErrorContext, options: KilnErrorOptions = {}) {
    super(code, composeMessage(summary, ctx), options);
    this.registry = ctx.registry;
    this.endpoint = ctx.endpoint;
    this.status = ctx.status;
    this.errors = ctx.errors ?? [];
  }
}

function composeMessage(summary: string, ctx: RegistryErrorContext): string {
  // The message says it in words; the code only when there are none. Each thing is said once.
  const said = (ctx.errors ?? [])
    .map((e) => e.message.trim() || (e.code && e.code !== 'UNKNOWN' ? e.code.toLowerCase().replace(/_/g, ' ') : ''))
    .filter((s) => s && s.toLowerCase() !== summary.toLowerCase())
    .filter((s, i, all) => all.indexOf(s) === i);
  let msg = `${ctx.registry}: ${summary}`;
  if (said.length) msg += `: ${said.join('; ')}`;
  if (ctx.endpoint) msg += ` (${ctx.endpoint}${ctx.status ? `: ${ctx.status}` : ''})`;
  return msg.replace(/\s*\n\s*/g, ' ');
}

/** Credentials missing or refused (HTTP 401 after the auth flow ran, or the token server said no). */
export class AuthError extends RegistryError {
  constructor(summary: string, ctx: RegistryErrorContext, options: KilnErrorOptions = {}) {
    super('REGISTRY_AUTH', summary, ctx, {
      hint: `check the credentials for ${ctx.registry} (kiln login ${ctx.registry})`,
      ...options,
    });
  }
}

/** Authenticated, but not allowed to do this (HTTP 403, DENIED). */
export class DeniedError extends RegistryError {
  constructor(summary: string, ctx: RegistryErrorContext, options: KilnErrorOptions = {}) {
    super('REGISTRY_DENIED', summary, ctx, {
      hint: 'the account has no access to this repository for this action; check the repository name and its permissions',
      ...options,
    });
  }
}

/** Repository, tag, manifest or blob unknown (HTTP 404, NAME_UNKNOWN, MANIFEST_UNKNOWN, BLOB_UNKNOWN). */
export class NotFoundError extends RegistryError {
  constructor(summary: string, ctx: RegistryErrorContext, options: KilnErrorOptions = {}) {
    super('REGISTRY_NOT_FOUND', summary, ctx, {
      hint: 'check the repository name and the tag or digest; names are case-sensitive and the tag defaults to latest',
      ...options,
    });
  }
}

/** The registry kept answering 429, or asked to wait longer than kiln's retry budget allows. */
export class RateLimitedError extends RegistryError {
  constructor(summary: string, ctx: RegistryErrorContext & { retryAfterMs?: number }, options: KilnErrorOptions = {}) {
    const wait = ctx.retryAfterMs !== undefined ? ` (the registry asks to wait ${Math.ceil(ctx.retryAfterMs / 1000)}s)` : '';
    super('REGISTRY_RATE_LIMITED', summary + wait, ctx, {
      hint: 'the registry is limiting requests; try again later, or log in (authenticated pulls usually have higher limits)',
      ...options,
    });
  }
}

/** Content from the registry does not match the digest (or size) that names it; nothing was kept. */
export class DigestMismatchError extends RegistryError {
  constructor(summary: string, ctx: RegistryErrorContext, options: KilnErrorOptions = {}) {
    super('REGISTRY_DIGEST_MISMATCH', summary, ctx, {
      hint: 'the registry (or something between it and kiln) served corrupt content; nothing was stored, try again or report it to the registry operator',
      ...options,
    });
  }
}

/** A manifest or index that is not valid JSON of a supported type, or that the registry rejected. */
export class ManifestInvalidError extends RegistryError {
  constructor(summary: string, ctx: RegistryErrorContext, options: KilnErrorOptions = {}) {
    super('REGISTRY_MANIFEST_INVALID', summary, ctx, {
      hint: 'kiln reads OCI and Docker schema 2 manifests and indexes',
      ...options,
    });
  }
}

/** The registry could not be reached, or kept failing (connection errors, 5xx) past the retry budget. */
export class RegistryUnavailableError extends RegistryError {
  constructor(summary: string, ctx: RegistryErrorContext, options: KilnErrorOptions = {}) {
    super('REGISTRY_UNAVAILABLE', summary, ctx, {
      hint: 'check that the registry is up and reachable from here; a plain-HTTP registry that is not on loopback needs --insecure-registry HOST',
      ...options,
    });
  }
}

/** A TLS handshake that failed (unknown CA, wrong name), with where to put a CA certificate. */
export class TlsError extends RegistryError {
  constructor(summary: string, ctx: RegistryErrorContext, options: KilnErrorOptions = {}) {
    super('REGISTRY_TLS', summary, ctx, {
      hint: `put the registry's CA certificate in /etc/containers/certs.d/${ctx.registry}/ca.crt (or /etc/docker/certs.d/...), or use --insecure-registry ${ctx.registry} for a plain-HTTP registry`,
      ...options,
    });
  }
}

/** Anything else the registry answered that the protocol does not allow at that point. */
export class RegistryProtocolError extends RegistryError {
  constructor(summary: string, ctx: RegistryErrorContext, options: KilnErrorOptions = {}) {
    super('REGISTRY_PROTOCOL', summary, ctx, options);
  }
}

/** A `docker-credential-<name>` helper that is missing or failed. */
export class CredentialHelperError extends KilnError {
  constructor(readonly helper: string, message: string, options: KilnErrorOptions = {}) {
    super('CREDENTIAL_HELPER', `docker-credential-${helper}: ${message}`, {
      hint: `install docker-credential-${helper} on PATH, or remove it from credHelpers/credsStore in the docker config`,
      ...options,
    });
  }
}

/** A docker config or auth file that cannot be read or written. */
export class AuthConfigError extends KilnError {
  constructor(readonly path: string, message: string, options: KilnErrorOptions = {}) {
    super('AUTH_CONFIG', `${path}: ${message}`, options);
  }
}

/** Parses a registry's error body; anything that is not the spec's shape yields nothing. */
export function parseErrorBody(body: Buffer | string | undefined): RegistryErrorDetail[] {
  if (!body || body.length === 0) return [];
  try {
    const doc = JSON.parse(body.toString()) as { errors?: unknown; details?: unknown; error?: unknown; error_description?: unknown };
    if (Array.isArray(doc.errors)) {
      return doc.errors
        .filter((e): e is Record<string, unknown> => typeof e === 'object' && e !== null)
        .map((e) => ({
          code: typeof e.code === 'string' ? e.code : 'UNKNOWN',
          message: typeof e.message === 'string' ? e.message : '',
          ...(e.detail !== undefined ? { detail: e.detail } : {}),
        }));
    }
    // Token servers answer in OAuth2's shape.
    if (typeof doc.error === 'string') {
      return [{ code: doc.error.toUpperCase(), message: typeof doc.error_description === 'string' ? doc.error_description : '' }];
    }
    if (typeof doc.details === 'string') return [{ code: 'UNKNOWN', message: doc.details }];
  } catch {
    // not JSON: a proxy's HTML page or plain text; a short text is still worth showing
    const text = body.toString().trim();
    if (text && text.length <= 200 && !/[<>]/.test(text)) return [{ code: 'UNKNOWN', message: text }];
  }
  return [];
}
