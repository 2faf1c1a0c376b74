/**
 * Containers as objects that outlive the kiln that made them, as root and as an unprivileged user:
 * `run -d` then ps, logs, exec, stop (StopSignal within the timeout, SIGKILL after it), kill, start,
 * rm; `create` + `start -a` (and `-i`); names claimed, and containers started, once under
 * concurrency; `du`; `commit` to an image whose new file `kiln run` sees; images in use kept by rmi
 * and prune.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ok, runContext, type Mode, type RunContext } from './context.js';

/** A container that answers SIGTERM by saying so and exiting 0. */
const POLITE = ['sh', '-c', 'trap "echo got TERM; exit 0" TERM; echo started; while true; do sleep 0.1; done'];

/** Waits until `check` passes: a detached container's first output takes a moment to arrive. */
async function eventually<T>(check: () => Promise<T>, what: string): Promise<T> {
  let last: unknown;
  for (let i = 0; i < 200; i++) {
    try {
      return await check();
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${what}: ${String(last)}`);
}

describe.each<Mode>(['root', 'rootless'])('containers (%s)', (mode) => {
  let c: RunContext;

  beforeAll(async () => {
    c = await runContext(mode);
  }, 180_000);

  afterAll(async () => {
    await c?.cleanup();
  }, 60_000);

  it('run -d: listed by ps, logs readable, exec inside, stopped by stop within its timeout, removed by rm', async () => {
    const id = ok(await c.kiln(['run', '-d', '--name', 'web', c.image, ...POLITE])).trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const ps = ok(await c.kiln(['ps']));
    expect(ps).toMatch(new RegExp(`^${id.slice(0, 12)}\\s+kiln-test/busybox:latest\\s+"sh -c trap "echo go…"\\s+.* ago\\s+Up .*\\s+web$`, 'm'));
    expect(ok(await c.kiln(['ps', '-q']))).toBe(`${id.slice(0, 12)}\n`);
    await eventually(async () => expect(ok(await c.kiln(['logs', 'web']))).toBe('started\n'), 'logs of web');

    const exec = await c.kiln(['exec', '-e', 'EXTRA=1', 'web', 'sh', '-c', 'echo "$EXTRA $(hostname)"; ps -o pid,args | grep -c "sleep"; exit 7']);
    expect(exec.status).toBe(7);
    expect(exec.stdout.split('\n')[0]).toBe(`1 ${id.slice(0, 12)}`);

    expect(ok(await c.kiln(['stop', '-t', '30', 'web']))).toBe('web\n');
    // The stop signal ended it (status 0 from its trap), not the SIGKILL after the timeout.
    expect(ok(await c.kiln(['ps', '-a']))).toMatch(/Exited \(0\) .* ago\s+web$/m);
    expect(ok(await c.kiln(['logs', 'web']))).toBe('started\ngot TERM\n');
    expect(ok(await c.kiln(['ps', '-q']))).toBe('');

    const rm = await c.kiln(['rm', 'web']);
    expect(ok(rm)).toBe('web\n');
    expect(ok(await c.kiln(['ps', '-aq']))).toBe('');
  });

  it('stop kills with SIGKILL once the timeout passes when the stop signal is ignored', async () => {
    // PID 1 without a handler ignores SIGTERM, as in docker.
    ok(await c.kiln(['run', '-d', '--name', 'stubborn', c.image, 'sleep', '1000']));
    ok(await c.kiln(['stop', '-t', '1', 'stubborn']));
    expect(ok(await c.kiln(['ps', '-a']))).toMatch(/Exited \(137\) .* ago\s+stubborn$/m);
    ok(await c.kiln(['rm', 'stubborn']));
  });

  it('kill sends the signal; rm refuses a running container without -f', async () => {
    ok(await c.kiln(['run', '-d', '--name', 'target', c.image, ...POLITE]));
    const refused = await c.kiln(['rm', 'target']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('container is running: stop the container before removing or force remove');
    await eventually(async () => expect(ok(await c.kiln(['logs', 'target']))).toBe('started\n'), 'logs of target');
    ok(await c.kiln(['kill', '-s', 'TERM', 'target']));
    await eventually(async () => expect(ok(await c.kiln(['ps', '-a']))).toMatch(/Exited \(0\) .*target$/m), 'target exited');
    const notRunning = await c.kiln(['kill', 'target']);
    expect(notRunning.status).toBe(1);
    expect(notRunning.stderr).toContain('is not running');
    // start brings it back with its read-write layer; rm -f kills and removes it.
    ok(await c.kiln(['start', 'target']));
    expect(ok(await c.kiln(['ps']))).toMatch(/Up .*target$/m);
    expect(ok(await c.kiln(['rm', '-f', 'target']))).toBe('target\n');
    expect(ok(await c.kiln(['ps', '-aq']))).toBe('');
  });

  it('logs --tail and -t; a container whose monitor died shows as exited, and its process is gone', async () => {
    const id = ok(await c.kiln(['run', '-d', '--name', 'orphan', c.image, 'sh', '-c', 'echo one; echo two; echo three; exec sleep 1000'])).trim();
    await eventually(async () => expect(ok(await c.kiln(['logs', 'orphan']))).toBe('one\ntwo\nthree\n'), 'logs of orphan');
    expect(ok(await c.kiln(['logs', '--tail', '2', 'orphan']))).toBe('two\nthree\n');
    expect(ok(await c.kiln(['logs', '-t', '-n', '1', 'orphan']))).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z three\n$/);
    const state = JSON.parse(await fsp.readFile(join(c.root, 'containers', id, 'container.json'), 'utf8')).state as { pid: number; monitorPid: number };
    process.kill(state.monitorPid, 'SIGKILL');
    await eventually(async () => expect(ok(await c.kiln(['ps', '-a']))).toMatch(/Exited \(137\) .* ago\s+orphan$/m), 'orphan shown as exited');
    await eventually(async () => expect(() => process.kill(state.pid, 0)).toThrow(), 'the container process ended with its monitor');
    ok(await c.kiln(['rm', 'orphan']));
  });

  it('names are unique; unnamed containers get a docker-style name', async () => {
    const id = ok(await c.kiln(['create', c.image, 'true'])).trim();
    const ps = ok(await c.kiln(['ps', '-a']));
    expect(ps).toMatch(new RegExp(`^${id.slice(0, 12)}\\s.*Created\\s+[a-z]+_[a-z]+[0-9]?$`, 'm'));
    ok(await c.kiln(['create', '--name', 'once', c.image, 'true']));
    const again = await c.kiln(['create', '--name', 'once', c.image, 'true']);
    expect(again.status).toBe(125);
    expect(again.stderr).toContain('The container name "/once" is already in use');
    ok(await c.kiln(['rm', id.slice(0, 12), 'once']));
  });

  it('two runs with one --name at the same instant: exactly one gets the name, the other a conflict (125)', async () => {
    for (let round = 0; round < 3; round++) {
      const both = await Promise.all([0, 1].map(() => c.kiln(['run', '--name', 'racer', c.image, 'true'])));
      const winners = both.filter((r) => r.status === 0);
      const losers = both.filter((r) => r.status !== 0);
      expect(winners).toHaveLength(1);
      expect(losers).toHaveLength(1);
      expect(losers[0]!.status).toBe(125);
      const holder = ok(await c.kiln(['ps', '-aq', '--no-trunc'])).trim();
      expect(holder).toMatch(/^[0-9a-f]{64}$/);
      expect(losers[0]!.stderr).toBe(
        `kiln: Conflict. The container name "/racer" is already in use by container "${holder}". You have to remove (or rename) that container to be able to reuse that name.\n`,
      );
      // rm gives the name back.
      ok(await c.kiln(['rm', 'racer']));
    }
  });

  it('two starts of one container at the same instant run it once', async () => {
    ok(await c.kiln(['create', '--name', 'once-only', c.image, 'sh', '-c', 'echo run >> /starts; exec sleep 1000']));
    const both = await Promise.all([0, 1].map(() => c.kiln(['start', 'once-only'])));
    for (const r of both) expect(ok(r)).toBe('once-only\n');
    await eventually(async () => expect(ok(await c.kiln(['exec', 'once-only', 'cat', '/starts']))).toBe('run\n'), 'the container ran');
    // A start right after a stop waits for the previous monitor to finish, then runs it again.
    ok(await c.kiln(['stop', '-t', '0', 'once-only']));
    ok(await c.kiln(['start', 'once-only']));
    await eventually(async () => expect(ok(await c.kiln(['exec', 'once-only', 'cat', '/starts']))).toBe('run\nrun\n'), 'the container ran again');
    ok(await c.kiln(['rm', '-f', 'once-only']));
  });

  it('a name whose container is gone (its remover died before giving the name back) can be taken again', async () => {
    const names = join(c.root, 'container-names');
    await fsp.mkdir(names, { recursive: true });
    await fsp.writeFile(join(names, 'leftover'), `${'e'.repeat(64)}\n`);
    c.own(names);
    ok(await c.kiln(['create', '--name', 'leftover', c.image, 'true']));
    const again = await c.kiln(['create', '--name', 'leftover', c.image, 'true']);
    expect(again.status).toBe(125);
    ok(await c.kiln(['rm', 'leftover']));
  });

  it('start -a -i passes standard input to a container created with -i; without -i it reads nothing', async () => {
    ok(await c.kiln(['create', '-i', '--name', 'shouter', c.image, 'sh', '-c', 'tr a-z A-Z; exit 6']));
    const attached = await c.kiln(['start', '-a', '-i', 'shouter'], { input: 'shout\n' });
    expect(attached.stdout).toBe('SHOUT\n');
    expect(attached.status).toBe(6);
    const outputOnly = await c.kiln(['start', '-a', 'shouter'], { input: 'ignored\n' });
    expect(outputOnly.stdout).toBe('');
    expect(outputOnly.status).toBe(6);
    // A container created without -i gets no input even with start -i.
    ok(await c.kiln(['create', '--name', 'deaf', c.image, 'cat']));
    const deaf = await c.kiln(['start', '-ai', 'deaf'], { input: 'unheard\n' });
    expect(ok(deaf)).toBe('');
    ok(await c.kiln(['rm', 'shouter', 'deaf']));
  });

  it('du counts containers (running ones active, their read-write layers) and local volumes (in use active)', async () => {
    const row = async (type: string) => {
      const rows = ok(await c.kiln(['du', '--format', 'json'])).trim().split('\n').map((l) => JSON.parse(l) as Record<string, string>);
      return rows.find((r) => r.Type === type);
    };
    expect(await row('Containers')).toMatchObject({ TotalCount: '0', Active: '0', Size: '0B' });
    ok(await c.kiln(['volume', 'create', 'du-spare']));
    ok(await c.kiln(['run', '--name', 'writer', '-v', 'du-data:/data', c.image, 'sh', '-c', 'head -c 3000000 /dev/zero > /big; head -c 2000000 /dev/zero > /data/f']));
    ok(await c.kiln(['run', '-d', '--name', 'sleeper', c.image, 'sleep', '1000']));
    expect(await row('Containers')).toMatchObject({ TotalCount: '2', Active: '1', Size: '3MB', Reclaimable: '3MB (100%)' });
    expect(await row('Local Volumes')).toMatchObject({ TotalCount: '2', Active: '1', Size: '2MB', Reclaimable: '0B (0%)' });
    const verbose = ok(await c.kiln(['du', '-v']));
    expect(verbose).toMatch(/^Containers space usage:\n\nCONTAINER ID\s+IMAGE\s+COMMAND\s+LOCAL VOLUMES\s+SIZE\s+CREATED\s+STATUS\s+NAMES$/m);
    expect(verbose).toMatch(/^[0-9a-f]{12}\s+kiln-test\/busybox:latest\s+"sh -c head -c 30000…"\s+1\s+3MB\s+.* ago\s+Exited \(0\) .* ago\s+writer$/m);
    expect(verbose).toMatch(/^du-data\s+1\s+2MB$/m);
    expect(verbose).toMatch(/^du-spare\s+0\s+0B$/m);
    ok(await c.kiln(['rm', '-f', 'writer', 'sleeper']));
    ok(await c.kiln(['volume', 'rm', 'du-data', 'du-spare']));
  });

  it('create + start -a runs the container and exits with its status; its layer persists across starts', async () => {
    ok(await c.kiln(['create', '--name', 'counter', c.image, 'sh', '-c', 'echo x >> /count; wc -l < /count; exit 3']));
    const first = await c.kiln(['start', '-a', 'counter']);
    expect(first.stdout).toBe('1\n');
    expect(first.status).toBe(3);
    const second = await c.kiln(['start', '-a', 'counter']);
    expect(second.stdout).toBe('2\n');
    ok(await c.kiln(['rm', 'counter']));
  });

  it('commit makes an image whose new file kiln run sees, with the container as its command', async () => {
    ok(await c.kiln(['run', '--name', 'changed', '-e', 'MARK=committed', c.image, 'sh', '-c', 'echo "$MARK" > /new-file; rm /bin/vi']));
    const id = ok(await c.kiln(['commit', '-m', 'a message', '-c', 'CMD ["cat", "/new-file"]', 'changed', 'kiln-test/committed:1'])).trim();
    expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(ok(await c.kiln(['run', '--rm', 'kiln-test/committed:1']))).toBe('committed\n');
    const gone = await c.kiln(['run', '--rm', 'kiln-test/committed:1', 'sh', '-c', 'test -e /bin/vi || echo "vi removed, MARK=$MARK"']);
    expect(ok(gone)).toBe('vi removed, MARK=committed\n');
    ok(await c.kiln(['rm', 'changed']));
  });

  it('rmi refuses an image a container uses, prune keeps it, and both work once the container is gone', async () => {
    ok(await c.kiln(['tag', c.image, 'kiln-test/in-use:1']));
    ok(await c.kiln(['create', '--name', 'user', 'kiln-test/in-use:1', 'true']));
    // Another name of the image may go; the last one may not.
    ok(await c.kiln(['rmi', c.image]));
    const refused = await c.kiln(['rmi', 'kiln-test/in-use:1']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/unable to remove repository reference "kiln-test\/in-use:1" \(must force\) - container [0-9a-f]{12} is using its referenced image/);
    ok(await c.kiln(['prune', '-a', '-f']));
    expect(ok(await c.kiln(['images', '-q']))).not.toBe('');
    // The container still runs from its image's layers.
    ok(await c.kiln(['start', '-a', 'user']));
    ok(await c.kiln(['rm', 'user']));
    ok(await c.kiln(['rmi', 'kiln-test/in-use:1']));
  });
});
