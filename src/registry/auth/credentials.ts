/**
 * Registry credentials, found where docker and podman keep them:
 *
 *   1. `--authfile PATH` or `$REGISTRY_AUTH_FILE`: a containers-auth.json (`auths` keyed by host or
 *      by `host/namespace/repo`, the longest match winning; `credHelpers` too).
 *   2. docker's `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`):
 *      `credHelpers[host]`, then `credsStore`, then `auths[host]` (`auth` = base64 `user:pass`,
 *      `identitytoken` for an OAuth2 refresh token, `registrytoken` for a ready bearer token).
 *
 * docker.io is known to docker's files by its legacy key `https://index.docker.io/v1/`; other
 * registries by `host[:port]`, though docker also accepts keys written as URLs.
 *
 * Helpers are `docker-credential-<name>` programs on PATH: `get` reads the server URL on stdin and
 * prints `{"ServerURL","Username","Secret"}`; a Username of `<token>` marks Secret as an identity
 * token. `store` reads that JSON, `erase` reads the server URL.
 *
 * Nothing here ever logs or formats a secret into an error message.
 */
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { AuthConfigError, CredentialHelperError } from '../errors.js';

export type Credential =
  | { kind: 'basic'; username: string; password: string }
  /** An OAuth2 refresh token, exchanged at the token server's POST endpoint. */
  | { kind: 'identityToken'; token: string; username?: string }
  /** A bearer token to send to the registry as it is. */
  | { kind: 'registryToken'; token: string };

export interface CredentialOptions {
  /** Environment to read `DOCKER_CONFIG`, `HOME`, `REGISTRY_AUTH_FILE`, `PATH` from (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** `--authfile`: takes precedence over `$REGISTRY_AUTH_FILE`. */
  authFile?: string;
  /** How long a credential helper may take (default 30 s). */
  helperTimeoutMs?: number;
}

export const DOCKER_HUB_HOST = 'docker.io';
/** The key docker's config files and helpers use for Docker Hub. */
export const DOCKER_HUB_LEGACY_KEY = 'https://index.docker.io/v1/';
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

/** The key under which docker's files and helpers know `host`. */
export function credentialKey(host: string): string {
  return DOCKER_HUB_ALIASES.has(host) ? DOCKER_HUB_LEGACY_KEY : host;
}

/** `https://host:5000/v1/` → `host:5000` (docker's ConvertToHostname), with Docker Hub's aliases folded. */
export function keyHost(key: string): string {
  let h = key.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  const slash = h.indexOf('/');
  if (slash >= 0) h = h.slice(0, slash);
  return DOCKER_HUB_ALIASES.has(h) ? DOCKER_HUB_HOST : h;
}

/**
 * Whether an `auths` key names a namespace (`host/team`, containers-auth.json) rather than a whole
 * registry; docker's URL keys (`https://host/v1/`) carry a path that is not a namespace.
 */
function isNamespacedKey(key: string): boolean {
  const bare = key.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  const slash = bare.indexOf('/');
  if (slash < 0) return false;
  const rest = bare.slice(slash + 1).replace(/\/+$/, '');
  return rest !== '' && !/^v[12]$/.test(rest);
}

export function dockerConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.DOCKER_CONFIG || join(env.HOME || homedir(), '.docker');
}

export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(dockerConfigDir(env), 'config.json');
}

/** The auth file `--authfile` or `$REGISTRY_AUTH_FILE` names, if either does. */
export function authFilePath(opts: CredentialOptions = {}): string | undefined {
  const env = opts.env ?? process.env;
  return opts.authFile || env.REGISTRY_AUTH_FILE || undefined;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
  registrytoken?: string;
  [k: string]: unknown;
}

/** docker's config.json and containers-auth.json share this shape (other fields are kept as they are). */
export interface AuthFile {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
  [k: string]: unknown;
}

export async function readAuthFile(path: string): Promise<AuthFile | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new AuthConfigError(path, `cannot read: ${code ?? String(err)}`, { cause: err });
  }
  if (!text.trim()) return {};
  try {
    const doc = JSON.parse(text) as unknown;
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error('not an object');
    return doc as AuthFile;
  } catch (err) {
    throw new AuthConfigError(path, 'is not valid JSON', { cause: err, hint: 'fix or remove the file' });
  }
}

/** Decodes one `auths` entry; entries with nothing usable (docker's `{}` placeholders) yield undefined. */
export function credentialFromEntry(entry: AuthEntry | undefined): Credential | undefined {
  if (!entry || typeof entry !== 'object') return undefined;
  if (typeof entry.registrytoken === 'string' && entry.registrytoken) return { kind: 'registryToken', token: entry.registrytoken };
  if (typeof entry.identitytoken === 'string' && entry.identitytoken) {
    const username = typeof entry.username === 'string' && entry.username ? entry.username : decodeAuth(entry.auth)?.username;
    return { kind: 'identityToken', token: entry.identitytoken, ...(username ? { username } : {}) };
  }
  const decoded = decodeAuth(entry.auth);
  if (decoded) return { kind: 'basic', ...decoded };
  if (typeof entry.username === 'string' && typeof entry.password === 'string' && entry.username) {
    return { kind: 'basic', username: entry.username, password: entry.password };
  }
  return undefined;
}

function decodeAuth(auth: unknown): { username: string; password: string } | undefined {
  if (typeof auth !== 'string' || !auth) return undefined;
  const text = Buffer.from(auth, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon <= 0) return undefined;
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

export function encodeAuth(username: string, password: string): string {
  return Buffer.from(`${username}:${password}`, 'utf8').toString('base64');
}

/**
 * The `auths` entry for `host` (and, in containers-auth.json, the most specific `host/namespace`
 * entry for `repository`): exact keys first, then keys written as URLs.
 */
function findEntry(auths: Record<string, AuthEntry> | undefined, host: string, repository?: string): AuthEntry | undefined {
  if (!auths) return undefined;
  if (repository) {
    // containers-auth.json: `host/ns/repo`, then `host/ns`, ... then `host`.
    const parts = repository.split('/');
    for (let n = parts.length; n > 0; n--) {
      const key = `${host}/${parts.slice(0, n).join('/')}`;
      if (auths[key]) return auths[key];
    }
  }
  const key = credentialKey(host);
  if (auths[key]) return auths[key];
  if (auths[host]) return auths[host];
  for (const [k, v] of Object.entries(auths)) {
    if (!isNamespacedKey(k) && keyHost(k) === keyHost(host)) return v;
  }
  return undefined;
}

function helperFor(file: AuthFile, host: string): string | undefined {
  const helpers = file.credHelpers ?? {};
  const key = credentialKey(host);
  const named = helpers[key] ?? helpers[host] ?? Object.entries(helpers).find(([k]) => keyHost(k) === keyHost(host))?.[1];
  if (typeof named === 'string' && named) return named;
  return typeof file.credsStore === 'string' && file.credsStore ? file.credsStore : undefined;
}

/** Where credentials for a host came from, for messages (never the secret itself). */
export interface CredentialSource {
  credential: Credential;
  /** e.g. `/root/.docker/config.json`, `docker-credential-pass`. */
  from: string;
}

/**
 * Credentials for `host` (`docker.io`, `127.0.0.1:5000`), or undefined for anonymous access.
 * `repository` lets containers-auth.json entries scoped to a namespace apply.
 */
export async function resolveCredentials(host: string, opts: CredentialOptions & { repository?: string } = {}): Promise<CredentialSource | undefined> {
  const env = opts.env ?? process.env;
  const authFile = authFilePath(opts);
  if (authFile) {
    const found = await fromFile(authFile, host, opts.repository, env, opts);
    if (found) return found;
  }
  const dockerPath = dockerConfigPath(env);
  return fromFile(dockerPath, host, undefined, env, opts);
}

async function fromFile(
  path: string,
  host: string,
  repository: string | undefined,
  env: NodeJS.ProcessEnv,
  opts: CredentialOptions,
): Promise<CredentialSource | undefined> {
  const file = await readAuthFile(path);
  if (!file) return undefined;
  const helper = helperFor(file, host);
  if (helper) {
    const cred = await helperGet(helper, credentialKey(host), env, opts.helperTimeoutMs);
    if (cred) return { credential: cred, from: `docker-credential-${helper}` };
  }
  const entry = credentialFromEntry(findEntry(file.auths, host, repository));
  return entry ? { credential: entry, from: path } : undefined;
}

// ------------------------------------------------------------------ credential helpers

interface HelperResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `docker-credential-<name> <action>` with `input` on stdin. */
export function runCredentialHelper(
  name: string,
  action: 'get' | 'store' | 'erase' | 'list',
  input: string,
  env: NodeJS.ProcessEnv = process.env,
  timeoutMs = 30_000,
): Promise<HelperResult> {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) {
    return Promise.reject(new CredentialHelperError(name, 'is not a valid helper name'));
  }
  const program = `docker-credential-${name}`;
  return new Promise((resolve, reject) => {
    const child = spawn(program, [action], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new CredentialHelperError(name, `${action} did not finish within ${Math.round(timeoutMs / 1000)}s`));
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new CredentialHelperError(name, e.code === 'ENOENT' ? 'not found on PATH' : `cannot run: ${e.code ?? e.message}`, { cause: e }));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    // A helper that exits without reading stdin makes the write fail with EPIPE; its exit status
    // says what happened.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

const NOT_FOUND = /credentials not found|not found in native keychain|no credentials/i;

async function helperGet(name: string, serverURL: string, env: NodeJS.ProcessEnv, timeoutMs?: number): Promise<Credential | undefined> {
  const r = await runCredentialHelper(name, 'get', serverURL, env, timeoutMs);
  if (r.code !== 0) {
    if (NOT_FOUND.test(r.stdout) || NOT_FOUND.test(r.stderr)) return undefined;
    // The helper's own words may include the server URL but never a secret it failed to return.
    const said = (r.stdout.trim() || r.stderr.trim()).split('\n')[0]?.slice(0, 200) ?? '';
    throw new CredentialHelperError(name, `get failed (exit ${r.code})${said ? `: ${said}` : ''}`);
  }
  let doc: { Username?: unknown; Secret?: unknown };
  try {
    doc = JSON.parse(r.stdout) as typeof doc;
  } catch (err) {
    throw new CredentialHelperError(name, 'get printed something that is not JSON', { cause: err });
  }
  const username = typeof doc.Username === 'string' ? doc.Username : '';
  const secret = typeof doc.Secret === 'string' ? doc.Secret : '';
  if (!secret) return undefined;
  if (username === '<token>') return { kind: 'identityToken', token: secret };
  return { kind: 'basic', username, password: secret };
}

// ------------------------------------------------------------------ saving (login / logout)

export interface SavedCredentials {
  /** The file written, or the helper used. */
  where: string;
}

/** Which file `kiln login` writes: `--authfile` / `$REGISTRY_AUTH_FILE`, else docker's config.json. */
export function loginFilePath(opts: CredentialOptions = {}): string {
  return authFilePath(opts) ?? dockerConfigPath(opts.env ?? process.env);
}

/**
 * Saves credentials for `host` as docker does: into the configured helper (leaving an empty
 * `auths` entry so tools listing logins still see it), else into `auths` with mode 0600.
 */
export async function storeCredentials(host: string, cred: Credential, opts: CredentialOptions = {}): Promise<SavedCredentials> {
  const env = opts.env ?? process.env;
  const path = loginFilePath(opts);
  const file = (await readAuthFile(path)) ?? {};
  const key = credentialKey(host);
  const auths: Record<string, AuthEntry> = { ...(file.auths ?? {}) };
  // Remove other spellings of the same host so the new login is the one found.
  for (const k of Object.keys(auths)) if (k !== key && !isNamespacedKey(k) && keyHost(k) === keyHost(host)) delete auths[k];
  const helper = helperFor(file, host);
  let where = path;
  if (helper) {
    const [username, secret] =
      cred.kind === 'basic' ? [cred.username, cred.password] : cred.kind === 'identityToken' ? ['<token>', cred.token] : ['<token>', cred.token];
    const r = await runCredentialHelper(helper, 'store', JSON.stringify({ ServerURL: key, Username: username, Secret: secret }), env, opts.helperTimeoutMs);
    if (r.code !== 0) {
      const said = (r.stdout.trim() || r.stderr.trim()).split('\n')[0]?.slice(0, 200) ?? '';
      throw new CredentialHelperError(helper, `store failed (exit ${r.code})${said ? `: ${said}` : ''}`);
    }
    auths[key] = {};
    where = `docker-credential-${helper}`;
  } else if (cred.kind === 'basic') {
    auths[key] = { auth: encodeAuth(cred.username, cred.password) };
  } else if (cred.kind === 'identityToken') {
    auths[key] = { ...(cred.username ? { auth: encodeAuth(cred.username, '') } : {}), identitytoken: cred.token };
  } else {
    auths[key] = { registrytoken: cred.token };
  }
  await writeAuthFile(path, { ...file, auths });
  return { where };
}

/** Removes the login for `host`; answers false when there was none. */
export async function eraseCredentials(host: string, opts: CredentialOptions = {}): Promise<boolean> {
  const env = opts.env ?? process.env;
  const path = loginFilePath(opts);
  const file = await readAuthFile(path);
  if (!file) return false;
  const auths: Record<string, AuthEntry> = { ...(file.auths ?? {}) };
  let found = false;
  for (const k of Object.keys(auths)) {
    if (k === credentialKey(host) || (!isNamespacedKey(k) && keyHost(k) === keyHost(host))) {
      delete auths[k];
      found = true;
    }
  }
  const helper = helperFor(file, host);
  if (helper) {
    const r = await runCredentialHelper(helper, 'erase', credentialKey(host), env, opts.helperTimeoutMs);
    if (r.code === 0) found = true;
    else if (!NOT_FOUND.test(r.stdout) && !NOT_FOUND.test(r.stderr)) {
      const said = (r.stdout.trim() || r.stderr.trim()).split('\n')[0]?.slice(0, 200) ?? '';
      throw new CredentialHelperError(helper, `erase failed (exit ${r.code})${said ? `: ${said}` : ''}`);
    }
  }
  if (found) await writeAuthFile(path, { ...file, auths });
  return found;
}

/** Replaces an auth file atomically, readable by its owner only (it holds secrets). */
export async function writeAuthFile(path: string, doc: AuthFile): Promise<void> {
  const dir = dirname(path);
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${randomBytes(6).toString('hex')}.tmp`);
  try {
    // docker writes its config with tabs; keeping that keeps diffs of hand-edited files small.
    await fsp.writeFile(tmp, `${JSON.stringify(doc, null, '\t')}\n`, { mode: 0o600, flag: 'wx' });
    await fsp.chmod(tmp, 0o600);
    await fsp.rename(tmp, path);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw new AuthConfigError(path, `cannot write: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
}
