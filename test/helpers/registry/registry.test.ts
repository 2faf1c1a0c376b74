/**
 * Self-tests of the registry helpers, using real tools: skopeo pushes a tiny OCI image into the
 * registry in each auth mode and reads it back, credentials are checked, the token server's
 * flows are exercised against the registry, and the fault proxy's faults are observed with fetch.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  requireDebianPackage,
  startFaultProxy,
  startRegistry,
  TOKEN_SERVICE,
  writeTinyOciImage,
  type FaultProxy,
  type RegistryServer,
  type TinyImage,
} from './index.js';

const SKOPEO = '/usr/bin/skopeo';
let work: string;
let image: TinyImage;

beforeAll(async () => {
  requireDebianPackage('skopeo', SKOPEO);
  requireDebianPackage('docker-registry', '/usr/bin/docker-registry');
  work = await mkdtemp(join(tmpdir(), 'kiln-regtest-'));
  image = await writeTinyOciImage(join(work, 'layout'));
});
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function skopeo(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      SKOPEO,
      args,
      {
        timeout: 60_000,
        maxBuffer: 16 << 20,
        // An auth file of its own, so nothing the machine's user has logged into leaks into the test.
        env: { ...process.env, REGISTRY_AUTH_FILE: join(work, 'auth.json') },
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

const creds = (r: RegistryServer, password = r.password): string[] =>
  r.username ? ['--creds', `${r.username}:${password}`] : [];

async function push(r: { host: string }, repo: string, login: string[] = []): Promise<Run> {
  const destCreds = login.length ? ['--dest-creds', login[1]!] : [];
  return skopeo(['copy', '--insecure-policy', '--dest-tls-verify=false', ...destCreds, image.ref, `docker://${r.host}/${repo}`]);
}

async function inspect(r: { host: string }, repo: string, login: string[] = []): Promise<Run> {
  return skopeo(['inspect', '--tls-verify=false', ...login, `docker://${r.host}/${repo}`]);
}

const basicHeader = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** Whether `pid` is a running process; a zombie (killed, not yet reaped by its new parent) counts as gone. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // The state follows the parenthesised command name in /proc/PID/stat.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !alive(pid);
}

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function decodeJwt(token: string): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  const [h, c] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h!, 'base64url').toString('utf8')) as Record<string, unknown>,
    claims: JSON.parse(Buffer.from(c!, 'base64url').toString('utf8')) as Record<string, unknown>,
  };
}

describe('anonymous registry', () => {
  let reg: RegistryServer;
  beforeAll(async () => {
    reg = await startRegistry();
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('answers /v2/ without credentials, on 127.0.0.1', async () => {
    expect(reg.host).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(reg.url).toBe(`http://${reg.host}`);
    const res = await fetch(`${reg.url}/v2/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
  });

  it('takes a skopeo push and serves it back to skopeo inspect', async () => {
    const pushed = await push(reg, 'kiln/tiny:v1');
    expect(pushed.code, pushed.stderr + reg.logs()).toBe(0);
    const got = await inspect(reg, 'kiln/tiny:v1');
    expect(got.code, got.stderr).toBe(0);
    const info = JSON.parse(got.stdout) as { Digest: string; Layers: string[] };
    expect(info.Digest).toBe(image.manifest.digest);
    expect(info.Layers).toEqual([image.layer.digest]);
    // The storage root is where the tests can look: the repository is on disk.
    expect(existsSync(join(reg.storageDir, 'docker/registry/v2/repositories/kiln/tiny'))).toBe(true);
  });

  it('has deletes enabled', async () => {
    const pushed = await push(reg, 'kiln/deleteme:v1');
    expect(pushed.code, pushed.stderr).toBe(0);
    const res = await fetch(`${reg.url}/v2/kiln/deleteme/manifests/${image.manifest.digest}`, { method: 'DELETE' });
    expect(res.status).toBe(202);
  });

  it('can answer with relative Location headers', async () => {
    const rel = await startRegistry({ relativeUrls: true });
    try {
      const res = await fetch(`${rel.url}/v2/kiln/rel/blobs/uploads/`, { method: 'POST' });
      expect(res.status).toBe(202);
      expect(res.headers.get('location')).toMatch(/^\/v2\/kiln\/rel\/blobs\/uploads\//);
    } finally {
      await rel.stop();
    }
  });

  it('captures the registry output', () => {
    expect(reg.logs()).toMatch(/GET \/v2\//);
  });
});

describe('basic-auth registry', () => {
  let reg: RegistryServer;
  beforeAll(async () => {
    reg = await startRegistry({ mode: 'basic' });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('challenges anonymous requests with Basic', async () => {
    const res = await fetch(`${reg.url}/v2/`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
  });

  it('takes a skopeo push with the test user and serves it back', async () => {
    const pushed = await push(reg, 'kiln/tiny:v1', creds(reg));
    expect(pushed.code, pushed.stderr + reg.logs()).toBe(0);
    const got = await inspect(reg, 'kiln/tiny:v1', creds(reg));
    expect(got.code, got.stderr).toBe(0);
    expect((JSON.parse(got.stdout) as { Digest: string }).Digest).toBe(image.manifest.digest);
  });

  it('answers 401 to a wrong password', async () => {
    const ok = await fetch(`${reg.url}/v2/`, { headers: { authorization: basicHeader(reg.username!, reg.password!) } });
    expect(ok.status).toBe(200);
    const bad = await fetch(`${reg.url}/v2/`, { headers: { authorization: basicHeader(reg.username!, 'wrong') } });
    expect(bad.status).toBe(401);
    const got = await inspect(reg, 'kiln/tiny:v1', creds(reg, 'wrong'));
    expect(got.code).not.toBe(0);
    expect(got.stderr).toMatch(/401|unauthorized/i);
  });

  it('accepts every configured user', async () => {
    const two = await startRegistry({ mode: 'basic', users: { alice: 'a-pass', bob: 'b-pass' } });
    try {
      expect(two.username).toBe('alice');
      for (const [u, p] of Object.entries({ alice: 'a-pass', bob: 'b-pass' })) {
        const res = await fetch(`${two.url}/v2/`, { headers: { authorization: basicHeader(u, p) } });
        expect(res.status, u).toBe(200);
      }
    } finally {
      await two.stop();
    }
  });
});

describe('token-auth registry', () => {
  let reg: RegistryServer;
  beforeAll(async () => {
    reg = await startRegistry({ mode: 'token' });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('challenges with a Bearer realm at the token server', async () => {
    const res = await fetch(`${reg.url}/v2/`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe(
      `Bearer realm="${reg.tokenServer!.url}",service="${TOKEN_SERVICE}"`,
    );
  });

  it('takes a skopeo push with the test user and serves it back', async () => {
    const pushed = await push(reg, 'kiln/tiny:v1', creds(reg));
    expect(pushed.code, pushed.stderr + reg.logs()).toBe(0);
    const got = await inspect(reg, 'kiln/tiny:v1', creds(reg));
    expect(got.code, got.stderr).toBe(0);
    expect((JSON.parse(got.stdout) as { Digest: string }).Digest).toBe(image.manifest.digest);
    const pushToken = reg.tokenServer!.issued.find((t) =>
      t.access.some((a) => a.name === 'kiln/tiny' && a.actions.includes('push')),
    );
    expect(pushToken?.account).toBe(reg.username);
    expect(pushToken?.scope).toContain('repository:kiln/tiny:pull,push');
  });

  it('signs tokens the way the registry verifies them', async () => {
    const res = await fetch(`${reg.tokenServer!.url}?service=${TOKEN_SERVICE}&scope=repository:kiln/tiny:pull`, {
      headers: { authorization: basicHeader(reg.username!, reg.password!) },
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { token: string; access_token: string; expires_in: number; issued_at: string };
    expect(body.access_token).toBe(body.token);
    expect(body.expires_in).toBe(300);
    expect(Number.isNaN(Date.parse(body.issued_at))).toBe(false);
    const { header, claims } = decodeJwt(body.token);
    expect(header).toMatchObject({ typ: 'JWT', alg: 'RS256' });
    expect(header.x5c).toHaveLength(1);
    expect(claims).toMatchObject({
      iss: reg.tokenServer!.issuer,
      sub: reg.username,
      aud: TOKEN_SERVICE,
      access: [{ type: 'repository', name: 'kiln/tiny', actions: ['pull'] }],
    });
    for (const k of ['exp', 'nbf', 'iat', 'jti']) expect(claims[k], k).toBeDefined();
    const manifest = await fetch(`${reg.url}/v2/kiln/tiny/manifests/v1`, {
      headers: { authorization: `Bearer ${body.token}`, accept: image.manifest.mediaType },
    });
    expect(manifest.status).toBe(200);
    expect(manifest.headers.get('docker-content-digest')).toBe(image.manifest.digest);
    // A pull-only token does not allow a push.
    const upload = await fetch(`${reg.url}/v2/kiln/tiny/blobs/uploads/`, {
      method: 'POST',
      headers: { authorization: `Bearer ${body.token}` },
    });
    expect(upload.status).toBe(401);
    expect(upload.headers.get('www-authenticate')).toMatch(/error="insufficient_scope"/);
  });

  it('answers 401 to a wrong password, at the token server and through skopeo', async () => {
    const res = await fetch(`${reg.tokenServer!.url}?service=${TOKEN_SERVICE}&scope=repository:kiln/tiny:pull`, {
      headers: { authorization: basicHeader(reg.username!, 'wrong') },
    });
    expect(res.status).toBe(401);
    const got = await inspect(reg, 'kiln/tiny:v1', creds(reg, 'wrong'));
    expect(got.code).not.toBe(0);
    expect(got.stderr).toMatch(/401|unauthorized/i);
  });

  it('gives anonymous clients a token without access, which the registry refuses', async () => {
    const res = await fetch(`${reg.tokenServer!.url}?service=${TOKEN_SERVICE}&scope=repository:kiln/tiny:pull`);
    expect(res.status).toBe(200);
    const { token } = (await res.json()) as { token: string };
    expect(decodeJwt(token).claims.access).toEqual([]);
    const manifest = await fetch(`${reg.url}/v2/kiln/tiny/manifests/v1`, { headers: { authorization: `Bearer ${token}` } });
    expect(manifest.status).toBe(401);
  });

  it('supports the OAuth2 password and refresh_token grants', async () => {
    const ts = reg.tokenServer!;
    const post = (form: Record<string, string>) =>
      fetch(ts.url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(form).toString(),
      });
    const first = await post({
      grant_type: 'password',
      username: reg.username!,
      password: reg.password!,
      service: TOKEN_SERVICE,
      client_id: 'kiln-test',
      access_type: 'offline',
    });
    expect(first.status).toBe(200);
    const { refresh_token } = (await first.json()) as { refresh_token: string };
    expect(refresh_token).toBeTruthy();

    const refreshed = await post({
      grant_type: 'refresh_token',
      refresh_token,
      service: TOKEN_SERVICE,
      client_id: 'kiln-test',
      scope: 'repository:kiln/tiny:pull',
    });
    expect(refreshed.status).toBe(200);
    const body = (await refreshed.json()) as { access_token: string; scope: string; refresh_token: string };
    expect(body.scope).toBe('repository:kiln/tiny:pull');
    expect(body.refresh_token).toBe(refresh_token);
    const manifest = await fetch(`${reg.url}/v2/kiln/tiny/manifests/v1`, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${body.access_token}`, accept: image.manifest.mediaType },
    });
    expect(manifest.status).toBe(200);
    expect(ts.issued.at(-1)).toMatchObject({ grant: 'refresh_token', account: reg.username, clientId: 'kiln-test' });

    const wrong = await post({ grant_type: 'password', username: reg.username!, password: 'x', service: TOKEN_SERVICE, client_id: 'k' });
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: string }).error).toBe('invalid_grant');

    ts.revokeRefreshTokens();
    const revoked = await post({ grant_type: 'refresh_token', refresh_token, service: TOKEN_SERVICE, client_id: 'kiln-test' });
    expect(revoked.status).toBe(401);
  });

  it('hands out a refresh token on GET with offline_token=true', async () => {
    const res = await fetch(
      `${reg.tokenServer!.url}?service=${TOKEN_SERVICE}&scope=repository:kiln/tiny:pull&offline_token=true&client_id=kiln-test`,
      { headers: { authorization: basicHeader(reg.username!, reg.password!) } },
    );
    expect(res.status).toBe(200);
    expect(((await res.json()) as { refresh_token?: string }).refresh_token).toBeTruthy();
  });

  it('can fail on demand', async () => {
    reg.tokenServer!.failNext(503);
    const url = `${reg.tokenServer!.url}?service=${TOKEN_SERVICE}`;
    expect((await fetch(url)).status).toBe(503);
    expect((await fetch(url)).status).toBe(200);
  });

  it('lets anonymous clients pull when anonymousPull is set', async () => {
    const open = await startRegistry({ mode: 'token', anonymousPull: true });
    try {
      expect((await push(open, 'kiln/tiny:v1', creds(open))).code).toBe(0);
      const got = await inspect(open, 'kiln/tiny:v1');
      expect(got.code, got.stderr).toBe(0);
      const anon = open.tokenServer!.issued.filter((t) => t.account === undefined);
      expect(anon.length).toBeGreaterThan(0);
      expect(anon.flatMap((t) => t.access.flatMap((a) => a.actions))).toEqual(expect.arrayContaining(['pull']));
      expect(anon.flatMap((t) => t.access.flatMap((a) => a.actions))).not.toContain('push');
    } finally {
      await open.stop();
    }
  });
});

describe('fault proxy', () => {
  let reg: RegistryServer;
  let proxy: FaultProxy;
  const big = randomBytes(1 << 20);
  const bigDigest = `sha256:${createHash('sha256').update(big).digest('hex')}`;

  beforeAll(async () => {
    reg = await startRegistry();
    proxy = await startFaultProxy(reg.url);
  });
  afterAll(async () => {
    await proxy?.stop();
    await reg?.stop();
  });

  it('forwards a skopeo push, keeping the upload on the proxy through rewritten Locations', async () => {
    const pushed = await push(proxy, 'kiln/tiny:v1');
    expect(pushed.code, pushed.stderr).toBe(0);
    // Had the Location headers still named the registry, the uploads' PATCH/PUT would have bypassed the proxy.
    expect(proxy.requests.some((r) => r.method === 'PUT' && r.path.includes('/blobs/uploads/'))).toBe(true);
    const got = await inspect(proxy, 'kiln/tiny:v1');
    expect(got.code, got.stderr).toBe(0);
    expect(proxy.stats.bytesToServer).toBeGreaterThanOrEqual(image.layer.size);
  });

  it('pushes a 1 MiB blob through the proxy', async () => {
    const start = await fetch(`${proxy.url}/v2/kiln/big/blobs/uploads/`, { method: 'POST' });
    expect(start.status).toBe(202);
    const location = start.headers.get('location')!;
    expect(location.startsWith(`${proxy.url}/v2/kiln/big/blobs/uploads/`)).toBe(true);
    const put = await fetch(`${location}&digest=${bigDigest}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: big,
    });
    expect(put.status).toBe(201);
    expect(put.headers.get('location')).toBe(`${proxy.url}/v2/kiln/big/blobs/${bigDigest}`);
  });

  it('answers a 500 in place of the registry, once', async () => {
    const before = proxy.stats.faultsFired;
    proxy.inject({ kind: 'status', status: 500, match: /^GET \/v2\/$/ });
    const first = await fetch(`${proxy.url}/v2/`);
    expect(first.status).toBe(500);
    expect(((await first.json()) as { errors: unknown[] }).errors).toHaveLength(1);
    const second = await fetch(`${proxy.url}/v2/`);
    expect(second.status).toBe(200);
    expect(proxy.stats.faultsFired).toBe(before + 1);
  });

  it('answers 429 with Retry-After, as many times as asked', async () => {
    proxy.inject({ kind: 'status', status: 429, retryAfter: 2, times: 2 });
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${proxy.url}/v2/`);
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('2');
      await res.body?.cancel();
    }
    expect((await fetch(`${proxy.url}/v2/`)).status).toBe(200);
    expect(proxy.pending()).toEqual([]);
  });

  it('cuts a response mid-body, then serves the next one whole', async () => {
    const toClient = proxy.stats.bytesToClient;
    proxy.inject({ kind: 'drop', afterBytes: 100_000, match: /\/blobs\/sha256:/ });
    const res = await fetch(`${proxy.url}/v2/kiln/big/blobs/${bigDigest}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(big.length));
    await expect(res.arrayBuffer()).rejects.toThrow();
    expect(proxy.stats.bytesToClient - toClient).toBe(100_000);
    expect(proxy.requests.at(-1)).toMatchObject({ status: 200, fault: 'drop' });

    const again = await fetch(`${proxy.url}/v2/kiln/big/blobs/${bigDigest}`);
    expect(Buffer.from(await again.arrayBuffer()).equals(big)).toBe(true);
  });

  it('does not spend a response drop on a response too short to cut', async () => {
    proxy.inject({ kind: 'drop', afterBytes: 10_000 });
    const small = await fetch(`${proxy.url}/v2/`);
    expect(small.status).toBe(200);
    await small.text();
    expect(proxy.pending()).toHaveLength(1);
    const res = await fetch(`${proxy.url}/v2/kiln/big/blobs/${bigDigest}`);
    await expect(res.arrayBuffer()).rejects.toThrow();
    expect(proxy.pending()).toEqual([]);
  });

  it('cuts a request mid-body, after exactly the bytes asked for', async () => {
    const start = await fetch(`${proxy.url}/v2/kiln/cut/blobs/uploads/`, { method: 'POST' });
    expect(start.status).toBe(202);
    const location = start.headers.get('location')!;
    const toServer = proxy.stats.bytesToServer;
    proxy.inject({ kind: 'drop', direction: 'request', afterBytes: 65_536, match: /^PATCH / });
    await expect(
      fetch(location, { method: 'PATCH', headers: { 'content-type': 'application/octet-stream' }, body: big }),
    ).rejects.toThrow();
    expect(proxy.stats.bytesToServer - toServer).toBe(65_536);
    // The registry finishes the broken PATCH on its own time; its access-log line marks the end.
    await waitFor(() => /"PATCH \/v2\/kiln\/cut\/blobs\/uploads\//.test(reg.logs()));
    // The registry stored the bytes it got, so the upload no longer matches the offset in the
    // Location's _state: distribution cancels it, and a client has to start the upload over.
    const status = await fetch(location);
    expect(status.status).toBe(404);
    expect(await status.text()).toContain('BLOB_UPLOAD_INVALID');
    expect(reg.logs()).toContain('upload resumed at wrong offest: 65536 != 0');
  });

  it('delays a request', async () => {
    proxy.inject({ kind: 'delay', ms: 300 });
    const t0 = Date.now();
    const res = await fetch(`${proxy.url}/v2/`);
    expect(res.status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  });

  it('passes a token-mode challenge through untouched and works with skopeo', async () => {
    const treg = await startRegistry({ mode: 'token' });
    const tproxy = await startFaultProxy(treg.url);
    try {
      const res = await fetch(`${tproxy.url}/v2/`);
      expect(res.headers.get('www-authenticate')).toContain(`realm="${treg.tokenServer!.url}"`);
      expect((await push(tproxy, 'kiln/tiny:v1', creds(treg))).code).toBe(0);
      const got = await inspect(tproxy, 'kiln/tiny:v1', creds(treg));
      expect(got.code, got.stderr).toBe(0);
      expect(tproxy.requests.some((r) => r.method === 'PUT' && r.path.includes('/manifests/'))).toBe(true);
    } finally {
      await tproxy.stop();
      await treg.stop();
    }
  });
});

describe('cleanup', () => {
  it('stop() kills the registry and removes its temp dir', async () => {
    const reg = await startRegistry({ mode: 'basic' });
    expect(alive(reg.pid)).toBe(true);
    await reg.stop();
    await reg.stop(); // twice is fine
    expect(await waitGone(reg.pid)).toBe(true);
    expect(existsSync(reg.storageDir)).toBe(false);
    expect(existsSync(reg.configPath)).toBe(false);
  });

  // A script that starts a registry, prints its pid and temp dir, then leaves without calling stop().
  async function orphanScript(how: 'exit' | 'hang'): Promise<string> {
    // .mts: outside the package, a .ts file would be loaded as CommonJS, which has no top-level await.
    const script = join(work, `orphan-${how}.mts`);
    const helpers = pathToFileURL(join(import.meta.dirname, 'index.ts')).href;
    await writeFile(
      script,
      `import { startRegistry } from ${JSON.stringify(helpers)};\n` +
        `const r = await startRegistry();\n` +
        `console.log(JSON.stringify({ pid: r.pid, storageDir: r.storageDir }));\n` +
        (how === 'exit' ? `process.exit(0);\n` : `setInterval(() => {}, 1000);\n`),
    );
    return script;
  }

  interface Orphan {
    pid: number;
    storageDir: string;
  }

  function runScript(script: string, onStarted: (o: Orphan, child: ReturnType<typeof spawn>) => void): Promise<Orphan> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', script], {
        // the repository root, where `--import tsx` is resolved
        cwd: join(import.meta.dirname, '../../..'),
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      let started: Orphan | undefined;
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        const line = /^\{.*\}$/m.exec(out);
        if (line && !started) {
          started = JSON.parse(line[0]) as Orphan;
          onStarted(started, child);
        }
      });
      child.on('error', reject);
      child.on('exit', () => (started ? resolve(started) : reject(new Error(`the script printed no registry: ${out}`))));
    });
  }

  it('kills the registry and removes its temp dir when the test process exits without stop()', async () => {
    const o = await runScript(await orphanScript('exit'), () => {});
    expect(await waitGone(o.pid)).toBe(true);
    expect(existsSync(o.storageDir)).toBe(false);
  });

  it('kills the registry even when the test process is SIGKILLed, and the next start sweeps its temp dir', async () => {
    const o = await runScript(await orphanScript('hang'), (_o, child) => child.kill('SIGKILL'));
    expect(await waitGone(o.pid)).toBe(true);
    const next = await startRegistry();
    await next.stop();
    expect(existsSync(o.storageDir)).toBe(false);
  });
});
