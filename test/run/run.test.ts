/**
 * `kiln run` as a user meets it, as root and as an unprivileged user: the container's exit status,
 * docker's error statuses, environment, user, working directory, ENTRYPOINT/CMD combinations of an
 * image built by `kiln build`, bind mounts (read-only ones refused on write), a read-only root,
 * tmpfs, `--network none`, `--init`, and `--rm`.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBusybox } from '../helpers/busybox.js';
import { kiln } from '../helpers/kiln.js';
import { startRegistry } from '../helpers/registry/index.js';
import { ok, runContext, type Mode, type RunContext } from './context.js';

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const APP = 'kiln-test/run-app:1';
const APP_DOCKERFILE = `FROM kiln-test/busybox
RUN mkdir -p /srv/app /srv/data && echo seeded > /srv/app/seed && echo from-image > /srv/data/seed && echo 'appuser:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd && echo 'appuser:x:1234:' >> /etc/group
ENV GREETING=hello PATH=/usr/local/bin:/usr/bin:/bin
WORKDIR /srv/app
VOLUME /srv/data
ENTRYPOINT ["echo", "entry"]
CMD ["default", "args"]
`;

describe.each<Mode>(['root', 'rootless'])('kiln run (%s)', (mode) => {
  let c: RunContext;

  beforeAll(async () => {
    c = await runContext(mode);
    await c.build(APP, APP_DOCKERFILE);
  }, 180_000);

  afterAll(async () => {
    await c?.cleanup();
  }, 60_000);

  it("exits with the container's status", async () => {
    const r = await c.kiln(['run', '--rm', c.image, 'sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(r.status).toBe(3);
    expect(r.stdout).toBe('out\n');
    expect(r.stderr).toBe('err\n');
  });

  it("uses docker's statuses when the command cannot run: 127 not found, 126 not executable, 125 kiln's own", async () => {
    const missing = await c.kiln(['run', '--rm', c.image, 'no-such-command']);
    expect(missing.status).toBe(127);
    expect(missing.stderr).toContain('no-such-command');
    const notExecutable = await c.kiln(['run', '--rm', c.image, '/etc/passwd']);
    expect(notExecutable.status).toBe(126);
    const noImage = await c.kiln(['run', '--rm', '--pull', 'never', 'kiln-test/not-there', 'true']);
    expect(noImage.status).toBe(125);
    expect(noImage.stderr).toContain('No such image: kiln-test/not-there:latest');
  });

  it('pulls an image the store lacks, as docker does: progress on stderr, --pull always|never, registry errors with 125', async () => {
    const reg = await startRegistry({ mode: 'none' });
    try {
      // Pushed from another store, so that none of its blobs are in the container user's.
      const remote = `${reg.host}/kiln/pulled:1`;
      const pusher = join(c.dir, 'pusher-store');
      await loadBusybox(pusher, remote);
      ok(kiln(['--root', pusher, 'push', remote]));

      const first = await c.kiln(['run', '--rm', remote, 'echo', 'pulled']);
      expect(first.stdout).toBe('pulled\n');
      expect(first.status).toBe(0);
      expect(first.stderr).toMatch(new RegExp(`^Unable to find image '${escape(remote)}' locally\n1: Pulling from kiln/pulled\n`));
      expect(first.stderr).toMatch(/^[0-9a-f]{12}: Pull complete$/m);
      expect(first.stderr).toMatch(new RegExp(`\nDigest: sha256:[0-9a-f]{64}\nStatus: Downloaded newer image for ${escape(remote)}\n$`));
      // In the store now: nothing is pulled.
      const second = await c.kiln(['run', '--rm', remote, 'echo', 'pulled']);
      expect(second.stderr).toBe('');
      expect(ok(second)).toBe('pulled\n');
      const always = await c.kiln(['run', '--rm', '--pull', 'always', remote, 'true']);
      expect(ok(always)).toBe('');
      expect(always.stderr).toMatch(new RegExp(`^1: Pulling from kiln/pulled\n(.*\n)*Status: Image is up to date for ${escape(remote)}\n$`));

      // create pulls too; -q keeps stderr quiet and stdout the container ID alone.
      ok(await c.kiln(['rmi', remote]));
      const created = await c.kiln(['create', '-q', '--name', 'from-registry', remote, 'echo', 'pulled']);
      expect(created.stderr).toBe('');
      expect(ok(created)).toMatch(/^[0-9a-f]{64}\n$/);
      expect(ok(await c.kiln(['start', '-a', 'from-registry']))).toBe('pulled\n');
      ok(await c.kiln(['rm', 'from-registry']));

      const never = await c.kiln(['run', '--rm', '--pull', 'never', `${reg.host}/kiln/other:1`, 'true']);
      expect(never.status).toBe(125);
      expect(never.stderr).toContain(`No such image: ${reg.host}/kiln/other:1`);
      expect(never.stderr).not.toContain('Pulling');
      const badPolicy = await c.kiln(['run', '--rm', '--pull', 'sometimes', remote, 'true']);
      expect(badPolicy.status).toBe(125);
      expect(badPolicy.stderr).toContain(`invalid pull option: 'sometimes': must be one of "always", "missing" or "never"`);

      const absent = await c.kiln(['run', '--rm', `${reg.host}/kiln/absent:1`, 'true']);
      expect(absent.status).toBe(125);
      expect(absent.stdout).toBe('');
      expect(absent.stderr).toContain(`Unable to find image '${reg.host}/kiln/absent:1' locally`);
      expect(absent.stderr).toMatch(new RegExp(`kiln: ${escape(reg.host)}: .*manifest unknown .*\\(GET /v2/kiln/absent/manifests/1: 404\\)`));
      expect(ok(await c.kiln(['ps', '-aq']))).toBe('');
    } finally {
      await reg.stop();
    }
  }, 180_000);

  it('passes -e, --env-file and the image environment, later ones winning', async () => {
    const envFile = join(c.dir, 'app.env');
    await fsp.writeFile(envFile, '# comment\nFROM_FILE=file value\nGREETING=from-file\n');
    c.own(envFile);
    const r = await c.kiln(['run', '--rm', '--env-file', envFile, '-e', 'FROM_FLAG=flag', '--entrypoint', 'sh', APP, '-c', 'echo "$GREETING|$FROM_FILE|$FROM_FLAG|$HOME|$PATH"']);
    expect(ok(r)).toBe('from-file|file value|flag|/root|/usr/local/bin:/usr/bin:/bin\n');
  });

  it('runs as the image user, -u name, uid, or uid:gid', async () => {
    expect(ok(await c.kiln(['run', '--rm', c.image, 'id']))).toMatch(/^uid=0\(root\) gid=0\(root\)/);
    expect(ok(await c.kiln(['run', '--rm', '-u', 'appuser', '--entrypoint', 'id', APP]))).toMatch(/^uid=1234\(appuser\) gid=1234\(appuser\)/);
    expect(ok(await c.kiln(['run', '--rm', '-u', '1000:1001', c.image, 'id']))).toBe('uid=1000 gid=1001 groups=1001\n');
  });

  it('starts in the image WORKDIR or -w (made when missing)', async () => {
    expect(ok(await c.kiln(['run', '--rm', '--entrypoint', 'pwd', APP]))).toBe('/srv/app\n');
    expect(ok(await c.kiln(['run', '--rm', '-w', '/made/for/me', c.image, 'pwd']))).toBe('/made/for/me\n');
  });

  it('combines ENTRYPOINT and CMD as docker does', async () => {
    expect(ok(await c.kiln(['run', '--rm', APP]))).toBe('entry default args\n');
    expect(ok(await c.kiln(['run', '--rm', APP, 'mine', 'too']))).toBe('entry mine too\n');
    // --entrypoint drops the image CMD.
    expect(ok(await c.kiln(['run', '--rm', '--entrypoint', 'echo', APP]))).toBe('\n');
    expect(ok(await c.kiln(['run', '--rm', '--entrypoint', 'cat', APP, 'seed']))).toBe('seeded\n');
    expect(ok(await c.kiln(['run', '--rm', '--entrypoint', '', APP, 'echo', 'no', 'entrypoint']))).toBe('no entrypoint\n');
    const none = await c.kiln(['run', '--rm', c.image]);
    expect(none.status).toBe(125);
    expect(none.stderr).toContain('no command specified');
  });

  it('bind mounts a host directory read-write, and refuses writes through :ro', async () => {
    const host = join(c.dir, 'shared');
    await fsp.mkdir(host);
    await fsp.writeFile(join(host, 'from-host'), 'host file\n');
    c.own(host);
    expect(ok(await c.kiln(['run', '--rm', '-v', `${host}:/mnt/shared`, c.image, 'sh', '-c', 'cat /mnt/shared/from-host; echo written > /mnt/shared/from-container']))).toBe('host file\n');
    expect(await fsp.readFile(join(host, 'from-container'), 'utf8')).toBe('written\n');
    const ro = await c.kiln(['run', '--rm', '-v', `${host}:/mnt/shared:ro`, c.image, 'sh', '-c', 'echo nope > /mnt/shared/denied']);
    expect(ro.status).not.toBe(0);
    expect(ro.stderr).toContain('Read-only file system');
    await expect(fsp.access(join(host, 'denied'))).rejects.toThrow();
    const mount = await c.kiln(['run', '--rm', '--mount', `type=bind,source=${host},target=/m,readonly`, c.image, 'cat', '/m/from-host']);
    expect(ok(mount)).toBe('host file\n');
  });

  it('named volumes persist across containers; an image VOLUME gets a seeded anonymous volume, gone with --rm', async () => {
    ok(await c.kiln(['run', '--rm', '-v', 'run-data:/store', c.image, 'sh', '-c', 'echo kept > /store/f']));
    expect(ok(await c.kiln(['run', '--rm', '--mount', 'type=volume,source=run-data,target=/other', c.image, 'cat', '/other/f']))).toBe('kept\n');
    const volumes = async () => ok(await c.kiln(['volume', 'ls', '-q'])).split('\n').filter(Boolean).sort();
    const before = await volumes();
    expect(before).toContain('run-data');
    expect(ok(await c.kiln(['run', '--rm', '--entrypoint', 'cat', APP, '/srv/data/seed']))).toBe('from-image\n');
    expect(await volumes()).toEqual(before);
    ok(await c.kiln(['run', '--name', 'with-volume', '--entrypoint', 'sh', APP, '-c', 'echo more > /srv/data/more']));
    const added = (await volumes()).filter((v) => !before.includes(v));
    expect(added).toHaveLength(1);
    expect(added[0]).toMatch(/^[0-9a-f]{64}$/);
    ok(await c.kiln(['rm', '-v', 'with-volume']));
    expect(await volumes()).toEqual(before);
  });

  it('--read-only refuses writes to the root, --tmpfs gives a writable scratch', async () => {
    const r = await c.kiln(['run', '--rm', '--read-only', '--tmpfs', '/scratch', c.image, 'sh', '-c', 'echo ok > /scratch/f && cat /scratch/f && touch /not-here']);
    expect(r.stdout).toBe('ok\n');
    expect(r.stderr).toContain('Read-only file system');
    expect(r.status).not.toBe(0);
  });

  it('--network none leaves only the loopback interface', async () => {
    expect(ok(await c.kiln(['run', '--rm', '--network', 'none', c.image, 'ls', '/sys/class/net']))).toBe('lo\n');
    expect(ok(await c.kiln(['run', '--rm', '--network', 'none', c.image, 'cat', '/sys/class/net/lo/operstate']))).toMatch(/^(unknown|up)\n$/);
  });

  it('sets the host name (and /etc/hostname): the short container ID by default, or --hostname', async () => {
    expect(ok(await c.kiln(['run', '--rm', '--hostname', 'box', c.image, 'sh', '-c', 'hostname; cat /etc/hostname']))).toBe('box\nbox\n');
    expect(ok(await c.kiln(['run', '--rm', c.image, 'hostname']))).toMatch(/^[0-9a-f]{12}\n$/);
  });

  it('--init runs tini as PID 1 around the command', async () => {
    const r = await c.kiln(['run', '--rm', '--init', c.image, 'sh', '-c', 'tr "\\0" " " < /proc/1/cmdline; echo; echo $$']);
    expect(ok(r)).toMatch(/^\/dev\/init -- sh -c .*\n[0-9]+\n$/);
    expect(r.stdout.split('\n')[1]).not.toBe('1');
  });

  it('-i passes standard input to the command', async () => {
    expect(ok(await c.kiln(['run', '--rm', '-i', c.image, 'tr', 'a-z', 'A-Z'], { input: 'shout\n' }))).toBe('SHOUT\n');
    // Without -i the container reads nothing.
    expect(ok(await c.kiln(['run', '--rm', c.image, 'cat'], { input: 'ignored\n' }))).toBe('');
  });

  it('--rm leaves no container behind; without it the container stays, exited', async () => {
    ok(await c.kiln(['run', '--rm', c.image, 'true']));
    ok(await c.kiln(['run', '--name', 'kept', c.image, 'sh', '-c', 'exit 4']).then((r) => ({ ...r, status: r.status === 4 ? 0 : r.status })));
    const ps = ok(await c.kiln(['ps', '-a']));
    const lines = ps.trim().split('\n');
    expect(lines[0]).toMatch(/^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES$/);
    expect(lines.slice(1)).toHaveLength(1);
    expect(lines[1]).toMatch(/Exited \(4\) .* ago\s+kept$/);
    ok(await c.kiln(['rm', 'kept']));
    expect(ok(await c.kiln(['ps', '-aq']))).toBe('');
  });
});
