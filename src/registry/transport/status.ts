/** Turning a registry's refusal (status + error body) into the matching typed error. */
import {
  AuthError,
  DeniedError,
  DigestMismatchError,
  ManifestInvalidError,
  NotFoundError,
  RateLimitedError,
  RegistryError,
  RegistryProtocolError,
  RegistryUnavailableError,
  parseErrorBody,
  type RegistryErrorContext,
} from '../errors.js';
import { readBody, type HttpResponse } from './http.js';
import { parseRetryAfter } from './retry.js';

/** `GET /v2/app/manifests/1`: method and path only (queries carry upload state and scopes). */
export function endpointOf(method: string, url: URL): string {
  return `${method} ${url.pathname}`;
}

export interface StatusContext {
  registry: string;
  method: string;
  /** What was being done, for the summary of a 404 (`manifest unknown`, `blob unknown`...). */
  subject?: string;
}

/** Reads what the registry said (bounded) and builds the error for this status. */
export async function errorForResponse(res: HttpResponse, sc: StatusContext): Promise<RegistryError> {
  let body: Buffer | undefined;
  if (sc.method !== 'HEAD') {
    try {
      body = await readBody(res, 64 * 1024);
    } catch {
      body = undefined;
    }
  } else {
    res.body.resume();
  }
  return errorForStatus(res.status, parseErrorBody(body), {
    registry: sc.registry,
    endpoint: endpointOf(sc.method, res.url),
    retryAfter: typeof res.headers['retry-after'] === 'string' ? res.headers['retry-after'] : undefined,
    ...(sc.subject ? { subject: sc.subject } : {}),
  });
}

export function errorForStatus(
  status: number,
  errors: ReturnType<typeof parseErrorBody>,
  info: { registry: string; endpoint: string; retryAfter?: string | undefined; subject?: string },
): RegistryError {
  const ctx: RegistryErrorContext = { registry: info.registry, endpoint: info.endpoint, status, errors };
  const codes = new Set(errors.map((e) => e.code));
  if (status === 401 || codes.has('UNAUTHORIZED')) return new AuthError('authentication required', ctx);
  if (status === 403 || codes.has('DENIED')) return new DeniedError('access denied', ctx);
  if (status === 429 || codes.has('TOOMANYREQUESTS')) {
    const retryAfterMs = parseRetryAfter(info.retryAfter);
    return new RateLimitedError('too many requests', { ...ctx, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
  }
  if (codes.has('DIGEST_INVALID') || codes.has('SIZE_INVALID')) return new DigestMismatchError('the registry refused the content: digest or size does not match', ctx);
  if (codes.has('MANIFEST_INVALID') || codes.has('MANIFEST_BLOB_UNKNOWN') || codes.has('MANIFEST_UNVERIFIED') || codes.has('TAG_INVALID')) {
    return new ManifestInvalidError('the registry refused the manifest', ctx);
  }
  if (status === 404 || codes.has('NAME_UNKNOWN') || codes.has('MANIFEST_UNKNOWN') || codes.has('BLOB_UNKNOWN')) {
    const summary = codes.has('NAME_UNKNOWN') ? 'repository not found' : info.subject ? `${info.subject} not found` : 'not found';
    return new NotFoundError(summary, ctx);
  }
  if (status >= 500) return new RegistryUnavailableError(`server error ${status}`, ctx);
  return new RegistryProtocolError(`unexpected status ${status}`, ctx);
}
