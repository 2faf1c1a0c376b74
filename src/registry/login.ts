/**
 * `login` and `logout` as docker does them: credentials are checked against the registry first
 * (its /v2/ endpoint, through the token server when it has one), then saved to the configured
 * credential helper or to docker's config.json (mode 0600). When a token server hands out a
 * refresh token for an offline login, that identity token is saved instead of the password.
 */
import { eraseCredentials, keyHost, storeCredentials, type Credential, type CredentialOptions, type SavedCredentials } from './auth/credentials.js';
import { HttpTransport } from './transport/http.js';
import { RegistryClient, type RegistryOptions } from './client.js';
import { AuthError } from './errors.js';
import { DEFAULT_DOMAIN } from '../oci/reference.js';

/** `https://index.docker.io/v1/`, `http://host:5000/`, `host:5000` → the registry host kiln uses. */
export function loginHost(server: string | undefined): string {
  if (!server) return DEFAULT_DOMAIN;
  return keyHost(server.trim());
}

export interface LoginResult extends SavedCredentials {
  registry: string;
  /** Whether an identity (refresh) token was saved instead of the password. */
  identityToken: boolean;
}

/** Verifies `username`/`password` against `server` and saves them. */
export async function login(server: string | undefined, username: string, password: string, opts: RegistryOptions = {}): Promise<LoginResult> {
  const registry = loginHost(server);
  const transport = new HttpTransport({
    ...(opts.idleTimeoutMs !== undefined ? { idleTimeoutMs: opts.idleTimeoutMs } : {}),
    ...(opts.env ? { env: opts.env } : {}),
  });
  let toSave: Credential = { kind: 'basic', username, password };
  try {
    const client = new RegistryClient(registry, transport, { ...opts, credentials: toSave });
    await client.baseURL();
    if (client.auth.scheme === 'bearer') {
      const tok = await client.auth.token([], { offline: true });
      if (tok.refreshToken) toSave = { kind: 'identityToken', token: tok.refreshToken, username };
    }
    const res = await client.request({ method: 'GET', path: '/v2/', scopes: [], expect: [200] });
    res.body.resume();
  } catch (err) {
    // Refused credentials usually come with the hint to log in, which is what just failed here.
    if (err instanceof AuthError) {
      throw new AuthError(
        'the username or password was not accepted',
        { registry: err.registry, endpoint: err.endpoint, status: err.status, errors: err.errors },
        { hint: `nothing was saved; check the username and password for ${registry}`, cause: err },
      );
    }
    throw err;
  } finally {
    await transport.close();
  }
  const saved = await storeCredentials(registry, toSave, opts as CredentialOptions);
  return { ...saved, registry, identityToken: toSave.kind === 'identityToken' };
}

/** Removes saved credentials for `server`; answers false when there were none. */
export function logout(server: string | undefined, opts: CredentialOptions = {}): Promise<boolean> {
  return eraseCredentials(loginHost(server), opts);
}
