/**
 * Container networks: `host` (the host's own stack), `none` (a namespace with only loopback) and
 * `private` (a namespace of its own with an eth0 behind a user-mode network stack, pasta or
 * slirp4netns, that gives it outbound TCP/UDP, DNS and published ports without a bridge or root
 * privileges on the host side).
 *
 * The private network needs /dev/net/tun to be usable by kiln: both tools create the container's
 * eth0 as a tap device. Where it is not (some hosts keep it root-only), probePrivateNetwork says
 * so, with the fix, and containers can still use host and none.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants as fsc, openSync, readFileSync, statSync, writeFileSync, type Stats } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { KilnError, UsageError } from '../errors.js';
import { PRIVATE_NET, SUPERVISOR_SCRIPT, pastaArgv, slirp4netnsArgv, type NetworkTool } from './network/helper.js';
import { formatPortMapping, parsePublish, resolveHostPorts, type PortMapping } from './network/ports.js';
import { findExecutable } from './tools.js';

export { formatPortMapping, parsePublish, PRIVATE_NET, resolveHostPorts, type NetworkTool, type PortMapping };

export type ContainerNetwork = 'host' | 'none' | 'private';

/** A network the user or the private network could not provide. */
export class NetworkError extends KilnError {
  constructor(message: string, options: ConstructorParameters<typeof KilnError>[2] = {}) {
    super('NETWORK', message, options);
  }
}

/**
 * `--network VALUE` as docker spells it: `bridge` (docker's default network) and `default` mean
 * the private network; `host` and `none` are themselves. Undefined stays undefined (the caller
 * picks the default).
 */
export function parseNetworkMode(value: string | undefined): ContainerNetwork | undefined {
  if (value === undefined) return undefined;
  const mode = value.trim();
  if (mode === 'bridge' || mode === 'private' || mode === 'default') return 'private';
  if (mode === 'host' || mode === 'none') return mode;
  if (mode.startsWith('container:')) {
    throw new UsageError(`--network ${mode}: sharing another container's network is not supported`, { hint: 'use --network host, none or private' });
  }
  throw new UsageError(`network ${mode} not found`, { hint: 'kiln has the networks host, none and private (also called bridge or default)' });
}

export interface PrivateNetworkProbe {
  available: boolean;
  /** The tool attachPrivateNetwork would use. */
  tool?: NetworkTool;
  /** Why the private network is unavailable. */
  reason?: string;
  /** What fixes it. */
  hint?: string;
  /** Every tool found, in order of preference. */
  tools?: NetworkTool[];
}

export interface ProbeNetworkOptions {
  /** Use this tool only (default: pasta, else slirp4netns). */
  tool?: NetworkTool;
  env?: NodeJS.ProcessEnv;
}

const PACKAGES: Record<NetworkTool, string> = { pasta: 'passt', slirp4netns: 'slirp4netns' };

/**
 * Whether a private network can be attached here, and with which tool; cheap (no process started).
 * The tools are looked up on PATH only, as the shell would find them, so what a user sees with
 * `which pasta` is what kiln uses.
 */
export async function probePrivateNetwork(opts: ProbeNetworkOptions = {}): Promise<PrivateNetworkProbe> {
  const candidates: NetworkTool[] = opts.tool ? [opts.tool] : ['pasta', 'slirp4netns'];
  const tools = candidates.filter((t) => findExecutable(t, { env: opts.env, pathOnly: true }));
  if (!tools.length) {
    const names = candidates.join(opts.tool ? '' : ' nor ');
    return {
      available: false,
      reason: opts.tool ? `${names} is not installed` : `neither ${names} is installed`,
      hint: `apt-get install ${opts.tool ? PACKAGES[opts.tool] : 'passt   (or slirp4netns)'}`,
      tools,
    };
  }
  const tun = tunAccess();
  if (tun) return { available: false, ...tun, tools };
  if (!findExecutable('tail', { env: opts.env, pathOnly: true })) return { available: false, reason: 'tail (coreutils) is not installed', hint: 'apt-get install coreutils', tools };
  return { available: true, tool: tools[0], tools };
}

/** Why this process cannot open /dev/net/tun, or undefined when it can. */
function tunAccess(): { reason: string; hint: string } | undefined {
  try {
    accessSync('/dev/net/tun', fsc.R_OK | fsc.W_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      return { reason: '/dev/net/tun does not exist, and pasta and slirp4netns need it', hint: 'as root: modprobe tun' };
    }
    return {
      reason: `/dev/net/tun (${describeNode('/dev/net/tun')}) is not accessible to ${describeUser()}, and pasta and slirp4netns need it`,
      hint: 'as root: chmod 0666 /dev/net/tun (the mode most distributions give it), or run kiln as root; --network host and none still work',
    };
  }
}

/** The host user kiln runs as, also from inside its user namespace (where it is uid 0). */
function describeUser(): string {
  const uid = process.getuid?.() ?? 0;
  try {
    for (const line of readFileSync('/proc/self/uid_map', 'utf8').trim().split('\n')) {
      const [inside, outside] = line.trim().split(/\s+/).map(Number);
      if (inside === uid && outside !== uid) return `uid ${outside}, root of kiln's user namespace`;
    }
  } catch {
    // no /proc: the plain uid will do
  }
  return `uid ${uid}`;
}

/** `ls -l`'s mode and owner of a device node, e.g. `crw------- root`. */
function describeNode(path: string): string {
  let st: Stats;
  try {
    st = statSync(path);
  } catch {
    return 'cannot stat it';
  }
  const type = st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : st.isDirectory() ? 'd' : '-';
  let mode = type;
  for (const shift of [6, 3, 0]) {
    const bits = (st.mode >> shift) & 7;
    mode += `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${bits & 1 ? 'x' : '-'}`;
  }
  // Inside kiln's user namespace the host's root is not mapped and shows as the overflow id.
  const owner = st.uid === 0 ? 'root' : st.uid === 65534 && process.getuid?.() === 0 ? 'owner outside kiln\'s namespace' : `uid ${st.uid}`;
  return owner === 'root' ? `${mode} root` : `${mode}, ${owner}`;
}

export interface AttachOptions {
  publish: PortMapping[];
  /** The network outlives this kiln process (for `kiln run -d`); it still ends with the container. */
  detached?: boolean;
  /** Force a tool (default: the probe's choice). */
  tool?: NetworkTool;
  /** How long the tool may take to come up before attach fails (default 30 s). */
  timeoutMs?: number;
}

export interface NetworkAttachment {
  tool: NetworkTool;
  /** The container's address on eth0. */
  address: string;
  gateway: string;
  /** Nameservers for the container's resolv.conf (the tool's DNS forwarder). */
  dns: string[];
  /** The published ports with their host ports fixed. */
  ports: PortMapping[];
  /** The supervising process (leader of the helper's process group). */
  pid: number;
  /** Stops the network helper; the namespace is left with only loopback. */
  close(): Promise<void>;
}

/**
 * Gives the network namespace of `target.pid` an eth0 with address, default route, DNS forwarder
 * and the published ports. The target must already be in its own network namespace and wait until
 * this resolves. The helper ends by itself when the target process is gone.
 */
export async function attachPrivateNetwork(target: { pid: number }, opts: AttachOptions): Promise<NetworkAttachment> {
  const probe = await probePrivateNetwork(opts.tool ? { tool: opts.tool } : {});
  if (!probe.available || !probe.tool) {
    throw new NetworkError(`the private network is not available: ${probe.reason}`, { hint: probe.hint ?? 'kiln doctor shows what works here' });
  }
  const tool = probe.tool;
  const v6 = opts.publish.find((p) => p.hostIp?.includes(':'));
  if (v6) throw new NetworkError(`cannot publish on ${v6.hostIp}: the private network forwards IPv4 host addresses only`);
  const ports = await resolveHostPorts(opts.publish);

  let nsFd: number;
  try {
    nsFd = openSync(`/proc/${target.pid}/ns/net`, 'r');
  } catch (err) {
    throw new NetworkError(`cannot open the network namespace of process ${target.pid}: ${(err as Error).message}`, { cause: err });
  }
  const dir = await mkdtemp(join(tmpdir(), 'kiln-net-'));
  let child: ChildProcess;
  try {
    const logFd = openSync(join(dir, 'log'), 'a');
    try {
      const executable = findExecutable(tool, { pathOnly: true })!;
      const argv = tool === 'pasta' ? pastaArgv({ executable, dir, publish: ports }) : slirp4netnsArgv({ executable, dir, publish: ports });
      // A script file rather than `sh -c`, so `ps` shows a short, telling command line.
      const script = join(dir, 'kiln-network.sh');
      writeFileSync(script, SUPERVISOR_SCRIPT, { mode: 0o600 });
      child = spawn('/bin/sh', [script, String(target.pid), dir, tool, ...argv], {
        detached: true,
        stdio: ['ignore', logFd, logFd, nsFd, 'pipe'],
        env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
      });
    } finally {
      closeSync(logFd);
    }
  } finally {
    closeSync(nsFd);
  }
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // already gone
    }
  };
  const stop = async () => {
    signalGroup('SIGTERM');
    // A helper that does not end on SIGTERM (a loaded machine, a tool stuck in setup) must not
    // hold kiln: after a grace period the whole group is killed.
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), 3000)));
    if ((await Promise.race([exited, grace])) === 'late') {
      signalGroup('SIGKILL');
      await exited;
    }
    clearTimeout(timer);
    await rm(dir, { recursive: true, force: true });
  };

  try {
    if (!child.pid) throw new NetworkError(`cannot start the ${tool} helper`);
    await waitReady(child, child.stdio[4] as Duplex, opts.timeoutMs ?? 30_000, tool, dir);
    if (tool === 'slirp4netns') {
      for (const p of ports) await slirpAddForward(join(dir, 'api.sock'), p);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  (child.stdio[4] as Duplex).destroy();
  if (opts.detached) child.unref();
  let closing: Promise<void> | undefined;
  return {
    tool,
    address: PRIVATE_NET.address,
    gateway: PRIVATE_NET.gateway,
    dns: [PRIVATE_NET.dns],
    ports,
    pid: child.pid!,
    close: () => (closing ??= stop()),
  };
}

/** Resolves on the ready line; rejects with the tool's own words when it exits or hangs first. */
function waitReady(child: ChildProcess, channel: Duplex, timeoutMs: number, tool: NetworkTool, dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = '';
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      channel.off('data', onData);
      channel.off('end', onEnd);
      child.off('exit', onEnd);
      if (err) reject(err);
      else resolve();
    };
    const fail = async (what: string) => {
      const log = await readFile(join(dir, 'log'), 'utf8').catch(() => '');
      const detail = log
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !/syslog/i.test(l))
        .slice(-3)
        .join('; ');
      finish(new NetworkError(`${tool} could not attach the network: ${detail || what}`));
    };
    const onData = (d: Buffer) => {
      text += d.toString();
      if (/^(1|ready)/.test(text)) finish();
      else if (/^exited/.test(text)) void fail(text.trim().replace(/^exited /, 'exit status '));
    };
    const onEnd = () => void fail('it ended without saying it was ready');
    const timer = setTimeout(() => void fail(`not ready after ${Math.round(timeoutMs / 1000)} s`), timeoutMs);
    channel.on('data', onData);
    channel.once('end', onEnd);
    child.once('exit', onEnd);
  });
}

/** One `add_hostfwd` request on slirp4netns' API socket. */
function slirpAddForward(socketPath: string, p: PortMapping): Promise<void> {
  const request = {
    execute: 'add_hostfwd',
    arguments: { proto: p.protocol, host_addr: p.hostIp ?? '0.0.0.0', host_port: p.hostPort, guest_port: p.containerPort },
  };
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let reply = '';
    sock.once('error', (err) => reject(new NetworkError(`cannot reach slirp4netns to publish ${formatPortMapping(p)}: ${err.message}`)));
    sock.on('data', (d: Buffer) => (reply += d.toString()));
    sock.once('end', () => {
      try {
        const parsed = JSON.parse(reply) as { return?: unknown; error?: { desc?: string } };
        if (parsed.error) reject(new NetworkError(`cannot publish ${formatPortMapping(p)}: ${parsed.error.desc ?? JSON.stringify(parsed.error)}`));
        else resolve();
      } catch {
        reject(new NetworkError(`cannot publish ${formatPortMapping(p)}: slirp4netns answered ${JSON.stringify(reply)}`));
      }
    });
    sock.end(JSON.stringify(request));
  });
}
