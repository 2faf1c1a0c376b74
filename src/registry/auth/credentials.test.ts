import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { installFakeHelper, type FakeHelper } from '../../../test/registry/credential-helper.js';
import { credentialKey, eraseCredentials, keyHost, resolveCredentials, storeCredentials } from './credentials.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('credential resolution', () => {
  let dir: string;
  let helper: FakeHelper;
  let env: NodeJS.ProcessEnv;

  beforeEach(async () => {
    dir = await fsp.mkdtemp(join(tmpdir(), 'kiln-creds-'));
    helper = await installFakeHelper(dir);
    env = { HOME: join(dir, 'home'), DOCKER_CONFIG: join(dir, 'docker'), PATH: helper.path, FAKE_HELPER_DIR: helper.storeDir };
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  const writeConfig = async (doc: unknown, path = join(dir, 'docker', 'config.json')) => {
    await fsp.mkdir(join(path, '..'), { recursive: true });
    await fsp.writeFile(path, JSON.stringify(doc));
  };

  it('answers anonymous when there is no config', async () => {
    expect(await resolveCredentials('127.0.0.1:5000', { env })).toBeUndefined();
  });

  it('decodes auths[host].auth and identity tokens', async () => {
    await writeConfig({
      auths: {
        '127.0.0.1:5000': { auth: b64('alice:s3cr:et') },
        'reg.example': { auth: b64('bob:'), identitytoken: 'refresh-123' },
        'tok.example': { registrytoken: 'bearer-xyz' },
      },
    });
    expect((await resolveCredentials('127.0.0.1:5000', { env }))?.credential).toEqual({ kind: 'basic', username: 'alice', password: 's3cr:et' });
    expect((await resolveCredentials('reg.example', { env }))?.credential).toEqual({ kind: 'identityToken', token: 'refresh-123', username: 'bob' });
    expect((await resolveCredentials('tok.example', { env }))?.credential).toEqual({ kind: 'registryToken', token: 'bearer-xyz' });
    expect(await resolveCredentials('other.example', { env })).toBeUndefined();
  });

  it("knows Docker Hub by its legacy key and URL-shaped keys by their host", async () => {
    await writeConfig({
      auths: {
        'https://index.docker.io/v1/': { auth: b64('hub:pw') },
        'http://127.0.0.1:5000': { auth: b64('url:pw') },
        '127.0.0.1:6000/team': { auth: b64('namespaced:pw') },
      },
    });
    expect(credentialKey('docker.io')).toBe('https://index.docker.io/v1/');
    expect(keyHost('https://index.docker.io/v1/')).toBe('docker.io');
    expect((await resolveCredentials('docker.io', { env }))?.credential).toMatchObject({ username: 'hub' });
    expect((await resolveCredentials('127.0.0.1:5000', { env }))?.credential).toMatchObject({ username: 'url' });
    // A namespace entry is not a login for the whole registry in docker's file.
    expect(await resolveCredentials('127.0.0.1:6000', { env })).toBeUndefined();
  });

  it('asks credHelpers[host] first, then credsStore, then auths', async () => {
    await writeConfig({
      credHelpers: { '127.0.0.1:5000': 'test' },
      credsStore: 'test',
      auths: { '127.0.0.1:5000': { auth: b64('file:pw') }, 'fallback.example': { auth: b64('fb:pw') } },
    });
    await helper.put('127.0.0.1:5000', 'helped', 'helper-secret');
    await helper.put('https://index.docker.io/v1/', '<token>', 'hub-identity');
    expect((await resolveCredentials('127.0.0.1:5000', { env }))?.credential).toEqual({ kind: 'basic', username: 'helped', password: 'helper-secret' });
    expect((await resolveCredentials('docker.io', { env }))?.credential).toEqual({ kind: 'identityToken', token: 'hub-identity' });
    // Not in the helper: the file's entry still answers.
    expect((await resolveCredentials('fallback.example', { env }))?.credential).toMatchObject({ username: 'fb' });
    expect(await helper.calls()).toEqual(['get 127.0.0.1:5000', 'get https://index.docker.io/v1/', 'get fallback.example']);
  });

  it('reports a missing helper by name without leaking anything', async () => {
    await writeConfig({ credsStore: 'nosuch', auths: {} });
    await expect(resolveCredentials('127.0.0.1:5000', { env })).rejects.toThrow(/docker-credential-nosuch: not found on PATH/);
  });

  it('prefers --authfile / REGISTRY_AUTH_FILE, with namespace entries for a repository', async () => {
    const authFile = join(dir, 'auth.json');
    await writeConfig({ auths: { '127.0.0.1:5000/team/app': { auth: b64('ns:pw') }, '127.0.0.1:5000': { auth: b64('whole:pw') } } }, authFile);
    await writeConfig({ auths: { '127.0.0.1:5000': { auth: b64('docker:pw') }, 'only.docker': { auth: b64('d:pw') } } });
    expect((await resolveCredentials('127.0.0.1:5000', { env, authFile, repository: 'team/app' }))?.credential).toMatchObject({ username: 'ns' });
    expect((await resolveCredentials('127.0.0.1:5000', { env, authFile, repository: 'other' }))?.credential).toMatchObject({ username: 'whole' });
    expect((await resolveCredentials('127.0.0.1:5000', { env: { ...env, REGISTRY_AUTH_FILE: authFile } }))?.credential).toMatchObject({ username: 'whole' });
    // Nothing in the auth file for this host: docker's config still answers.
    expect((await resolveCredentials('only.docker', { env, authFile }))?.credential).toMatchObject({ username: 'd' });
    expect((await resolveCredentials('127.0.0.1:5000', { env }))?.credential).toMatchObject({ username: 'docker' });
  });

  it('refuses a config that is not JSON, naming the file', async () => {
    await fsp.mkdir(join(dir, 'docker'), { recursive: true });
    await fsp.writeFile(join(dir, 'docker', 'config.json'), '{ nope');
    await expect(resolveCredentials('x.example', { env })).rejects.toThrow(/config\.json: is not valid JSON/);
  });

  it('stores into config.json with mode 0600, keeping other settings, and erases', async () => {
    await writeConfig({ auths: { 'http://127.0.0.1:5000/': { auth: b64('old:pw') } }, psFormat: 'table', proxies: { default: {} } });
    const saved = await storeCredentials('127.0.0.1:5000', { kind: 'basic', username: 'new', password: 'pw2' }, { env });
    const path = join(dir, 'docker', 'config.json');
    expect(saved.where).toBe(path);
    const doc = JSON.parse(await fsp.readFile(path, 'utf8'));
    expect(doc).toEqual({ auths: { '127.0.0.1:5000': { auth: b64('new:pw2') } }, psFormat: 'table', proxies: { default: {} } });
    expect((await fsp.stat(path)).mode & 0o777).toBe(0o600);
    expect(await eraseCredentials('127.0.0.1:5000', { env })).toBe(true);
    expect(JSON.parse(await fsp.readFile(path, 'utf8')).auths).toEqual({});
    expect(await eraseCredentials('127.0.0.1:5000', { env })).toBe(false);
  });

  it('stores into the configured helper, leaving an empty auths entry, and erases there', async () => {
    await writeConfig({ credsStore: 'test' });
    const saved = await storeCredentials('docker.io', { kind: 'basic', username: 'hubuser', password: 'hubpw' }, { env });
    expect(saved.where).toBe('docker-credential-test');
    const doc = JSON.parse(await fsp.readFile(join(dir, 'docker', 'config.json'), 'utf8'));
    expect(doc.auths).toEqual({ 'https://index.docker.io/v1/': {} });
    expect((await resolveCredentials('docker.io', { env }))?.credential).toEqual({ kind: 'basic', username: 'hubuser', password: 'hubpw' });
    expect(await eraseCredentials('docker.io', { env })).toBe(true);
    expect(await resolveCredentials('docker.io', { env })).toBeUndefined();
    expect(await helper.calls()).toEqual(['store https://index.docker.io/v1/', 'get https://index.docker.io/v1/', 'erase https://index.docker.io/v1/', 'get https://index.docker.io/v1/']);
  });
});
