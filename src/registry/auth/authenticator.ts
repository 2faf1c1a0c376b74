/**
 * Authorization for one registry, following what its challenges ask for:
 *
 *   - none: requests go out bare until a 401 says otherwise;
 *   - Basic: the credentials on every request to the registry's own origin;
 *   - Bearer (docker's token spec): a token per set of scopes from the challenge's realm, fetched
 *     with GET (Basic credentials, or anonymously) or, given an identity token, with OAuth2's POST
 *     form (`grant_type=refresh_token`); `token` or `access_token` in the answer; cached until
 *     `expires_in` runs out (60 s when not said) and fetched again on expiry or on a 401.
 *
 * A 401 that names a scope the token lacks (`insufficient_scope`) adds that scope to the request.
 * Credentials are sent only to the registry's origin and to the realm it names; the realm must be
 * HTTPS unless it is on loopback or listed as insecure, or the registry itself is plain HTTP.
 */
import { AuthError, DeniedError, RegistryProtocolError, RegistryUnavailableError, parseErrorBody, type RegistryError } from '../errors.js';
import { isInsecureAllowed } from '../hosts.js';
import { readBody, type HttpTransport, type NetworkError } from '../transport/http.js';
import { Backoff, isRetryableStatus, parseRetryAfter, sleep, type RetryPolicy } from '../transport/retry.js';
import { endpointOf, errorForStatus } from '../transport/status.js';
import { challengeScopes, findChallenge, type Challenge } from './challenge.js';
import type { Credential } from './credentials.js';

export interface AuthenticatorOptions {
  /** The registry as named in references (for messages). */
  registry: string;
  transport: HttpTransport;
  retry: RetryPolicy;
  /** Credentials for this registry; called at most once, when first needed. */
  credentials: () => Promise<Credential | undefined>;
  insecure: readonly string[];
  /** OAuth2 client_id sent to token servers. */
  clientId?: string;
}

export interface TokenResponse {
  token: string;
  /** Epoch ms after which the token is not used. */
  expiresAt: number;
  /** A refresh token, when the server issued one (OAuth2, or `offline_token=true`). */
  refreshToken?: string;
}

export type AuthScheme = 'none' | 'basic' | 'bearer';

/** Scopes for pulling (and pushing) a repository, in the token spec's grammar. */
export function repositoryScope(repository: string, actions: 'pull' | 'pull,push'): string {
  return `repository:${repository}:${actions}`;
}

export class Authenticator {
  private challenge: Challenge | undefined;
  private readonly tokens = new Map<string, TokenResponse>();
  private readonly inflight = new Map<string, Promise<TokenResponse>>();
  private creds: Promise<Credential | undefined> | undefined;
  /** Refresh token learnt from a token server, preferred over the stored credential afterwards. */
  private refreshToken: string | undefined;
  /** Whether the registry was reached over plain HTTP (allows an HTTP realm). */
  plainHttp = false;

  constructor(private readonly opts: AuthenticatorOptions) {}

  get scheme(): AuthScheme {
    return this.challenge?.scheme === 'bearer' ? 'bearer' : this.challenge?.scheme === 'basic' ? 'basic' : 'none';
  }

  credentials(): Promise<Credential | undefined> {
    this.creds ??= this.opts.credentials();
    return this.creds;
  }

  /** Learns the registry's challenges (from the /v2/ ping or a 401); Bearer is preferred to Basic. */
  setChallenges(challenges: Challenge[]): void {
    const chosen = findChallenge(challenges, 'bearer') ?? findChallenge(challenges, 'basic');
    if (!chosen) return;
    const prev = this.challenge;
    if (prev && (prev.scheme !== chosen.scheme || prev.params.realm !== chosen.params.realm || prev.params.service !== chosen.params.service)) {
      this.tokens.clear();
    }
    this.challenge = chosen;
  }

  /** The Authorization header for a request needing `scopes`, or undefined to go without. */
  async authorization(scopes: readonly string[]): Promise<string | undefined> {
    switch (this.scheme) {
      case 'none':
        return undefined;
      case 'basic': {
        const cred = await this.credentials();
        if (cred?.kind === 'basic') return `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
        if (cred?.kind === 'registryToken') return `Bearer ${cred.token}`;
        return undefined;
      }
      case 'bearer':
        return `Bearer ${(await this.token(scopes)).token}`;
    }
  }

  /**
   * Handles a 401: learns its challenge and forgets the token that was refused. Answers the scopes
   * to retry with, or undefined when another attempt cannot help (no credentials to add, or the
   * same thing was already refused).
   */
  async unauthorized(scopes: readonly string[], challenges: Challenge[], sentAuthorization: string | undefined): Promise<string[] | undefined> {
    const before = this.scheme;
    this.setChallenges(challenges);
    if (this.scheme === 'none') return undefined;
    if (this.scheme === 'basic') {
      const cred = await this.credentials();
      // Credentials we already sent were refused; without any there is nothing to add.
      if (!cred || (before === 'basic' && sentAuthorization)) return undefined;
      return [...scopes];
    }
    const wanted = [...scopes];
    for (const s of challengeScopes(findChallenge(challenges, 'bearer'))) if (!wanted.includes(s)) wanted.unshift(s);
    this.tokens.delete(scopeKey(scopes));
    this.tokens.delete(scopeKey(wanted));
    return wanted;
  }

  /** A token for `scopes`, from the cache while it is fresh. */
  async token(scopes: readonly string[], opts: { offline?: boolean } = {}): Promise<TokenResponse> {
    const key = scopeKey(scopes);
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return cached;
    let running = this.inflight.get(key);
    if (!running) {
      running = this.fetchToken([...scopes], opts).finally(() => this.inflight.delete(key));
      this.inflight.set(key, running);
    }
    const tok = await running;
    this.tokens.set(key, tok);
    return tok;
  }

  private realmURL(): URL {
    const ch = this.challenge!;
    const realm = ch.params.realm;
    const ctx = { registry: this.opts.registry };
    if (!realm) throw new RegistryProtocolError('the Bearer challenge names no realm (token server)', ctx);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new RegistryProtocolError(`the token realm is not a URL: ${realm.slice(0, 100)}`, ctx);
    }
    if (url.protocol === 'http:' && !this.plainHttp && !isInsecureAllowed(url.host, this.opts.insecure)) {
      throw new RegistryProtocolError(`refusing to send credentials to a plain-HTTP token realm (${url.host})`, ctx, {
        hint: `use --insecure-registry ${url.host} if that token server really speaks plain HTTP`,
      });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new RegistryProtocolError(`unsupported token realm scheme ${url.protocol}`, ctx);
    return url;
  }

  private async fetchToken(scopes: string[], opts: { offline?: boolean }): Promise<TokenResponse> {
    const cred = await this.credentials();
    if (cred?.kind === 'registryToken') return { token: cred.token, expiresAt: Number.POSITIVE_INFINITY };
    const realm = this.realmURL();
    const service = this.challenge!.params.service;
    const refresh = this.refreshToken ?? (cred?.kind === 'identityToken' ? cred.token : undefined);
    if (refresh) {
      const viaPost = await this.exchange(realm, 'POST', scopes, { service, refresh }, opts);
      if (viaPost) return viaPost;
      // The token server has no OAuth2 endpoint (404/405): the GET flow is all token servers speak.
    }
    return (await this.exchange(realm, 'GET', scopes, { service, cred }, opts))!;
  }

  /** One token request, retried on connection failures and 5xx/429; POST answers undefined when unsupported. */
  private async exchange(
    realm: URL,
    method: 'GET' | 'POST',
    scopes: string[],
    args: { service?: string | undefined; cred?: Credential | undefined; refresh?: string },
    opts: { offline?: boolean },
  ): Promise<TokenResponse | undefined> {
    const clientId = this.opts.clientId ?? 'kiln';
    const url = new URL(realm);
    const headers: Record<string, string> = { Accept: 'application/json' };
    let body: Buffer | undefined;
    if (method === 'GET') {
      if (args.service) url.searchParams.set('service', args.service);
      for (const s of scopes) url.searchParams.append('scope', s);
      if (opts.offline) {
        url.searchParams.set('offline_token', 'true');
        url.searchParams.set('client_id', clientId);
      }
      if (args.cred?.kind === 'basic') headers.Authorization = `Basic ${Buffer.from(`${args.cred.username}:${args.cred.password}`).toString('base64')}`;
    } else {
      const form = new URLSearchParams();
      form.set('grant_type', 'refresh_token');
      form.set('refresh_token', args.refresh!);
      form.set('client_id', clientId);
      if (args.service) form.set('service', args.service);
      if (scopes.length) form.set('scope', scopes.join(' '));
      if (opts.offline) form.set('access_type', 'offline');
      body = Buffer.from(form.toString());
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
    }
    const endpoint = endpointOf(method, url);
    const sc = { registry: this.opts.registry, endpoint };
    const backoff = new Backoff(this.opts.retry);
    for (;;) {
      let res;
      try {
        res = await this.opts.transport.send({ method, url, headers, ...(body ? { body } : {}) });
      } catch (err) {
        const wait = backoff.next();
        if (wait === undefined) {
          throw new RegistryUnavailableError(`token server unreachable: ${(err as NetworkError).message}`, sc, { cause: err });
        }
        await sleep(wait);
        continue;
      }
      if (res.status === 200) {
        const raw = await readBody(res, 1024 * 1024);
        return this.parseToken(raw, sc);
      }
      const said = parseErrorBody(await readBody(res, 64 * 1024).catch(() => undefined));
      if (method === 'POST' && (res.status === 404 || res.status === 405)) return undefined;
      if (isRetryableStatus(res.status)) {
        const wait = backoff.next(res.status === 429 ? parseRetryAfter(res.headers['retry-after'] as string | undefined) : undefined);
        if (wait !== undefined) {
          await sleep(wait);
          continue;
        }
      }
      if (res.status === 401 || (method === 'POST' && res.status === 400 && said.some((e) => e.code === 'INVALID_GRANT'))) {
        throw new AuthError(args.cred || args.refresh ? 'the token server refused the credentials' : 'authentication required', {
          ...sc,
          status: res.status,
          errors: said,
        });
      }
      if (res.status === 403) throw new DeniedError('the token server denied access', { ...sc, status: res.status, errors: said });
      throw errorForStatus(res.status, said, { ...sc, retryAfter: res.headers['retry-after'] as string | undefined }) as RegistryError;
    }
  }

  private parseToken(raw: Buffer, sc: { registry: string; endpoint: string }): TokenResponse {
    let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown; refresh_token?: unknown };
    try {
      doc = JSON.parse(raw.toString('utf8')) as typeof doc;
    } catch {
      throw new RegistryProtocolError('the token server answered something that is not JSON', sc);
    }
    const token = typeof doc.token === 'string' && doc.token ? doc.token : typeof doc.access_token === 'string' ? doc.access_token : '';
    if (!token) throw new RegistryProtocolError('the token server answered without a token', sc);
    // The spec's minimum lifetime is 60 s; expiry is measured on the local clock from receipt,
    // so skew between hosts does not matter. A margin keeps a token from lapsing in flight.
    const lifetime = typeof doc.expires_in === 'number' && doc.expires_in > 0 ? doc.expires_in * 1000 : 60_000;
    const margin = Math.min(10_000, lifetime / 4);
    const out: TokenResponse = { token, expiresAt: Date.now() + lifetime - margin };
    if (typeof doc.refresh_token === 'string' && doc.refresh_token) {
      out.refreshToken = doc.refresh_token;
      this.refreshToken = doc.refresh_token;
    }
    return out;
  }
}

function scopeKey(scopes: readonly string[]): string {
  return [...scopes].sort().join(' ');
}
