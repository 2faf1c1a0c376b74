/**
 * A client for one registry (distribution spec v2 API): the /v2/ ping that decides the scheme and
 * learns the auth challenge, then requests with authorization, retries with backoff on connection
 * failures, 5xx and 429 (honouring Retry-After), redirects that never carry credentials to another
 * origin, and the registry's refusals turned into typed errors.
 *
 * Scheme: HTTPS always; plain HTTP only for loopback hosts and `--insecure-registry` hosts, and
 * even then HTTPS is tried first (as docker does), so a loopback registry with TLS is used with TLS.
 */
import type { Readable } from 'node:stream';
import { Authenticator } from './auth/authenticator.js';
import { parseChallenges } from './auth/challenge.js';
import { resolveCredentials, type Credential, type CredentialOptions } from './auth/credentials.js';
import { RegistryProtocolError, RegistryUnavailableError, TlsError, type RegistryError } from './errors.js';
import { apiHost, isInsecureAllowed, isLoopbackHost, origin } from './hosts.js';
import { HttpTransport, discardBody, headerValue, toNetworkError, type HttpResponse, type NetworkError } from './transport/http.js';
import { Backoff, DEFAULT_RETRY, isRetryableStatus, parseRetryAfter, sleep, type RetryPolicy } from './transport/retry.js';
import { endpointOf, errorForResponse } from './transport/status.js';

export interface RegistryOptions extends CredentialOptions {
  /** Hosts (`host` or `host:port`) that may be spoken to in plain HTTP besides loopback. */
  insecureRegistries?: readonly string[];
  /**
   * Credentials to use instead of looking them up: one for every host, or a function of the host
   * (answering undefined means anonymous).
   */
  credentials?: Credential | ((host: string, repository?: string) => Promise<Credential | undefined>);
  retry?: Partial<RetryPolicy>;
  /** A socket idle this long fails the request (default 60 s). */
  idleTimeoutMs?: number;
  userAgent?: string;
}

export interface RegistryRequest {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  /** Path under the registry's base URL (`/v2/...`), or an absolute URL (upload locations). */
  path?: string;
  url?: URL;
  scopes: readonly string[];
  headers?: Record<string, string>;
  /** A buffer (replayable), or a factory of a fresh stream for each attempt. */
  body?: Buffer | (() => Promise<Readable> | Readable);
  /** Statuses that answer the request; anything else is an error (after retries). */
  expect: readonly number[];
  /** What a 404 means here, for its message (`manifest app:1`, `blob sha256:...`). */
  subject?: string;
  /** Set false for requests that must not be sent twice. */
  retry?: boolean;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;

export class RegistryClient {
  readonly registry: string;
  readonly apiHost: string;
  readonly auth: Authenticator;
  readonly retry: RetryPolicy;
  private base: URL | undefined;
  private pinging: Promise<URL> | undefined;
  private readonly insecure: readonly string[];

  constructor(
    registry: string,
    readonly transport: HttpTransport,
    readonly options: RegistryOptions = {},
  ) {
    this.registry = registry;
    this.apiHost = apiHost(registry);
    this.insecure = options.insecureRegistries ?? [];
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.auth = new Authenticator({
      registry,
      transport,
      retry: this.retry,
      insecure: this.insecure,
      credentials: () => this.lookupCredentials(),
    });
  }

  private async lookupCredentials(): Promise<Credential | undefined> {
    const c = this.options.credentials;
    if (typeof c === 'function') return c(this.registry);
    if (c) return c;
    return (await resolveCredentials(this.registry, this.options))?.credential;
  }

  /** The registry's base URL (`https://host`), pinging it on first use. */
  async baseURL(): Promise<URL> {
    if (this.base) return this.base;
    this.pinging ??= this.ping().catch((err) => {
      this.pinging = undefined;
      throw err;
    });
    return this.pinging;
  }

  /** `GET /v2/`: picks the scheme and learns the auth challenge. */
  private async ping(): Promise<URL> {
    const plainAllowed = isInsecureAllowed(this.registry, this.insecure) || isInsecureAllowed(this.apiHost, this.insecure);
    const schemes = plainAllowed ? ['https:', 'http:'] : ['https:'];
    let lastErr: unknown;
    let tlsErr: NetworkError | undefined;
    for (let i = 0; i < schemes.length; i++) {
      const url = new URL(`${schemes[i]}//${this.apiHost}/v2/`);
      const fallback = i < schemes.length - 1;
      try {
        const res = await this.pingOnce(url, fallback);
        this.base = new URL(`${schemes[i]}//${this.apiHost}`);
        this.auth.plainHttp = schemes[i] === 'http:';
        return this.finishPing(res);
      } catch (err) {
        lastErr = err;
        if (isNetworkError(err) && err.tls) tlsErr ??= err;
        // Only a failure below HTTP (no TLS there, nothing listening) makes the next scheme worth a try.
        if (!fallback || !isNetworkError(err)) break;
      }
    }
    if (isNetworkError(lastErr)) {
      // A TLS failure says more than the plain-HTTP fallback's failure against a TLS-only server.
      const cause = tlsErr ?? lastErr;
      throw this.unreachable(cause, endpointOf('GET', new URL(`${tlsErr ? 'https:' : schemes[schemes.length - 1]}//${this.apiHost}/v2/`)));
    }
    throw lastErr;
  }

  private async pingOnce(url: URL, probing: boolean): Promise<HttpResponse> {
    // A TLS probe of a plain-HTTP loopback registry fails at once; retrying it would only delay
    // the fallback, so only the last scheme gets the retry policy.
    const backoff = new Backoff(probing ? { ...this.retry, attempts: 1 } : this.retry);
    for (;;) {
      let res: HttpResponse;
      try {
        res = await this.transport.send({ method: 'GET', url });
      } catch (err) {
        const wait = backoff.next();
        if (wait === undefined) throw toNetworkError(err);
        await sleep(wait);
        continue;
      }
      if (isRetryableStatus(res.status)) {
        const wait = backoff.next(retryAfterOf(res));
        if (wait !== undefined) {
          discardBody(res);
          await sleep(wait);
          continue;
        }
      }
      return res;
    }
  }

  private async finishPing(res: HttpResponse): Promise<URL> {
    if (res.status === 200 || res.status === 401) {
      if (res.status === 401) this.auth.setChallenges(parseChallenges(res.headers['www-authenticate']));
      discardBody(res);
      return this.base!;
    }
    if (res.status === 404) {
      discardBody(res);
      throw new RegistryProtocolError('not a registry: /v2/ is not there', { registry: this.registry, endpoint: endpointOf('GET', res.url), status: 404 });
    }
    throw await errorForResponse(res, { registry: this.registry, method: 'GET' });
  }

  private unreachable(err: NetworkError, endpoint: string): RegistryError {
    const ctx = { registry: this.registry, endpoint };
    if (err.tls) return new TlsError(`TLS handshake failed: ${err.message}`, ctx, { cause: err });
    const hint = !isLoopbackHost(this.registry) && !isInsecureAllowed(this.registry, this.insecure)
      ? { hint: `check that ${this.registry} is up; a plain-HTTP registry needs --insecure-registry ${this.registry}` }
      : {};
    return new RegistryUnavailableError(`cannot reach the registry: ${err.code === err.message ? err.code : `${err.message}`}`, ctx, { cause: err, ...hint });
  }

  /**
   * Sends a request with authorization, retries and redirects; answers the response whose status is
   * in `expect` (its body unread), or throws the typed error for what the registry said.
   */
  async request(r: RegistryRequest): Promise<HttpResponse> {
    const base = await this.baseURL();
    let url = r.url ?? new URL(r.path!, base);
    let scopes = [...r.scopes];
    const backoff = new Backoff(this.retry);
    const mayRetry = r.retry !== false;
    // A body factory may be called again only when the caller allows retries.
    const replayable = r.body === undefined || Buffer.isBuffer(r.body) || mayRetry;
    let authRetried = false;
    let redirects = 0;
    for (;;) {
      const sameOrigin = origin(url) === origin(base);
      const headers: Record<string, string> = { ...r.headers };
      let sent: string | undefined;
      if (sameOrigin) {
        sent = await this.auth.authorization(scopes);
        if (sent) headers.Authorization = sent;
      }
      const body = typeof r.body === 'function' ? await r.body() : r.body;
      let res: HttpResponse;
      try {
        res = await this.transport.send({ method: r.method, url, headers, ...(body ? { body } : {}) });
      } catch (err) {
        const ne = toNetworkError(err);
        const wait = mayRetry && !ne.tls ? backoff.next() : undefined;
        if (wait === undefined) throw this.unreachable(ne, endpointOf(r.method, url));
        await sleep(wait);
        continue;
      }
      if (res.status === 401 && sameOrigin && !authRetried) {
        const next = await this.auth.unauthorized(scopes, parseChallenges(res.headers['www-authenticate']), sent);
        if (next && replayable) {
          discardBody(res);
          scopes = next;
          authRetried = true;
          continue;
        }
        if (next) {
          // The body stream is spent; the caller can start the operation again with the new token.
          const err = await errorForResponse(res, { registry: this.registry, method: r.method });
          err.retryable = true;
          throw err;
        }
      }
      if (REDIRECTS.has(res.status) && (r.method === 'GET' || r.method === 'HEAD')) {
        const location = headerValue(res.headers, 'location');
        if (location && redirects < MAX_REDIRECTS) {
          discardBody(res);
          const next = new URL(location, url);
          if (next.protocol === 'http:' && url.protocol === 'https:' && !isInsecureAllowed(next.host, this.insecure)) {
            throw new RegistryProtocolError(`refusing a redirect from HTTPS to plain HTTP (${next.host})`, {
              registry: this.registry,
              endpoint: endpointOf(r.method, url),
              status: res.status,
            });
          }
          url = next;
          redirects++;
          continue;
        }
      }
      if (r.expect.includes(res.status)) return res;
      if (isRetryableStatus(res.status) && mayRetry) {
        const wait = backoff.next(retryAfterOf(res));
        if (wait !== undefined) {
          discardBody(res);
          await sleep(wait);
          continue;
        }
      }
      throw await errorForResponse(res, { registry: this.registry, method: r.method, ...(r.subject ? { subject: r.subject } : {}) });
    }
  }

  /** Resolves a `Location` header against the URL it came from. */
  static location(res: HttpResponse): URL | undefined {
    const loc = headerValue(res.headers, 'location');
    return loc ? new URL(loc, res.url) : undefined;
  }
}

/** Retry-After for 429 and 503 (the statuses RFC 9110 gives it meaning for). */
function retryAfterOf(res: HttpResponse): number | undefined {
  if (res.status !== 429 && res.status !== 503) return undefined;
  return parseRetryAfter(headerValue(res.headers, 'retry-after'));
}

function isNetworkError(err: unknown): err is NetworkError {
  return err instanceof Error && err.name === 'NetworkError';
}

/**
 * Clients for every registry an operation touches, sharing one connection pool. Close it when done
 * so idle keep-alive connections do not hold the process open.
 */
export class Registries {
  readonly transport: HttpTransport;
  private readonly clients = new Map<string, RegistryClient>();

  constructor(readonly options: RegistryOptions = {}) {
    this.transport = new HttpTransport({
      ...(options.idleTimeoutMs !== undefined ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
      ...(options.userAgent ? { userAgent: options.userAgent } : {}),
      ...(options.env ? { env: options.env } : {}),
    });
  }

  get(registry: string): RegistryClient {
    let c = this.clients.get(registry);
    if (!c) {
      c = new RegistryClient(registry, this.transport, this.options);
      this.clients.set(registry, c);
    }
    return c;
  }

  close(): Promise<void> {
    return this.transport.close();
  }
}
