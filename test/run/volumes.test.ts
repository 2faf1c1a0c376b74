/**
 * Volumes: the store (create, ensure, list, remove, prune, in-use refusal, concurrent creation)
 * and the `kiln volume` commands as a user types them, as root and as an unprivileged user whose
 * volume holds files of its subordinate ids.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KilnError, UsageError } from '../../src/errors.js';
import { ANONYMOUS_LABEL, VolumeStore } from '../../src/run/volumes.js';
import { KILN_BIN } from '../helpers/kiln.js';
import { kilnAsync, kilnAt, tempDir, type TempDir } from '../helpers/store.js';
import { ensureUsers, TEST_USER } from '../sandbox/users.js';

let tmp: TempDir;
let root: string;

beforeEach(async () => {
  tmp = await tempDir('kiln-volumes-');
  root = join(tmp.dir, 'store');
});
afterEach(async () => {
  await tmp.cleanup();
});

/** A container record as `kiln run` writes it, mounting the given volumes. */
async function containerUsing(id: string, volumes: string[]): Promise<void> {
  const dir = join(root, 'containers', id);
  await fsp.mkdir(dir, { recursive: true });
  const mounts = volumes.map((v) => ({ type: 'volume', source: v, destination: `/mnt/${v}`, readOnly: false }));
  mounts.push({ type: 'bind', source: '/etc', destination: '/host-etc', readOnly: true });
  await fsp.writeFile(join(dir, 'container.json'), JSON.stringify({ id, name: `c-${id}`, mounts }));
}

describe('VolumeStore', () => {
  it('creates a named volume with its data directory, and gives back the same one when asked again', async () => {
    const store = VolumeStore.open(root);
    const v = await store.create('data', { labels: { app: 'web' } });
    expect(v).toMatchObject({ name: 'data', mountpoint: join(root, 'volumes', 'data', '_data'), labels: { app: 'web' }, anonymous: false });
    expect(v.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect((await fsp.stat(v.mountpoint)).isDirectory()).toBe(true);
    await fsp.writeFile(join(v.mountpoint, 'kept'), 'yes');
    const again = await store.create('data', { labels: { other: 'x' } });
    expect(again).toEqual(v);
    expect(await fsp.readFile(join(again.mountpoint, 'kept'), 'utf8')).toBe('yes');
  });

  it('names an unnamed volume with 64 hex digits and marks anonymous ones as docker does', async () => {
    const store = VolumeStore.open(root);
    const v = await store.create(undefined, { anonymous: true });
    expect(v.name).toMatch(/^[0-9a-f]{64}$/);
    expect(v.anonymous).toBe(true);
    expect(v.labels).toEqual({ [ANONYMOUS_LABEL]: '' });
    expect(await store.get(v.name)).toEqual(v);
  });

  it.each(['a', '-x', '.hidden', 'has space', 'a/b', '../up', 'é1'])('refuses the name %j', async (name) => {
    const store = VolumeStore.open(root);
    await expect(store.create(name)).rejects.toThrow(UsageError);
    await expect(store.create(name)).rejects.toThrow('includes invalid characters for a local volume name');
    expect(await store.get(name)).toBeUndefined();
  });

  it('ensure makes a missing volume and returns an existing one untouched', async () => {
    const store = VolumeStore.open(root);
    expect(await store.get('cache')).toBeUndefined();
    const made = await store.ensure('cache');
    await fsp.writeFile(join(made.mountpoint, 'f'), '1');
    const again = await store.ensure('cache');
    expect(again).toEqual(made);
    expect(await fsp.readdir(again.mountpoint)).toEqual(['f']);
  });

  it('lists volumes by name, without half-made ones', async () => {
    const store = VolumeStore.open(root);
    await store.create('b-vol');
    await store.create('a-vol');
    await fsp.mkdir(join(root, 'volumes', '.tmp-1.1-abc', '_data'), { recursive: true });
    expect((await store.list()).map((v) => v.name)).toEqual(['a-vol', 'b-vol']);
  });

  it('refuses to remove a volume a container uses, naming the containers, even with force', async () => {
    const store = VolumeStore.open(root);
    await store.create('shared');
    await store.create('free');
    await containerUsing('c1', ['shared']);
    await containerUsing('c2', ['shared', 'other']);
    const err = await store.remove('shared').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KilnError);
    expect((err as KilnError).message).toMatch(/^remove shared: volume is in use - \[c[12], c[12]\]$/);
    await expect(store.remove('shared', { force: true })).rejects.toThrow('volume is in use');
    expect(await store.get('shared')).toBeDefined();
    await store.remove('free');
    expect(await store.get('free')).toBeUndefined();
    expect(await fsp.readdir(join(root, 'volumes'))).toEqual(['shared']);
    // Once the containers are gone, it can go.
    await fsp.rm(join(root, 'containers'), { recursive: true });
    await store.remove('shared');
    expect(await store.list()).toEqual([]);
  });

  it('says which volume is missing, unless forced', async () => {
    const store = VolumeStore.open(root);
    await expect(store.remove('ghost')).rejects.toThrow('get ghost: no such volume');
    await expect(store.remove('ghost', { force: true })).resolves.toBeUndefined();
  });

  it('prunes unused anonymous volumes by default and every unused one with all, reporting the bytes', async () => {
    const store = VolumeStore.open(root);
    const anonUsed = await store.create(undefined, { anonymous: true });
    const anonFree = await store.create(undefined, { anonymous: true });
    await store.create('named-free');
    await store.create('named-used');
    await fsp.writeFile(join(anonFree.mountpoint, 'blob'), Buffer.alloc(3000));
    await fsp.mkdir(join(anonFree.mountpoint, 'sub'));
    await fsp.writeFile(join(anonFree.mountpoint, 'sub', 'more'), Buffer.alloc(100));
    await containerUsing('c1', [anonUsed.name, 'named-used']);

    expect(await store.prune()).toEqual({ removed: [anonFree.name], reclaimedBytes: 3100 });
    expect((await store.list()).map((v) => v.name).sort()).toEqual([anonUsed.name, 'named-free', 'named-used'].sort());
    expect(await store.prune({ all: true })).toEqual({ removed: ['named-free'], reclaimedBytes: 0 });
    expect((await store.list()).map((v) => v.name).sort()).toEqual([anonUsed.name, 'named-used'].sort());
  });

  it('creates one volume when many creations of one name race', async () => {
    const stores = Array.from({ length: 8 }, () => VolumeStore.open(root));
    const made = await Promise.all(stores.map((s) => s.create('race')));
    expect(new Set(made.map((v) => v.createdAt)).size).toBe(1);
    expect(await fsp.readdir(join(root, 'volumes'))).toEqual(['race']);
  });
});

describe('kiln volume', () => {
  it('creates, lists, inspects and removes volumes as docker prints them', async () => {
    const created = kilnAt(root, ['volume', 'create', '--label', 'tier=db', '--label', 'bare', 'pgdata']);
    expect(created).toMatchObject({ status: 0, stdout: 'pgdata\n' });
    const anon = kilnAt(root, ['volume', 'create']);
    expect(anon.status).toBe(0);
    const anonName = anon.stdout.trim();
    expect(anonName).toMatch(/^[0-9a-f]{64}$/);

    const ls = kilnAt(root, ['volume', 'ls']);
    expect(ls.stdout).toBe(['DRIVER    VOLUME NAME', `local     ${anonName}`, 'local     pgdata', ''].join('\n'));
    expect(kilnAt(root, ['volume', 'ls', '-q']).stdout).toBe(`${anonName}\npgdata\n`);
    expect(kilnAt(root, ['volume', 'ls', '-q', '--filter', 'label=tier=db']).stdout).toBe('pgdata\n');
    expect(kilnAt(root, ['volume', 'ls', '--format', '{{.Name}} {{.Labels}}', '-f', 'name=pg']).stdout).toBe('pgdata bare=,tier=db\n');

    const inspect = kilnAt(root, ['volume', 'inspect', 'pgdata']);
    expect(inspect.status).toBe(0);
    const [doc] = JSON.parse(inspect.stdout) as Array<Record<string, unknown>>;
    expect(doc).toEqual({
      CreatedAt: expect.stringMatching(/Z$/),
      Driver: 'local',
      Labels: { tier: 'db', bare: '' },
      Mountpoint: join(root, 'volumes', 'pgdata', '_data'),
      Name: 'pgdata',
      Options: null,
      Scope: 'local',
    });
    expect(inspect.stdout).toMatch(/^\[\n {4}\{\n {8}"CreatedAt"/);
    expect(kilnAt(root, ['volume', 'inspect', '--format', '{{.Mountpoint}}', anonName]).stdout).toBe(`${join(root, 'volumes', anonName, '_data')}\n`);

    const missing = kilnAt(root, ['volume', 'inspect', 'pgdata', 'nope']);
    expect(missing.status).toBe(1);
    expect(JSON.parse(missing.stdout)).toHaveLength(1);
    expect(missing.stderr).toContain('No such volume: nope');

    const rm = kilnAt(root, ['volume', 'rm', 'pgdata', 'nope', anonName]);
    expect(rm.status).toBe(1);
    expect(rm.stdout).toBe(`pgdata\n${anonName}\n`);
    expect(rm.stderr).toContain('get nope: no such volume');
    expect(kilnAt(root, ['volume', 'rm', '-f', 'nope']).status).toBe(0);
    expect(kilnAt(root, ['volume', 'ls', '-q']).stdout).toBe('');
  });

  it('refuses bad names, foreign drivers and driver options', () => {
    const bad = kilnAt(root, ['volume', 'create', 'no/slash']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('"no/slash" includes invalid characters for a local volume name');
    expect(kilnAt(root, ['volume', 'create', '-d', 'nfs', 'x1']).stderr).toContain('volume driver "nfs" is not supported');
    expect(kilnAt(root, ['volume', 'create', '-o', 'type=tmpfs', 'x1']).stderr).toContain('driver options (-o type=tmpfs) are not supported');
    expect(kilnAt(root, ['volume', 'ls', '-q']).stdout).toBe('');
  });

  it('refuses to remove a volume a container uses, with docker\'s words', async () => {
    kilnAt(root, ['volume', 'create', 'busy']);
    await containerUsing('0123456789ab', ['busy']);
    const rm = kilnAt(root, ['volume', 'rm', 'busy']);
    expect(rm.status).toBe(1);
    expect(rm.stderr).toContain('remove busy: volume is in use - [0123456789ab]');
    expect(kilnAt(root, ['volume', 'ls', '-q', '-f', 'dangling=false']).stdout).toBe('busy\n');
    expect(kilnAt(root, ['volume', 'ls', '-q', '-f', 'dangling=true']).stdout).toBe('');
  });

  it('prune asks first, and removes unused anonymous volumes (all unused ones with -a)', async () => {
    const store = VolumeStore.open(root);
    const anon = await store.create(undefined, { anonymous: true });
    await store.create('named');
    await fsp.writeFile(join(anon.mountpoint, 'data'), Buffer.alloc(2048));

    const declined = kilnAt(root, ['volume', 'prune'], { input: 'n\n' });
    expect(declined.status).toBe(1);
    expect(declined.stdout).toContain('WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue? [y/N]');
    expect(declined.stderr).toContain('volume prune has been cancelled');
    expect((await store.list()).length).toBe(2);

    const pruned = kilnAt(root, ['volume', 'prune'], { input: 'y\n' });
    expect(pruned.status).toBe(0);
    expect(pruned.stdout).toContain(`Deleted Volumes:\n${anon.name}\n\nTotal reclaimed space: 2.048kB\n`);
    expect(kilnAt(root, ['volume', 'ls', '-q']).stdout).toBe('named\n');

    const all = kilnAt(root, ['volume', 'prune', '-a', '-f']);
    expect(all).toMatchObject({ status: 0, stdout: 'Deleted Volumes:\nnamed\n\nTotal reclaimed space: 0B\n' });
  });

  it('concurrent `kiln volume create` of one name leave exactly that volume', async () => {
    const runs = await Promise.all(Array.from({ length: 6 }, () => kilnAsync(root, ['volume', 'create', 'together'])));
    for (const r of runs) expect(r).toMatchObject({ status: 0, stdout: 'together\n' });
    expect(await fsp.readdir(join(root, 'volumes'))).toEqual(['together']);
  });
});

describe.runIf(process.getuid?.() === 0)('kiln volume as an unprivileged user', () => {
  it('removes a volume holding files of the user\'s subordinate ids', async () => {
    const { user } = ensureUsers();
    const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());
    const subuid = Number(
      (await fsp.readFile('/etc/subuid', 'utf8'))
        .split('\n')
        .find((l) => l.startsWith(`${TEST_USER}:`))!
        .split(':')[1],
    );
    await fsp.chmod(tmp.dir, 0o755);
    await fsp.mkdir(root);
    await fsp.chown(root, uid, gid);
    const asUser = (args: string[]) =>
      spawnSync('runuser', ['-u', user, '--', process.execPath, KILN_BIN, '--root', root, ...args], { encoding: 'utf8', cwd: tmp.dir });

    expect(asUser(['volume', 'create', 'userdata'])).toMatchObject({ status: 0, stdout: 'userdata\n' });
    const data = join(root, 'volumes', 'userdata', '_data');
    expect((await fsp.stat(data)).uid).toBe(uid);
    // What a container running as its uid 1000 leaves behind: files of a subordinate id.
    await fsp.mkdir(join(data, 'app'));
    await fsp.writeFile(join(data, 'app', 'state'), 'x');
    execFileSync('chown', ['-R', `${subuid + 999}:${subuid + 999}`, join(data, 'app')]);

    const rm = asUser(['volume', 'rm', 'userdata']);
    expect(rm.stderr).toBe('');
    expect(rm).toMatchObject({ status: 0, stdout: 'userdata\n' });
    expect(asUser(['volume', 'ls', '-q']).stdout).toBe('');
  });
});
