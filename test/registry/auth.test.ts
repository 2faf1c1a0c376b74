/**
 * Auth end to end: Basic and Bearer registries, credentials from docker's config.json and from a
 * credential helper on PATH, `kiln login` / `kiln logout` through the CLI, tokens cached and
 * refreshed, identity tokens through the OAuth2 POST, wrong passwords as one line, and
 * credentials never following a redirect to another host.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../src/oci/digest.js';
import { AuthError, BlobRecord, Registries, downloadBlob, pullImage, pushImage } from '../../src/registry/index.js';
import { openStore } from '../../src/store/index.js';
import { startRegistry, type RegistryServer } from '../helpers/registry/index.js';
import { installFakeHelper } from './credential-helper.js';
import { basicAuth, isolatedEnv, kilnAsync, storeWithImage, tempDir, writeDockerConfig } from './util.js';

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('basic auth registry', () => {
  let reg: RegistryServer;
  let work: string;
  beforeAll(async () => {
    reg = await startRegistry({ mode: 'basic' });
    work = await tempDir();
  });
  afterAll(async () => {
    await reg?.stop();
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  it('refuses a wrong password with a one-line AuthError naming the registry', async () => {
    const { store } = await storeWithImage('a:1');
    const err = await pushImage(await store.resolve('a:1'), `${reg.host}/auth/a:1`, {
      credentials: { kind: 'basic', username: reg.username!, password: 'wrong' },
      env: { PATH: process.env.PATH },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthError);
    const line = (err as AuthError).describe();
    expect(line).not.toContain('\n');
    expect(line.startsWith(`${reg.host}: authentication required`)).toBe(true);
    expect(line).toContain(`kiln login ${reg.host}`);
    expect(line).not.toContain('wrong');
  });

  it('uses credentials from docker config.json for CLI push and pull', async () => {
    const dir = await tempDir();
    const env = isolatedEnv(dir);
    await writeDockerConfig(dir, { auths: { [reg.host]: { auth: basicAuth(reg.username!, reg.password!) } } });
    const { root } = await storeWithImage('cli:1');
    const ref = `${reg.host}/auth/cli:1`;
    const tagged = await kilnAsync(['--root', root, 'tag', 'cli:1', ref], { env });
    expect(tagged.code, tagged.stderr).toBe(0);
    const pushed = await kilnAsync(['--root', root, 'push', ref], { env });
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stdout).toContain(`The push refers to repository [${reg.host}/auth/cli]`);
    expect(pushed.stdout).toMatch(/: Pushed\n/);
    const digest = /^1: digest: (sha256:[a-f0-9]{64}) size: \d+$/m.exec(pushed.stdout)?.[1];
    expect(digest).toBeDefined();
    expect(pushed.stdout + pushed.stderr).not.toContain(reg.password!);

    const again = await kilnAsync(['--root', root, 'push', ref], { env });
    expect(again.stdout).toMatch(/: Layer already exists\n/);
    expect(again.stdout).toContain(`1: digest: ${digest}`);

    const other = await tempDir('kiln-store-');
    const pulled = await kilnAsync(['--root', other, 'pull', ref], { env });
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(pulled.stdout).toContain(`1: Pulling from ${reg.host}/auth/cli`);
    expect(pulled.stdout).toMatch(/: Pull complete\n/);
    expect(pulled.stdout).toContain(`Digest: ${digest}`);
    expect(pulled.stdout).toContain(`Status: Downloaded newer image for ${ref}`);
    expect(pulled.stdout.trim().split('\n').at(-1)).toBe(ref);
    const repeat = await kilnAsync(['--root', other, 'pull', ref], { env });
    expect(repeat.stdout).toContain(`Status: Image is up to date for ${ref}`);
  });

  it('prints a wrong password as one line and exits 1', async () => {
    const dir = await tempDir();
    const env = isolatedEnv(dir);
    await writeDockerConfig(dir, { auths: { [reg.host]: { auth: basicAuth(reg.username!, 'not-the-password') } } });
    const r = await kilnAsync(['--root', await tempDir('kiln-store-'), 'pull', `${reg.host}/auth/cli:1`], { env });
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^kiln: ${reg.host.replace(/\./g, '\\.')}: authentication required`));
    expect(r.stderr).not.toContain('not-the-password');
  });

  it('logs in and out through the CLI, writing docker config with mode 0600', async () => {
    const dir = await tempDir();
    const env = isolatedEnv(dir);
    const config = join(dir, 'docker', 'config.json');

    const bad = await kilnAsync(['login', '-u', reg.username!, '--password-stdin', reg.host], { env, input: 'nope\n' });
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toContain(reg.host);
    await expect(fsp.access(config)).rejects.toThrow();

    const ok = await kilnAsync(['login', '-u', reg.username!, '--password-stdin', reg.host], { env, input: `${reg.password}\n` });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('Login Succeeded\n');
    expect(ok.stdout + ok.stderr).not.toContain(reg.password!);
    const doc = JSON.parse(await fsp.readFile(config, 'utf8')) as { auths: Record<string, { auth: string }> };
    expect(doc.auths[reg.host]).toEqual({ auth: basicAuth(reg.username!, reg.password!) });
    expect((await fsp.stat(config)).mode & 0o777).toBe(0o600);

    // The saved login works for a pull.
    const { root } = await storeWithImage('li:1');
    expect((await kilnAsync(['--root', root, 'tag', 'li:1', `${reg.host}/auth/li:1`], { env })).code).toBe(0);
    const pushed = await kilnAsync(['--root', root, 'push', `${reg.host}/auth/li:1`], { env });
    expect(pushed.code, pushed.stderr).toBe(0);

    const warned = await kilnAsync(['login', '-u', reg.username!, '-p', reg.password!, reg.host], { env });
    expect(warned.code).toBe(0);
    expect(warned.stderr).toContain('WARNING! Using --password via the CLI is insecure');

    const out = await kilnAsync(['logout', reg.host], { env });
    expect(out.code).toBe(0);
    expect(out.stdout).toBe(`Removing login credentials for ${reg.host}\n`);
    expect((JSON.parse(await fsp.readFile(config, 'utf8')) as { auths: object }).auths).toEqual({});
    const again = await kilnAsync(['logout', reg.host], { env });
    expect(again.stdout).toBe(`Not logged in to ${reg.host}\n`);

    const denied = await kilnAsync(['--root', root, 'push', `${reg.host}/auth/li:1`], { env });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/authentication required/);
  });
});

describe('token auth registry', () => {
  let reg: RegistryServer;
  let work: string;
  beforeAll(async () => {
    reg = await startRegistry({ mode: 'token', tokenExpiresIn: 2 });
    work = await tempDir();
  });
  afterAll(async () => {
    await reg?.stop();
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  const creds = () => ({ credentials: { kind: 'basic' as const, username: reg.username!, password: reg.password! }, env: { PATH: process.env.PATH } });

  it('caches a token per scope and fetches a new one when it expires', async () => {
    const { store } = await storeWithImage('t:1', { extraLayerBytes: 10_000 });
    const registries = new Registries(creds());
    try {
      const before = reg.tokenServer!.issued.length;
      await pushImage(await store.resolve('t:1'), `${reg.host}/tok/cache:1`, { ...creds(), store, registries });
      const forPush = reg.tokenServer!.issued.slice(before);
      // Many requests (HEADs, uploads, the manifest), one token for the push scope.
      expect(forPush.map((t) => t.scope)).toEqual([['repository:tok/cache:pull,push']]);
      expect(forPush[0]!.account).toBe(reg.username);

      const mid = reg.tokenServer!.issued.length;
      const target = await openStore({ root: await tempDir('kiln-store-') });
      await pullImage(`${reg.host}/tok/cache:1`, target, { ...creds(), registries });
      expect(reg.tokenServer!.issued.length - mid).toBe(1);
      await pullImage(`${reg.host}/tok/cache:1`, target, { ...creds(), registries });
      expect(reg.tokenServer!.issued.length - mid).toBe(1);
      // The token lives 2 s; past that the next request gets a fresh one.
      await new Promise((r) => setTimeout(r, 2100));
      await pullImage(`${reg.host}/tok/cache:1`, target, { ...creds(), registries });
      expect(reg.tokenServer!.issued.length - mid).toBe(2);
    } finally {
      await registries.close();
    }
  });

  it('refuses a wrong password at the token server with one line', async () => {
    const err = await pullImage(`${reg.host}/tok/cache:1`, await openStore({ root: await tempDir('kiln-store-') }), {
      credentials: { kind: 'basic', username: reg.username!, password: 'bad' },
      env: { PATH: process.env.PATH },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthError);
    expect((err as AuthError).describe()).toMatch(new RegExp(`^${reg.host.replace(/\./g, '\\.')}: the token server refused the credentials`));
    expect((err as AuthError).describe()).not.toContain('\n');
  });

  it('without credentials, a private repository is an AuthError after one token retry', async () => {
    const before = reg.tokenServer!.issued.length;
    const err = await pullImage(`${reg.host}/tok/cache:1`, await openStore({ root: await tempDir('kiln-store-') }), { env: { PATH: process.env.PATH, HOME: work } }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AuthError);
    expect(reg.tokenServer!.issued.length - before).toBe(2);
  });

  it('logs in with a credential helper, saves the identity token, and uses the OAuth2 refresh flow', async () => {
    const dir = await tempDir();
    const helper = await installFakeHelper(dir);
    const env = isolatedEnv(dir, { PATH: helper.path, FAKE_HELPER_DIR: helper.storeDir });
    await writeDockerConfig(dir, { credHelpers: { [reg.host]: 'test' } });

    const ok = await kilnAsync(['login', '-u', reg.username!, '--password-stdin', reg.host], { env, input: reg.password! });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('Login Succeeded\n');
    // The token server gave a refresh token for the offline login: that is what the helper keeps.
    const kept = JSON.parse(await fsp.readFile(join(helper.storeDir, `${Buffer.from(reg.host).toString('hex')}.json`), 'utf8')) as Record<string, string>;
    expect(kept.Username).toBe('<token>');
    expect(kept.Secret).not.toBe(reg.password);
    const config = JSON.parse(await fsp.readFile(join(dir, 'docker', 'config.json'), 'utf8')) as { auths: Record<string, object> };
    expect(config.auths[reg.host]).toEqual({});

    const { root } = await storeWithImage('h:1');
    expect((await kilnAsync(['--root', root, 'tag', 'h:1', `${reg.host}/tok/helper:1`], { env })).code).toBe(0);
    const before = reg.tokenServer!.issued.length;
    const pushed = await kilnAsync(['--root', root, 'push', `${reg.host}/tok/helper:1`], { env });
    expect(pushed.code, pushed.stderr).toBe(0);
    const used = reg.tokenServer!.issued.slice(before);
    expect(used.length).toBeGreaterThan(0);
    expect(used.every((t) => t.grant === 'refresh_token' && t.account === reg.username)).toBe(true);
    expect(await helper.calls()).toEqual(expect.arrayContaining([`store ${reg.host}`, `get ${reg.host}`]));

    const out = await kilnAsync(['logout', reg.host], { env });
    expect(out.stdout).toBe(`Removing login credentials for ${reg.host}\n`);
    expect((await helper.calls()).at(-1)).toBe(`erase ${reg.host}`);
  });

  it('takes a password from a credential helper configured as credsStore', async () => {
    const dir = await tempDir();
    const helper = await installFakeHelper(dir);
    const env = isolatedEnv(dir, { PATH: helper.path, FAKE_HELPER_DIR: helper.storeDir });
    await writeDockerConfig(dir, { credsStore: 'test', auths: { [reg.host]: {} } });
    await helper.put(reg.host, reg.username!, reg.password!);
    const pulled = await kilnAsync(['--root', await tempDir('kiln-store-'), 'pull', `${reg.host}/tok/cache:1`], { env });
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await helper.calls()).toEqual([`get ${reg.host}`]);
  });
});

describe('token auth with restricted repositories', () => {
  let reg: RegistryServer;
  beforeAll(async () => {
    reg = await startRegistry({ mode: 'token', tokenAccess: (_account, resource, requested) => (resource.name.startsWith('secret/') ? [] : requested) });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('uploads instead when a mount source is not readable', async () => {
    const { store, root } = await storeWithImage('m:1');
    const local = await store.resolve('m:1');
    const config = { credentials: { kind: 'basic' as const, username: reg.username!, password: reg.password! }, env: { PATH: process.env.PATH } };
    // Compress once so the record can name the blobs that will be pushed.
    const first = await pushImage(local, `${reg.host}/open/a:1`, { ...config, store });
    const manifest = JSON.parse((await store.readBlob({ digest: first.digest })).toString()) as { layers: Array<{ digest: `sha256:${string}` }> };
    // The store believes the layers live only in a repository this account cannot read.
    await fsp.writeFile(
      join(root, 'registry-blobs.json'),
      JSON.stringify({ version: 1, blobs: Object.fromEntries(manifest.layers.map((l) => [l.digest, { [reg.host]: ['secret/src'] }])) }),
    );
    expect((await BlobRecord.open(root)).repositories(manifest.layers[0]!.digest, reg.host)).toEqual(['secret/src']);
    const pushed = await pushImage(local, `${reg.host}/open/b:1`, { ...config, store });
    expect(pushed.digest).toBe(first.digest);
    expect(pushed.blobs.pushed).toBe(2);
    expect(pushed.blobs.mounted).toBe(0);
  });
});

describe('redirects', () => {
  let registry: Server;
  let storage: Server;
  const seen: IncomingHttpHeaders[] = [];
  const blob = Buffer.from('blob content served by the storage host\n');
  const digest = sha256(blob);

  beforeAll(async () => {
    // The storage host is another address (127.0.0.2), as a registry's object storage would be.
    storage = createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(blob.length) });
      res.end(blob);
    });
    await new Promise<void>((r) => storage.listen(0, '127.0.0.2', r));
    const storageURL = `http://127.0.0.2:${(storage.address() as AddressInfo).port}/data?sig=abc`;
    registry = createServer((req, res) => {
      if (req.headers.authorization !== `Basic ${basicAuth('user', 'secret-pw')}`) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="test"', 'content-type': 'application/json' });
        res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
        return;
      }
      if (req.url === '/v2/') {
        res.writeHead(200).end('{}');
        return;
      }
      res.writeHead(307, { location: storageURL }).end();
    });
    await new Promise<void>((r) => registry.listen(0, '127.0.0.1', r));
  });
  afterAll(async () => {
    await new Promise((r) => registry?.close(r));
    await new Promise((r) => storage?.close(r));
  });

  it('follows a blob redirect to another host without the credentials', async () => {
    const host = `127.0.0.1:${(registry.address() as AddressInfo).port}`;
    const registries = new Registries({ credentials: { kind: 'basic', username: 'user', password: 'secret-pw' } });
    try {
      const got = await readAll(downloadBlob(registries.get(host), 'some/repo', { digest, size: blob.length }));
      expect(got).toEqual(blob);
      expect(seen).toHaveLength(1);
      expect(seen[0]!.authorization).toBeUndefined();
      expect(JSON.stringify(seen[0])).not.toContain(basicAuth('user', 'secret-pw'));
    } finally {
      await registries.close();
    }
  });
});
