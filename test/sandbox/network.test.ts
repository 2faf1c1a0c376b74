/**
 * The private network with real namespaces and the real tools: a process in a fresh network
 * namespace (the way a container's init waits there) gets eth0 from pasta or slirp4netns, reaches
 * a server on the host, is reached through a published port, resolves names through the DNS
 * forwarder, and loses it all when the network is closed or the process is gone. As a normal user
 * on a host whose /dev/net/tun is root-only, the probe says why there is no private network.
 *
 * These run as root (the only user /dev/net/tun admits on the machines kiln is tested on).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../conformance/harness.js';
import { KILN_BIN, kiln } from '../helpers/kiln.js';
import { fetchEventually, fetchText, hostAddress } from '../helpers/net.js';
import { attachPrivateNetwork, probePrivateNetwork, type NetworkAttachment, type NetworkTool } from '../../src/sandbox/network.js';
import { ensurePackages, ensureUsers, TEST_USER } from './users.js';

const isRoot = process.getuid?.() === 0;
const describeRoot = isRoot ? describe : describe.skip;

/** A process alone in a new network namespace (optionally in a user namespace of its own too). */
function namespaceProcess(opts: { userns?: boolean } = {}): ChildProcess {
  const args = [...(opts.userns ? ['--user', '--map-root-user'] : []), '--net', 'sleep', '600'];
  return spawn('unshare', args, { stdio: 'ignore' });
}

async function started(child: ChildProcess): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  // unshare execs sleep once the namespace exists: wait for that exec (comm changes).
  for (let i = 0; i < 500; i++) {
    const comm = spawnSync('cat', [`/proc/${child.pid}/comm`], { encoding: 'utf8' }).stdout.trim();
    if (comm === 'sleep') return child.pid!;
    await pause(10);
  }
  throw new Error('unshare did not start its command');
}

function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Runs a command inside the target's network namespace (only the network: files are the host's).
 * Asynchronous, so the servers this test process runs on the host can answer it.
 */
function inNet(pid: number, argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', ['-t', String(pid), '-n', '--', ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('error', reject);
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 200 && alive(pid); i++) await pause(50);
  return !alive(pid);
}

let server: Server;
let udpEcho: Socket;
let serverUrl: string;
let web: string;
const hostIp = isRoot ? hostAddress() : '';

beforeAll(async () => {
  if (!isRoot) return;
  ensurePackages();
  server = createHttpServer((req, res) => res.end(`host says hello to ${req.socket.remoteAddress}\n`));
  await new Promise<void>((r) => server.listen(0, hostIp, () => r()));
  serverUrl = `http://${hostIp}:${(server.address() as { port: number }).port}/`;
  udpEcho = createSocket('udp4');
  udpEcho.on('message', (msg, from) => udpEcho.send(String(msg) === 'ping' ? 'pong' : 'what?', from.port, from.address));
  await new Promise<void>((r) => udpEcho.bind(0, hostIp, () => r()));
  web = mkdtempSync(join(tmpdir(), 'kiln-net-web-'));
  writeFileSync(join(web, 'index.html'), 'container page\n');
});

afterAll(async () => {
  server?.close();
  udpEcho?.close();
  if (web) rmSync(web, { recursive: true, force: true });
});

describeRoot.each(['pasta', 'slirp4netns'] as NetworkTool[])('private network with %s (as root)', (tool) => {
  it('is available here', async () => {
    const probe = await probePrivateNetwork({ tool });
    expect(probe).toMatchObject({ available: true, tool });
  });

  for (const userns of [false, true]) {
    it(`gives ${userns ? 'a namespace owned by a user namespace' : 'a plain network namespace'} eth0, a route out, DNS and published ports`, async () => {
      const target = namespaceProcess({ userns });
      const pid = await started(target);
      let net: NetworkAttachment | undefined;
      let httpd: ChildProcess | undefined;
      try {
        net = await attachPrivateNetwork({ pid }, { tool, publish: [{ hostIp: '127.0.0.1', hostPort: 0, containerPort: 8080, protocol: 'tcp' }] });
        expect(net).toMatchObject({ tool, address: '10.0.2.100', gateway: '10.0.2.2', dns: ['10.0.2.3'] });
        const hostPort = net.ports[0]!.hostPort;
        expect(hostPort).toBeGreaterThan(0);

        const addr = await inNet(pid, ['ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0']);
        expect(addr.stdout).toContain('inet 10.0.2.100/24');
        expect((await inNet(pid, ['ip', 'route'])).stdout).toContain('default via 10.0.2.2 dev eth0');

        // Outbound TCP to a server on the host's own address.
        const out = await inNet(pid, ['busybox', 'wget', '-q', '-O', '-', serverUrl]);
        expect(out.stderr).toBe('');
        expect(out.stdout).toMatch(/^host says hello to /);

        // The host's loopback stays out of reach, as with docker's bridge.
        const port = (server.address() as { port: number }).port;
        const loop = await inNet(pid, ['busybox', 'wget', '-q', '-T', '3', '-O', '-', `http://10.0.2.2:${port}/`]);
        expect(loop.stdout).not.toContain('host says hello');

        // Inbound through the published port.
        httpd = spawn('nsenter', ['-t', String(pid), '-n', '--', 'busybox', 'httpd', '-f', '-p', '8080', '-h', web], { stdio: 'ignore' });
        expect(await fetchEventually(`http://127.0.0.1:${hostPort}/index.html`, 50)).toBe('container page\n');

        // Outbound UDP: a datagram to the host and its answer.
        const udp = await inNet(pid, [process.execPath, '-e', UDP_ROUNDTRIP, hostIp], { ...process.env, UDP_PORT: String((udpEcho.address() as { port: number }).port) });
        expect(udp.stdout.trim()).toBe('pong');

        await net.close();
        expect((await inNet(pid, ['ip', '-o', 'link'])).stdout).not.toContain('eth0');
        await expect(fetchText(`http://127.0.0.1:${hostPort}/index.html`)).rejects.toThrow();
      } finally {
        httpd?.kill();
        await net?.close();
        target.kill('SIGKILL');
      }
    });
  }

  it('resolves names through the DNS forwarder when the host can', async () => {
    const nameserver = /^nameserver\s+(\S+)/m.exec(spawnSync('cat', ['/etc/resolv.conf'], { encoding: 'utf8' }).stdout)?.[1];
    const hostLookup = nameserver ? spawnSync('busybox', ['nslookup', 'deb.debian.org', nameserver], { encoding: 'utf8', timeout: 15_000 }) : undefined;
    if (!hostLookup || hostLookup.status !== 0) {
      // Nothing to forward to: the forwarder cannot be told apart from a dead resolver here.
      process.stderr.write('DNS forwarder test skipped: the host cannot resolve deb.debian.org\n');
      return;
    }
    const target = namespaceProcess();
    const pid = await started(target);
    const net = await attachPrivateNetwork({ pid }, { tool, publish: [] });
    try {
      const r = await inNet(pid, ['busybox', 'nslookup', 'deb.debian.org', net.dns[0]!]);
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/Address:\s+\d+\.\d+\.\d+\.\d+/);
    } finally {
      await net.close();
      target.kill('SIGKILL');
    }
  });

  it('ends by itself when the namespace process is gone, also when detached', async () => {
    const target = namespaceProcess();
    const pid = await started(target);
    const net = await attachPrivateNetwork({ pid }, { tool, publish: [{ hostIp: '127.0.0.1', hostPort: 0, containerPort: 80, protocol: 'tcp' }], detached: true });
    expect(alive(net.pid)).toBe(true);
    target.kill('SIGKILL');
    expect(await gone(net.pid)).toBe(true);
    // Its published port is free again.
    await expect(fetchText(`http://127.0.0.1:${net.ports[0]!.hostPort}/`)).rejects.toThrow();
  });

  it('fails with the tool\'s own words when the host port is taken', async () => {
    const busy = createHttpServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const taken = (busy.address() as { port: number }).port;
    const target = namespaceProcess();
    const pid = await started(target);
    try {
      await expect(attachPrivateNetwork({ pid }, { tool, publish: [{ hostIp: '127.0.0.1', hostPort: taken, containerPort: 80, protocol: 'tcp' }] })).rejects.toThrow(
        new RegExp(`${tool === 'pasta' ? 'pasta could not attach the network' : 'cannot publish 127.0.0.1:' + taken}`),
      );
      // Nothing is left attached.
      expect((await inNet(pid, ['ip', '-o', 'link'])).stdout).not.toContain('eth0');
    } finally {
      busy.close();
      target.kill('SIGKILL');
    }
  });
});

/** Sends "ping" to the host's UDP echo port (argv[1], port from the echo server below) and prints the answer. */
const UDP_ROUNDTRIP = `
const dgram = require('node:dgram');
const [host, port] = [process.argv[1], Number(process.env.UDP_PORT || 0)];
const s = dgram.createSocket('udp4');
s.on('message', (m) => { console.log(String(m)); process.exit(0); });
s.send('ping', port, host);
setTimeout(() => { console.log('no answer'); process.exit(1); }, 10000);
`;

describeRoot('network none', () => {
  it('a fresh network namespace has only loopback', async () => {
    const target = namespaceProcess();
    const pid = await started(target);
    try {
      const links = (await inNet(pid, ['ip', '-o', 'link'])).stdout.trim().split('\n');
      expect(links).toHaveLength(1);
      expect(links[0]).toMatch(/^1: lo:/);
    } finally {
      target.kill('SIGKILL');
    }
  });
});

describe('probe', () => {
  it('names the package to install when neither tool is on PATH', async () => {
    const probe = await probePrivateNetwork({ env: { PATH: '/nonexistent' } });
    expect(probe).toMatchObject({ available: false, reason: 'neither pasta nor slirp4netns is installed', hint: 'apt-get install passt   (or slirp4netns)' });
    expect(await probePrivateNetwork({ tool: 'slirp4netns', env: { PATH: '/nonexistent' } })).toMatchObject({
      available: false,
      reason: 'slirp4netns is not installed',
      hint: 'apt-get install slirp4netns',
    });
  });
});

describeRoot('a detached network', () => {
  it('outlives the kiln process that attached it, and ends with the container', async () => {
    const target = namespaceProcess();
    const pid = await started(target);
    try {
      // Another process attaches, prints what it got and exits, as `kiln run -d` does.
      const script = `const m = await import(${JSON.stringify(join(REPO_ROOT, 'src/sandbox/network.ts'))});
const net = await m.attachPrivateNetwork({ pid: ${pid} }, { detached: true, publish: [{ hostIp: '127.0.0.1', hostPort: 0, containerPort: 8080, protocol: 'tcp' }] });
console.log(JSON.stringify({ pid: net.pid, port: net.ports[0].hostPort }));`;
      const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000 });
      expect(r.stderr).toBe('');
      const { pid: helper, port } = JSON.parse(r.stdout) as { pid: number; port: number };
      expect(alive(helper)).toBe(true);
      const httpd = spawn('nsenter', ['-t', String(pid), '-n', '--', 'busybox', 'httpd', '-f', '-p', '8080', '-h', web], { stdio: 'ignore' });
      try {
        expect(await fetchEventually(`http://127.0.0.1:${port}/index.html`, 50)).toBe('container page\n');
        expect((await inNet(pid, ['busybox', 'wget', '-q', '-O', '-', serverUrl])).stdout).toMatch(/^host says hello/);
      } finally {
        httpd.kill('SIGKILL');
      }
      target.kill('SIGKILL');
      expect(await gone(helper)).toBe(true);
    } finally {
      target.kill('SIGKILL');
    }
  });
});

describeRoot('kiln doctor', () => {
  it('as root: lists host, none and private with the tool it uses', () => {
    const r = kiln(['doctor']);
    expect(r.stdout).toMatch(/^ok\s+container networks\s+host, none, private; private uses pasta \(slirp4netns also installed\), with outbound access and -p$/m);
    const json = JSON.parse(kiln(['doctor', '--json']).stdout) as { networks: unknown };
    expect(json.networks).toEqual({ host: true, none: true, private: true, tool: 'pasta' });
  });

  it('as a normal user on a root-only /dev/net/tun: host and none, and why there is no private network', () => {
    ensureUsers();
    if (spawnSync('runuser', ['-u', TEST_USER, '--', 'test', '-w', '/dev/net/tun']).status === 0) return; // this host lets users have it
    const r = spawnSync('runuser', ['-u', TEST_USER, '--', process.execPath, KILN_BIN, 'doctor'], { encoding: 'utf8', cwd: tmpdir() });
    expect(r.stdout).toMatch(/^warn\s+container networks\s+host, none; no private network \(-p needs it\): \/dev\/net\/tun \(crw------- root\) is not accessible to uid \d+, and pasta/m);
    expect(r.stdout).toMatch(/^\s+fix: as root: chmod 0666 \/dev\/net\/tun/m);
  });
});

describeRoot('as a normal user', () => {
  it('the probe says why there is no private network', () => {
    ensureUsers();
    const tunOpen = spawnSync('runuser', ['-u', TEST_USER, '--', 'test', '-r', '/dev/net/tun', '-a', '-w', '/dev/net/tun']).status === 0;
    const script = `const m = await import(${JSON.stringify(join(REPO_ROOT, 'src/sandbox/network.ts'))}); console.log(JSON.stringify(await m.probePrivateNetwork()));`;
    const r = spawnSync('runuser', ['-u', TEST_USER, '--', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    const probe = JSON.parse(r.stdout) as { available: boolean; reason?: string; hint?: string };
    if (tunOpen) {
      expect(probe.available).toBe(true);
    } else {
      expect(probe.available).toBe(false);
      expect(probe.reason).toMatch(/^\/dev\/net\/tun \(crw------- root\) is not accessible to uid \d+, and pasta and slirp4netns need it$/);
      expect(probe.hint).toContain('chmod 0666 /dev/net/tun');
    }
  });
});
