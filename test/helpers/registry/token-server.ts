/**
 * An in-process token server for the registry's `auth: token` mode, implementing the Docker
 * registry token flow as distribution's registry/auth/token verifies it:
 *
 * - GET  <realm>?service=S&scope=repository:NAME:pull,push[&scope=...][&account=U][&offline_token=true&client_id=C]
 *   with optional Basic credentials → {token, access_token, expires_in, issued_at[, refresh_token]}
 * - POST <realm>, application/x-www-form-urlencoded, OAuth2 style:
 *   grant_type=password&username=U&password=P&service=S&client_id=C[&access_type=offline][&scope=...]
 *   grant_type=refresh_token&refresh_token=R&service=S&client_id=C[&scope=...]
 *   → {access_token, scope, expires_in, issued_at[, refresh_token]}
 *
 * The token is a JWT signed RS256 with the key of a self-signed certificate; the certificate is
 * the registry's `rootcertbundle` and is also sent in the JWT's `x5c` header, which is how the
 * registry finds and trusts the signing key (it verifies the x5c chain against the bundle). Its
 * claims carry iss, sub, aud (a single string: distribution 2.8 decodes `aud` into a string and
 * rejects an array), exp, nbf, iat, jti and `access`.
 */
import { createPrivateKey, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ResourceActions {
  type: string;
  class?: string;
  name: string;
  actions: string[];
}

/**
 * Decides which of the requested actions on one resource an account gets. `account` is undefined
 * for an anonymous request. The result is intersected with `requested` by the caller.
 */
export type AccessPolicy = (
  account: string | undefined,
  resource: { type: string; class?: string; name: string },
  requested: string[],
) => string[];

export interface IssuedToken {
  /** the scopes the client asked for, as sent (one entry per scope) */
  scope: string[];
  /** the authenticated account; undefined for an anonymous token */
  account?: string;
  /** the `account` query parameter, if the client sent one */
  accountParam?: string;
  grant: 'get' | 'password' | 'refresh_token';
  clientId?: string;
  /** what the token grants */
  access: ResourceActions[];
  /** whether a refresh token was handed out with it */
  refreshToken: boolean;
  token: string;
}

export interface TokenServer {
  /** the token endpoint, i.e. the `realm` the registry names in its Bearer challenge */
  url: string;
  service: string;
  issuer: string;
  /** every token handed out, in order */
  issued: IssuedToken[];
  /** every request seen, with the status it was answered with */
  requests: Array<{ method: string; path: string; status: number }>;
  /** makes the next `times` requests fail with `status`, before any authentication */
  failNext(status: number, times?: number): void;
  /** invalidates every refresh token handed out so far */
  revokeRefreshTokens(): void;
  stop(): Promise<void>;
}

export interface TokenServerOptions {
  service: string;
  issuer: string;
  users: Record<string, string>;
  /** PEM of the signing key and of its self-signed certificate (the registry's rootcertbundle) */
  keyPem: string;
  certPem: string;
  /** token lifetime in seconds (default 300); note the registry allows 60 s of clock leeway past exp */
  expiresIn?: number;
  /** let anonymous requests have `pull` on every repository (default: anonymous tokens grant nothing) */
  anonymousPull?: boolean;
  /** overrides the default grants; see defaultAccessPolicy */
  access?: AccessPolicy;
}

const REPOSITORY_ACTIONS = ['pull', 'push', 'delete', '*'];

/**
 * The default grants: an authenticated user gets every requested action (pull, push, delete, *)
 * on every repository and `registry:catalog:*`; an anonymous client gets `pull` on repositories
 * when `anonymousPull` is set, and nothing otherwise (the registry then answers 401
 * insufficient_scope, as a registry does for a private repository).
 */
export function defaultAccessPolicy(anonymousPull: boolean): AccessPolicy {
  return (account, resource, requested) => {
    if (resource.type === 'repository') {
      const allowed = account !== undefined ? REPOSITORY_ACTIONS : anonymousPull ? ['pull'] : [];
      return requested.filter((a) => allowed.includes(a));
    }
    if (resource.type === 'registry' && resource.name === 'catalog' && account !== undefined) {
      return requested.filter((a) => a === '*');
    }
    return [];
  };
}

/** Parses one scope `type[(class)]:name:action[,action]`; the name may itself contain ':' (a port). */
export function parseScope(scope: string): ResourceActions | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last <= first + 1) return undefined;
  const typeField = scope.slice(0, first);
  const m = /^([a-z0-9]+)(?:\(([a-z0-9]+)\))?$/.exec(typeField);
  if (!m) return undefined;
  const actions = scope
    .slice(last + 1)
    .split(',')
    .filter(Boolean);
  return { type: m[1]!, ...(m[2] ? { class: m[2] } : {}), name: scope.slice(first + 1, last), actions };
}

function sendJson(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...extra,
  });
  res.end(text);
}

function readBody(req: IncomingMessage, limit = 1 << 20): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parseBasic(header: string | undefined): { user: string; password: string } | 'malformed' | undefined {
  if (!header) return undefined;
  const m = /^Basic\s+(\S+)\s*$/i.exec(header);
  if (!m) return 'malformed';
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return 'malformed';
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export async function startTokenServer(options: TokenServerOptions): Promise<TokenServer> {
  const { service, issuer, users } = options;
  const expiresIn = options.expiresIn ?? 300;
  const policy = options.access ?? defaultAccessPolicy(options.anonymousPull ?? false);
  const key: KeyObject = createPrivateKey(options.keyPem);
  // x5c carries standard (not URL-safe) base64 DER, which is what the registry decodes.
  const x5c = [new X509Certificate(options.certPem).raw.toString('base64')];
  const alg = key.asymmetricKeyType === 'ec' ? 'ES256' : 'RS256';

  const issued: IssuedToken[] = [];
  const requests: TokenServer['requests'] = [];
  const refreshTokens = new Map<string, { account: string }>();
  let failures: { status: number; remaining: number } | undefined;

  function signJwt(account: string | undefined, access: ResourceActions[]): string {
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg, x5c };
    const claims = {
      iss: issuer,
      sub: account ?? '',
      aud: service,
      exp: now + expiresIn,
      nbf: now,
      iat: now,
      jti: randomBytes(16).toString('hex'),
      access,
    };
    const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    // ES256 signatures in a JWS are r||s, not DER.
    const signature = sign('sha256', Buffer.from(input), alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key);
    return `${input}.${signature.toString('base64url')}`;
  }

  /** Grants the intersection of what was asked and what the policy allows, merging repeated resources. */
  function grant(account: string | undefined, scopes: string[]): ResourceActions[] | 'invalid' {
    const merged = new Map<string, ResourceActions>();
    for (const s of scopes) {
      const parsed = parseScope(s);
      if (!parsed) return 'invalid';
      const k = `${parsed.type}(${parsed.class ?? ''}):${parsed.name}`;
      const prev = merged.get(k);
      if (prev) prev.actions = [...new Set([...prev.actions, ...parsed.actions])];
      else merged.set(k, parsed);
    }
    const out: ResourceActions[] = [];
    for (const r of merged.values()) {
      const allowed = policy(account, { type: r.type, ...(r.class ? { class: r.class } : {}), name: r.name }, r.actions);
      const actions = r.actions.filter((a) => allowed.includes(a));
      // A resource with no granted actions is left out: it is not an error to get less than asked.
      if (actions.length > 0) out.push({ ...r, actions });
    }
    return out;
  }

  function authenticate(user: string, password: string): boolean {
    return Object.prototype.hasOwnProperty.call(users, user) && users[user] === password;
  }

  const splitScopes = (values: string[]): string[] => values.flatMap((v) => v.split(' ')).filter(Boolean);

  function handleGet(req: IncomingMessage, res: ServerResponse, url: URL): number {
    const q = url.searchParams;
    if (q.get('service') !== service) {
      sendJson(res, 400, { errors: [{ code: 'INVALID_REQUEST', message: `unknown or missing service; expected ${service}` }] });
      return 400;
    }
    const creds = parseBasic(req.headers.authorization);
    if (creds === 'malformed' || (creds && !authenticate(creds.user, creds.password))) {
      sendJson(
        res,
        401,
        { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] },
        { 'www-authenticate': 'Basic realm="kiln-test-token-server"' },
      );
      return 401;
    }
    const account = creds?.user;
    const scope = splitScopes(q.getAll('scope'));
    const access = grant(account, scope);
    if (access === 'invalid') {
      sendJson(res, 400, { errors: [{ code: 'INVALID_REQUEST', message: `malformed scope in ${JSON.stringify(scope)}` }] });
      return 400;
    }
    const token = signJwt(account, access);
    const body: Record<string, unknown> = {
      token,
      access_token: token,
      expires_in: expiresIn,
      issued_at: new Date().toISOString(),
    };
    let refresh = false;
    if (q.get('offline_token') === 'true' && account !== undefined) {
      const r = randomBytes(24).toString('base64url');
      refreshTokens.set(r, { account });
      body.refresh_token = r;
      refresh = true;
    }
    const accountParam = q.get('account') ?? undefined;
    const clientId = q.get('client_id') ?? undefined;
    issued.push({
      scope,
      ...(account !== undefined ? { account } : {}),
      ...(accountParam !== undefined ? { accountParam } : {}),
      grant: 'get',
      ...(clientId !== undefined ? { clientId } : {}),
      access,
      refreshToken: refresh,
      token,
    });
    sendJson(res, 200, body);
    return 200;
  }

  async function handlePost(req: IncomingMessage, res: ServerResponse): Promise<number> {
    const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/x-www-form-urlencoded') {
      sendJson(res, 400, { error: 'invalid_request', error_description: 'expected an application/x-www-form-urlencoded body' });
      return 400;
    }
    const form = new URLSearchParams(await readBody(req));
    const oauthError = (status: number, error: string, description: string): number => {
      sendJson(res, status, { error, error_description: description });
      return status;
    };
    if (form.get('service') !== service) return oauthError(400, 'invalid_request', `unknown or missing service; expected ${service}`);
    const clientId = form.get('client_id');
    if (!clientId) return oauthError(400, 'invalid_request', 'client_id is required');

    const grantType = form.get('grant_type');
    let account: string;
    let refreshToken: string | undefined;
    if (grantType === 'password') {
      const user = form.get('username') ?? '';
      if (!authenticate(user, form.get('password') ?? '')) return oauthError(401, 'invalid_grant', 'wrong username or password');
      account = user;
      if (form.get('access_type') === 'offline') {
        refreshToken = randomBytes(24).toString('base64url');
        refreshTokens.set(refreshToken, { account });
      }
    } else if (grantType === 'refresh_token') {
      const r = form.get('refresh_token') ?? '';
      const known = refreshTokens.get(r);
      if (!known) return oauthError(401, 'invalid_grant', 'unknown or revoked refresh token');
      account = known.account;
      // The spec has a refresh grant return the same refresh token, never a new one.
      refreshToken = r;
    } else {
      return oauthError(400, 'unsupported_grant_type', `grant_type ${JSON.stringify(grantType)} is not supported`);
    }

    const scope = splitScopes(form.getAll('scope'));
    const access = grant(account, scope);
    if (access === 'invalid') return oauthError(400, 'invalid_scope', `malformed scope in ${JSON.stringify(scope)}`);
    const token = signJwt(account, access);
    issued.push({
      scope,
      account,
      grant: grantType,
      clientId,
      access,
      refreshToken: refreshToken !== undefined,
      token,
    });
    sendJson(res, 200, {
      access_token: token,
      scope: access.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`).join(' '),
      expires_in: expiresIn,
      issued_at: new Date().toISOString(),
      ...(refreshToken !== undefined ? { refresh_token: refreshToken } : {}),
    });
    return 200;
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://token.invalid');
    const record = { method: req.method ?? '', path: req.url ?? '', status: 0 };
    requests.push(record);
    const done = (status: number): void => {
      record.status = status;
    };
    if (failures && failures.remaining > 0) {
      failures.remaining--;
      req.resume();
      sendJson(res, failures.status, { errors: [{ code: 'UNAVAILABLE', message: 'failure injected into the token server' }] });
      done(failures.status);
      return;
    }
    if (url.pathname !== '/token') {
      sendJson(res, 404, { errors: [{ code: 'NOT_FOUND', message: 'the token endpoint is /token' }] });
      done(404);
      return;
    }
    if (req.method === 'GET') {
      done(handleGet(req, res, url));
    } else if (req.method === 'POST') {
      handlePost(req, res).then(done, (err: unknown) => {
        if (!res.headersSent) sendJson(res, 400, { error: 'invalid_request', error_description: String(err) });
        done(400);
      });
    } else {
      res.writeHead(405, { allow: 'GET, POST' });
      res.end();
      done(405);
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  let stopped: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    issued,
    requests,
    failNext(status: number, times = 1) {
      failures = { status, remaining: times };
    },
    revokeRefreshTokens() {
      refreshTokens.clear();
    },
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return stopped;
    },
  };
}
