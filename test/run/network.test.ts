/**
 * Containers on the private network and on volumes, through `kiln run` as a user types it: the
 * default network gives eth0, a route to the host and a DNS forwarder in resolv.conf; `-p` makes a
 * detached web server reachable from the host until `kiln stop`; `--network none` has only
 * loopback; named volumes keep data across containers and cannot be removed while a container
 * uses them. As an unprivileged user on a host whose /dev/net/tun is root-only, the private
 * network is refused with the reason, and containers fall back to the host's network.
 */
import { spawn, spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KILN_BIN } from '../helpers/kiln.js';
import { fetchEventually, fetchText, hostAddress } from '../helpers/net.js';
import { ok, runContext, type RunContext } from './context.js';

/** Polls `check` for up to ten seconds. */
async function eventually(check: () => boolean): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return check();
}

async function freePort(): Promise<number> {
  const s = createTcpServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The network tools (pasta) now forwarding the given host port. */
function networkHelpersFor(port: number): string[] {
  return spawnSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter((l) => /^\s*\d+ \S*pasta /.test(l) && l.includes(`/${port}:`));
}

const WEB = 'mkdir -p /www && echo "served by $(hostname)" > /www/index.html && exec httpd -f -p 80 -h /www';

describe('kiln run on the private network (root)', () => {
  let c: RunContext;
  let server: Server;
  let serverUrl: string;

  beforeAll(async () => {
    c = await runContext('root');
    const ip = hostAddress();
    server = createHttpServer((_req, res) => res.end('hello from the host\n'));
    await new Promise<void>((r) => server.listen(0, ip, () => r()));
    serverUrl = `http://${ip}:${(server.address() as AddressInfo).port}/`;
  }, 180_000);

  afterAll(async () => {
    server?.close();
    await c?.cleanup();
  }, 60_000);

  it('gives a container eth0, a default route, the DNS forwarder and a way to the host by default', async () => {
    const port = await freePort();
    const out = ok(await c.kiln(['run', '--rm', '-p', `127.0.0.1:${port}:9`, c.image, 'sh', '-c', `ip -o -4 addr show eth0; ip route; cat /etc/resolv.conf; wget -q -O - ${serverUrl}`]));
    expect(out).toContain('inet 10.0.2.100/24');
    expect(out).toContain('default via 10.0.2.2 dev eth0');
    expect(out).toMatch(/^nameserver 10\.0\.2\.3$/m);
    expect(out).toContain('hello from the host\n');
    // The container's network helper ended with it.
    expect(networkHelpersFor(port)).toEqual([]);
  });

  it('publishes a detached web server on the host port until the container stops', async () => {
    const port = await freePort();
    const id = ok(await c.kiln(['run', '-d', '--name', 'web', '--hostname', 'webbox', '-p', `127.0.0.1:${port}:80`, c.image, 'sh', '-c', WEB])).trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    try {
      expect(await fetchEventually(`http://127.0.0.1:${port}/index.html`)).toBe('served by webbox\n');
      expect(ok(await c.kiln(['ps'])).split('\n').find((l) => l.endsWith(' web'))).toContain(`127.0.0.1:${port}->80/tcp`);
      expect(networkHelpersFor(port)).toHaveLength(1);
      ok(await c.kiln(['stop', '-t', '2', 'web']));
      // The container's monitor closes the network as the container ends (or the helper notices within a second).
      expect(await eventually(() => networkHelpersFor(port).length === 0)).toBe(true);
      await expect(fetchText(`http://127.0.0.1:${port}/index.html`)).rejects.toThrow();
    } finally {
      await c.kiln(['rm', '-f', 'web']);
    }
  });

  it('--network none has only the loopback interface', async () => {
    const links = ok(await c.kiln(['run', '--rm', '--network', 'none', c.image, 'ip', '-o', 'link'])).trim().split('\n');
    expect(links).toHaveLength(1);
    expect(links[0]).toMatch(/^1: lo:/);
  });

  it('--network host shares the host interfaces and warns that -p is discarded', async () => {
    const r = await c.kiln(['run', '--rm', '--network', 'host', '-p', '8080:80', c.image, 'ip', '-o', '-4', 'addr']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(hostAddress());
    expect(r.stderr).toContain('Published ports are discarded when using host network mode');
  });

  it('refuses a network kiln does not have', async () => {
    const r = await c.kiln(['run', '--rm', '--network', 'mynet', c.image, 'true']);
    expect(r.status).toBe(125);
    expect(r.stderr).toContain('network mynet not found');
  });

  it('keeps a named volume across containers and refuses to remove it while a container uses it', async () => {
    ok(await c.kiln(['run', '--name', 'writer', '-v', 'appdata:/data', c.image, 'sh', '-c', 'echo persisted > /data/note']));
    expect(ok(await c.kiln(['run', '--rm', '-v', 'appdata:/data:ro', c.image, 'cat', '/data/note']))).toBe('persisted\n');
    const mountpoint = ok(await c.kiln(['volume', 'inspect', '--format', '{{.Mountpoint}}', 'appdata'])).trim();
    expect(spawnSync('cat', [`${mountpoint}/note`], { encoding: 'utf8' }).stdout).toBe('persisted\n');

    const writerId = ok(await c.kiln(['ps', '-a', '--no-trunc']))
      .split('\n')
      .find((l) => l.endsWith(' writer'))
      ?.split(' ')[0];
    expect(writerId).toMatch(/^[0-9a-f]{64}$/);
    const refused = await c.kiln(['volume', 'rm', 'appdata']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain(`remove appdata: volume is in use - [${writerId}]`);
    expect(ok(await c.kiln(['volume', 'prune', '-a', '-f']))).not.toContain('appdata');

    ok(await c.kiln(['rm', 'writer']));
    expect(ok(await c.kiln(['volume', 'rm', 'appdata']))).toBe('appdata\n');
    expect(ok(await c.kiln(['volume', 'ls', '-q']))).not.toContain('appdata');
  });
});

describe('kiln run on a host without a usable /dev/net/tun (rootless)', () => {
  let c: RunContext;
  let tunOpen = false;

  beforeAll(async () => {
    c = await runContext('rootless');
    tunOpen = spawnSync('runuser', ['-u', c.user!, '--', 'test', '-w', '/dev/net/tun']).status === 0;
  }, 180_000);

  afterAll(async () => {
    await c?.cleanup();
  }, 60_000);

  it('refuses the private network with the reason, and runs on the host network by default', async () => {
    if (tunOpen) return; // this host lets users have a tun device: the root tests cover the private network
    const refused = await c.kiln(['run', '--rm', '--network', 'bridge', c.image, 'true']);
    expect(refused.status).toBe(125);
    expect(refused.stderr).toMatch(/\/dev\/net\/tun \(crw-------, owner outside kiln's namespace\) is not accessible to uid \d+, root of kiln's user namespace/);
    const byDefault = ok(await c.kiln(['run', '--rm', c.image, 'ip', '-o', '-4', 'addr']));
    expect(byDefault).toContain(hostAddress());
  });

  it('attaches the private network from inside kiln\'s user namespace where /dev/net/tun is usable', async () => {
    // Most distributions give /dev/net/tun mode 0666; here a 0666 node is bound over it in a
    // private mount namespace, so the user's kiln meets what it would meet there.
    const server = createHttpServer((_req, res) => res.end('host answers the user\'s container\n'));
    const ip = hostAddress();
    await new Promise<void>((r) => server.listen(0, ip, () => r()));
    const url = `http://${ip}:${(server.address() as AddressInfo).port}/`;
    const port = await freePort();
    const tun = `${c.dir}/tun`;
    const kilnAsUser = `runuser -u ${c.user} -- env PATH="$PATH" ${process.execPath} ${KILN_BIN} --root ${c.root}`;
    const script = [
      `mknod ${tun} c 10 200 && chmod 0666 ${tun} && mount --bind ${tun} /dev/net/tun`,
      `${kilnAsUser} run --rm ${c.image} sh -c 'ip -o -4 addr show eth0; wget -q -O - ${url}'`,
      `${kilnAsUser} run -d --name userweb -p 127.0.0.1:${port}:80 ${c.image} sh -c '${WEB}' >/dev/null`,
    ].join(' && ');
    try {
      const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { cwd: c.dir, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.once('close', (status) => resolve({ status, stdout, stderr }));
      });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('inet 10.0.2.100/24');
      expect(r.stdout).toContain("host answers the user's container\n");
      // The detached container's network outlived the namespace that made the device usable.
      expect(await fetchEventually(`http://127.0.0.1:${port}/index.html`)).toMatch(/^served by /);
    } finally {
      server.close();
      await c.kiln(['rm', '-f', 'userweb']);
      await fsp.rm(tun, { force: true });
    }
  });

  it('keeps a named volume across containers, with files of the container user, and removes it afterwards', async () => {
    ok(await c.kiln(['run', '--rm', '-v', 'userdata:/data', c.image, 'sh', '-c', 'mkdir /data/app && echo mine > /data/app/f && chown -R 1234:1234 /data/app']));
    expect(ok(await c.kiln(['run', '--rm', '-v', 'userdata:/data', c.image, 'sh', '-c', 'cat /data/app/f; stat -c %u /data/app/f']))).toBe('mine\n1234\n');
    expect(ok(await c.kiln(['volume', 'rm', 'userdata']))).toBe('userdata\n');
    expect(ok(await c.kiln(['volume', 'ls', '-q']))).toBe('');
  });
});
