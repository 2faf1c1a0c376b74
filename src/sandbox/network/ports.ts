/**
 * Published ports: docker's `-p` syntax, and the choice of free host ports where the user left the
 * choice to kiln (`-p 80`, `-p 127.0.0.1::80`, `-p 8000-8010:80`).
 */
import { createServer, isIP, type AddressInfo } from 'node:net';
import { createSocket } from 'node:dgram';
import { KilnError, UsageError } from '../../errors.js';

export interface PortMapping {
  /** Host address to listen on; every IPv4 address when absent. */
  hostIp?: string;
  /** Host port; 0 means "any free port" until the network is attached. */
  hostPort: number;
  /**
   * With `-p 8000-8010:80` (a host range for one container port), the last port of the range:
   * the first free port of `hostPort..hostPortEnd` is used.
   */
  hostPortEnd?: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}

/**
 * Parses one `-p` value as docker does: `[IP:][HOSTPORT:]CONTAINERPORT[/PROTO]`, each port may be a
 * range `A-B`; equal-length ranges pair up port by port; an IPv6 address is written in brackets.
 */
export function parsePublish(spec: string): PortMapping[] {
  const parts = spec.split(':');
  const last = parts.length - 1;
  const rawContainer = parts[last]!;
  const rawHost = parts.length >= 2 ? parts[last - 1]! : '';
  let ip = parts.length >= 3 ? parts.slice(0, last - 1).join(':') : '';

  const slash = rawContainer.split('/');
  const containerText = slash[0] ?? '';
  const protoText = slash.length > 1 && slash[1] !== '' ? slash[1]! : 'tcp';
  if (slash.length > 2) throw new UsageError(`invalid publish spec "${spec}": more than one "/" after the container port`);

  if (ip.startsWith('[')) {
    if (!ip.endsWith(']')) throw new UsageError(`invalid IP address in "${spec}": ${ip}`);
    ip = ip.slice(1, -1);
  }
  if (ip !== '' && isIP(ip) === 0) throw new UsageError(`invalid IP address: ${ip}`, { hint: 'an IPv6 address goes in brackets: -p [::1]:8080:80' });
  if (containerText === '') throw new UsageError(`no port specified: ${spec}<empty>`);
  const container = parseRange(containerText);
  if (!container || container.start === 0) throw new UsageError(`invalid containerPort: ${containerText}`);
  const host = rawHost === '' ? undefined : parseRange(rawHost);
  if (rawHost !== '' && !host) throw new UsageError(`invalid hostPort: ${rawHost}`);

  const protocol = protoText.toLowerCase();
  if (protocol === 'sctp') throw new UsageError(`cannot publish ${spec}: kiln's private network forwards tcp and udp, not sctp`);
  if (protocol !== 'tcp' && protocol !== 'udp') throw new UsageError(`invalid proto: ${protoText}`);

  const containerCount = container.end - container.start;
  if (host && host.end - host.start !== containerCount && containerCount !== 0) {
    throw new UsageError(`invalid ranges specified for container and host Ports: ${containerText} and ${rawHost}`);
  }
  const base = { ...(ip ? { hostIp: ip } : {}), protocol: protocol as 'tcp' | 'udp' };
  if (host && containerCount === 0 && host.end !== host.start) {
    if (host.start === 0) throw new UsageError(`invalid hostPort: ${rawHost}`);
    return [{ ...base, hostPort: host.start, hostPortEnd: host.end, containerPort: container.start }];
  }
  const out: PortMapping[] = [];
  for (let i = 0; i <= containerCount; i++) {
    out.push({ ...base, hostPort: host ? host.start + i : 0, containerPort: container.start + i });
  }
  return out;
}

function parseRange(text: string): { start: number; end: number } | undefined {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!m) return undefined;
  const start = Number(m[1]);
  const end = m[2] === undefined ? start : Number(m[2]);
  if (start > 65535 || end > 65535 || end < start) return undefined;
  return { start, end };
}

/** How a mapping reads in messages and in `kiln ps`: `127.0.0.1:8080->80/tcp`. */
export function formatPortMapping(p: PortMapping): string {
  const ip = p.hostIp ? (p.hostIp.includes(':') ? `[${p.hostIp}]` : p.hostIp) : '0.0.0.0';
  return `${ip}:${p.hostPort}->${p.containerPort}/${p.protocol}`;
}

/**
 * Fixes every mapping to one host port: free ports are chosen for `hostPort: 0` and host ranges,
 * and a mapping given twice (same address, port and protocol) is refused before any tool sees it.
 */
export async function resolveHostPorts(publish: PortMapping[]): Promise<PortMapping[]> {
  const out: PortMapping[] = [];
  const taken = new Set<string>();
  const key = (p: { hostIp?: string; hostPort: number; protocol: string }) => `${p.protocol}/${p.hostIp ?? '0.0.0.0'}/${p.hostPort}`;
  for (const p of publish) {
    let hostPort = p.hostPort;
    if (hostPort === 0) {
      hostPort = await freePort(p.protocol, p.hostIp);
    } else if (p.hostPortEnd !== undefined) {
      let found: number | undefined;
      for (let port = p.hostPort; port <= p.hostPortEnd && found === undefined; port++) {
        if (!taken.has(key({ ...p, hostPort: port })) && (await isFree(p.protocol, p.hostIp, port))) found = port;
      }
      if (found === undefined) {
        throw new KilnError('PORT_IN_USE', `cannot publish container port ${p.containerPort}/${p.protocol}: every host port in ${p.hostPort}-${p.hostPortEnd} is in use`);
      }
      hostPort = found;
    }
    const fixed: PortMapping = { ...(p.hostIp ? { hostIp: p.hostIp } : {}), hostPort, containerPort: p.containerPort, protocol: p.protocol };
    if (taken.has(key(fixed))) {
      throw new UsageError(`host port ${fixed.hostPort}/${fixed.protocol} is published twice`, { hint: 'each -p needs its own host port' });
    }
    taken.add(key(fixed));
    out.push(fixed);
  }
  return out;
}

/** A port the kernel hands out as free right now (the network tool binds it moments later). */
async function freePort(protocol: 'tcp' | 'udp', hostIp: string | undefined): Promise<number> {
  return bindProbe(protocol, hostIp, 0);
}

async function isFree(protocol: 'tcp' | 'udp', hostIp: string | undefined, port: number): Promise<boolean> {
  try {
    await bindProbe(protocol, hostIp, port);
    return true;
  } catch {
    return false;
  }
}

function bindProbe(protocol: 'tcp' | 'udp', hostIp: string | undefined, port: number): Promise<number> {
  const host = hostIp ?? '0.0.0.0';
  return new Promise((resolve, reject) => {
    if (protocol === 'udp') {
      const sock = createSocket(isIP(host) === 6 ? 'udp6' : 'udp4');
      sock.once('error', reject);
      sock.bind(port, host, () => {
        const got = sock.address().port;
        sock.close(() => resolve(got));
      });
      return;
    }
    const server = createServer();
    server.once('error', reject);
    server.listen({ port, host, exclusive: true }, () => {
      const got = (server.address() as AddressInfo).port;
      server.close(() => resolve(got));
    });
  });
}
