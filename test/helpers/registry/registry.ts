/**
 * Runs a real registry — Debian's `docker-registry`, i.e. the CNCF distribution server 2.8 — on
 * 127.0.0.1 for tests, with its config and filesystem storage in a temp dir, in one of three auth
 * modes: anonymous, htpasswd (Basic) or token (Bearer, with an in-process token server).
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';
import { requireDebianPackage } from './debian.js';
import { ownTempDir, releaseTempDir, spawnOwned, stopChild, sweepStaleTempDirs } from './processes.js';
import { startTokenServer, type AccessPolicy, type TokenServer } from './token-server.js';

export type AuthMode = 'none' | 'basic' | 'token';

export interface RegistryServer {
  /** '127.0.0.1:PORT' */
  host: string;
  /** 'http://127.0.0.1:PORT' */
  url: string;
  mode: AuthMode;
  /** the first configured user, for basic and token modes */
  username?: string;
  password?: string;
  /** every configured user and password (basic and token modes) */
  users: Record<string, string>;
  /** token mode: the token server named as the realm in the registry's Bearer challenge */
  tokenServer?: TokenServer;
  /** the registry's filesystem storage root (tests may inspect/corrupt it); repositories live under docker/registry/v2 */
  storageDir: string;
  /** the registry's config file */
  configPath: string;
  /** the registry process id */
  pid: number;
  /** captured registry stderr/stdout, for diagnosing failures */
  logs(): string;
  /** kills the process, stops the token server, removes temp dirs; safe to call twice */
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  mode?: AuthMode;
  /** user → password for basic and token modes; default { [DEFAULT_USERNAME]: DEFAULT_PASSWORD } */
  users?: Record<string, string>;
  /** token mode: anonymous token requests get `pull` on every repository (default false: they get nothing) */
  anonymousPull?: boolean;
  /** token mode: token lifetime in seconds (default 300) */
  tokenExpiresIn?: number;
  /** token mode: replaces the default grants (every action on every repository for any authenticated user) */
  tokenAccess?: AccessPolicy;
  /** make the registry answer with relative Location headers (distribution's http.relativeurls) */
  relativeUrls?: boolean;
  /** registry log level (default 'info', which includes an access log line per request) */
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
}

export const DEFAULT_USERNAME = 'kiln-tester';
export const DEFAULT_PASSWORD = 'kiln-test-password';
/** token mode: the `service` the registry names in its challenge and expects as the token's audience */
export const TOKEN_SERVICE = 'kiln-test-registry';
/** token mode: the issuer the registry trusts */
export const TOKEN_ISSUER = 'kiln-test-token-issuer';
const REGISTRY_BIN = '/usr/bin/docker-registry';
const LOG_LIMIT = 4 << 20;
const TEMP_PREFIX = 'kiln-registry-';

const execFileP = promisify(execFile);

/** A port that was free a moment ago; the registry start is retried if another process takes it first. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** A self-signed RSA certificate for signing tokens; openssl because node:crypto cannot create certificates. */
async function makeSigningCert(dir: string): Promise<{ keyPem: string; certPem: string; certPath: string }> {
  const keyPath = join(dir, 'token-signing.key');
  const certPath = join(dir, 'token-signing.crt');
  await execFileP('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2',
    '-subj', '/CN=kiln test token issuer',
    '-keyout', keyPath, '-out', certPath,
  ]);
  return { keyPem: await readFile(keyPath, 'utf8'), certPem: await readFile(certPath, 'utf8'), certPath };
}

// JSON strings are valid YAML double-quoted scalars, so every value is written with this.
const q = (s: string): string => JSON.stringify(s);

function registryConfig(opts: {
  port: number;
  storageDir: string;
  logLevel: string;
  relativeUrls: boolean;
  auth: string[];
}): string {
  return [
    'version: 0.1',
    'log:',
    `  level: ${opts.logLevel}`,
    '  formatter: text',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${q(opts.storageDir)}`,
    '  delete:',
    '    enabled: true',
    // No blob-descriptor cache: a test that corrupts storage must see the registry read the disk.
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: ${q(`127.0.0.1:${opts.port}`)}`,
    `  secret: ${q(randomBytes(16).toString('hex'))}`,
    `  relativeurls: ${opts.relativeUrls}`,
    '  headers:',
    '    X-Content-Type-Options: [nosniff]',
    ...opts.auth,
    '',
  ].join('\n');
}

/** The registry's environment: REGISTRY_* variables override its config file, so none are passed on. */
function registryEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('REGISTRY_') && !k.startsWith('OTEL_')) env[k] = v;
  return env;
}

export async function startRegistry(options: StartRegistryOptions = {}): Promise<RegistryServer> {
  requireDebianPackage('docker-registry', REGISTRY_BIN);
  const mode = options.mode ?? 'none';
  const users = mode === 'none' ? {} : (options.users ?? { [DEFAULT_USERNAME]: DEFAULT_PASSWORD });
  if (mode !== 'none' && Object.keys(users).length === 0) throw new Error(`${mode} mode needs at least one user`);
  for (const name of Object.keys(users)) {
    if (name.includes(':')) throw new Error(`user name ${JSON.stringify(name)} cannot contain ':' (htpasswd and Basic auth split on it)`);
  }

  sweepStaleTempDirs(tmpdir(), TEMP_PREFIX);
  const dir = await mkdtemp(join(tmpdir(), TEMP_PREFIX));
  ownTempDir(dir);
  const storageDir = join(dir, 'storage');
  const configPath = join(dir, 'config.yml');
  let tokenServer: TokenServer | undefined;
  try {
    let auth: string[] = [];
    if (mode === 'basic') {
      const htpasswdPath = join(dir, 'htpasswd');
      // Cost 4, bcrypt's minimum: the registry checks the hash on every request, and the default
      // cost of 10 would add tens of milliseconds to each one.
      const lines = Object.entries(users).map(([u, p]) => `${u}:${bcrypt.hashSync(p, 4)}`);
      await writeFile(htpasswdPath, lines.join('\n') + '\n', { mode: 0o600 });
      auth = ['auth:', '  htpasswd:', `    realm: ${q('kiln-test-registry')}`, `    path: ${q(htpasswdPath)}`];
    } else if (mode === 'token') {
      const { keyPem, certPem, certPath } = await makeSigningCert(dir);
      tokenServer = await startTokenServer({
        service: TOKEN_SERVICE,
        issuer: TOKEN_ISSUER,
        users,
        keyPem,
        certPem,
        ...(options.tokenExpiresIn !== undefined ? { expiresIn: options.tokenExpiresIn } : {}),
        ...(options.anonymousPull !== undefined ? { anonymousPull: options.anonymousPull } : {}),
        ...(options.tokenAccess ? { access: options.tokenAccess } : {}),
      });
      auth = [
        'auth:',
        '  token:',
        `    realm: ${q(tokenServer.url)}`,
        `    service: ${q(TOKEN_SERVICE)}`,
        `    issuer: ${q(TOKEN_ISSUER)}`,
        `    rootcertbundle: ${q(certPath)}`,
      ];
    }

    const logChunks: string[] = [];
    let logSize = 0;
    const capture = (b: Buffer): void => {
      const s = b.toString('utf8');
      logChunks.push(s);
      logSize += s.length;
      while (logSize > LOG_LIMIT && logChunks.length > 1) logSize -= logChunks.shift()!.length;
    };
    const logs = (): string => logChunks.join('');

    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      await writeFile(
        configPath,
        registryConfig({
          port,
          storageDir,
          logLevel: options.logLevel ?? 'info',
          relativeUrls: options.relativeUrls ?? false,
          auth,
        }),
      );
      const child = spawnOwned(REGISTRY_BIN, ['serve', configPath], {
        cwd: dir,
        env: registryEnv(),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout!.on('data', capture);
      child.stderr!.on('data', capture);
      const host = `127.0.0.1:${port}`;
      const url = `http://${host}`;
      const ready = await waitForRegistry(url, child);
      if (ready !== true) {
        await stopChild(child);
        if (ready === 'port-taken' && attempt < 5) continue;
        throw new Error(`docker-registry did not start (${ready}); its output:\n${logs()}`);
      }

      let stopped: Promise<void> | undefined;
      const first = Object.entries(users)[0];
      return {
        host,
        url,
        mode,
        ...(first ? { username: first[0], password: first[1] } : {}),
        users: { ...users },
        ...(tokenServer ? { tokenServer } : {}),
        storageDir,
        configPath,
        pid: child.pid!,
        logs,
        stop() {
          stopped ??= (async () => {
            await stopChild(child);
            await tokenServer?.stop();
            await rm(dir, { recursive: true, force: true });
            releaseTempDir(dir);
          })();
          return stopped;
        },
      };
    }
  } catch (err) {
    await tokenServer?.stop();
    await rm(dir, { recursive: true, force: true });
    releaseTempDir(dir);
    throw err;
  }
}

/** Polls /v2/ until the registry answers (any status: 401 is the normal answer with auth on). */
async function waitForRegistry(
  url: string,
  child: ChildProcess,
  timeoutMs = 20_000,
): Promise<true | 'port-taken' | string> {
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    exited = `exited with ${signal ?? code}`;
  });
  child.once('error', (err) => {
    exited = `could not be started: ${err.message}`;
  });
  let output = '';
  child.stderr!.on('data', (b: Buffer) => {
    if (output.length < 1 << 16) output += b.toString('utf8');
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited) return /address already in use/i.test(output) ? 'port-taken' : exited;
    try {
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      // The header tells our registry apart from whatever else might have grabbed the port.
      if (res.headers.get('docker-distribution-api-version') === 'registry/2.0' && !exited) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return `no answer on ${url}/v2/ within ${timeoutMs} ms`;
}
