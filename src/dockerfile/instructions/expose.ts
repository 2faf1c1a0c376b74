/**
 * EXPOSE port specs → exposed-port keys (`80/tcp`), as BuildKit's dockerfile2llb reads them:
 * `[ip:][hostPort:]containerPort[/proto]`, ranges allowed; only the container side is kept.
 */
import { createRequire } from 'node:module';
import { goQuote, goToLower } from '../parser/gostr.js';

export class PortSpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PortSpecError';
  }
}

export interface PortSpecNotes {
  /** The protocol was not lower case (BuildKit's ExposeProtoCasing check). */
  protoCasing: boolean;
  /** An IP or host port was given (BuildKit's ExposeInvalidFormat check). */
  hostPart: boolean;
}

function splitParts(raw: string): [string, string, string] {
  const parts = raw.split(':');
  switch (parts.length) {
    case 1:
      return ['', '', parts[0]!];
    case 2:
      return ['', parts[0]!, parts[1]!];
    case 3:
      return [parts[0]!, parts[1]!, parts[2]!];
    default: {
      const n = parts.length;
      return [parts.slice(0, n - 2).join(':'), parts[n - 2]!, parts[n - 1]!];
    }
  }
}

function splitProtoPort(raw: string): [string, string] {
  const slash = raw.indexOf('/');
  const port = slash < 0 ? raw : raw.slice(0, slash);
  const proto = slash < 0 ? '' : raw.slice(slash + 1);
  if (port === '') throw new PortSpecError('no port specified');
  switch (goToLower(proto)) {
    case '':
      return ['tcp', port];
    case 'tcp': case 'udp': case 'sctp':
      return [proto, port];
    default:
      throw new PortSpecError('invalid proto: ' + proto);
  }
}

/** Go strconv.ParseInt(s, 10, 0) then the 0–65535 check; undefined when invalid. */
function parsePortNumber(raw: string): number | undefined {
  if (!/^[+-]?[0-9]+$/.test(raw)) return undefined;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < 0 || v > 65535) return undefined;
  return v;
}

function parsePortRange(ports: string): [number, number] | undefined {
  if (ports === '') return undefined;
  const dash = ports.indexOf('-');
  const start = dash < 0 ? ports : ports.slice(0, dash);
  const end = dash < 0 ? '' : ports.slice(dash + 1);
  const s = parsePortNumber(start);
  if (s === undefined) return undefined;
  if (dash < 0 || start === end) return [s, s];
  const e = parsePortNumber(end);
  if (e === undefined || e < s) return undefined;
  return [s, e];
}

/** Go net.SplitHostPort, returning the host or an error text. */
function splitHostPort(hostport: string): { host: string } | { error: string } {
  const fail = (why: string) => ({ error: `address ${hostport}: ${why}` });
  const i = hostport.lastIndexOf(':');
  if (i < 0) return fail('missing port in address');
  let host: string;
  let j = 0;
  let k = 0;
  if (hostport[0] === '[') {
    const end = hostport.indexOf(']');
    if (end < 0) return fail("missing ']' in address");
    if (end + 1 === hostport.length) return fail('missing port in address');
    if (end + 1 !== i) return fail(hostport[end + 1] === ':' ? 'too many colons in address' : 'missing port in address');
    host = hostport.slice(1, end);
    j = 1;
    k = end + 1;
  } else {
    host = hostport.slice(0, i);
    if (host.includes(':')) return fail('too many colons in address');
  }
  if (hostport.slice(j).includes('[')) return fail("unexpected '[' in address");
  if (hostport.slice(k).includes(']')) return fail("unexpected ']' in address");
  return { host };
}

/** Go net.ParseIP: dotted IPv4 or IPv6 text, no zone. */
function isGoIP(s: string): boolean {
  // node:net loads only here: few Dockerfiles name an address, and every build parses EXPOSE.
  const { isIP } = createRequire(import.meta.url)('node:net') as typeof import('node:net');
  return !s.includes('%') && isIP(s) !== 0;
}

/** One spec → its port keys, e.g. `8000-8001/udp` → [`8000/udp`, `8001/udp`]. */
export function parsePortSpec(rawPort: string, notes?: PortSpecNotes): string[] {
  let [ip, hostPort, containerPort] = splitParts(rawPort);
  let proto: string;
  try {
    [proto, containerPort] = splitProtoPort(containerPort);
  } catch (err) {
    throw new PortSpecError(`invalid port: ${goQuote(rawPort)}: ${(err as Error).message}`);
  }
  if (notes) {
    if (proto !== goToLower(proto)) notes.protoCasing = true;
    if (ip !== '' || hostPort !== '') notes.hostPart = true;
  }
  if (ip !== '' && ip[0] === '[') {
    const r = splitHostPort(ip + ':');
    if ('error' in r) throw new PortSpecError(`invalid IP address ${ip}: ${r.error}`);
    ip = r.host;
  }
  if (ip !== '' && !isGoIP(ip)) throw new PortSpecError('invalid IP address: ' + ip);
  const range = parsePortRange(containerPort);
  if (!range) throw new PortSpecError('invalid containerPort: ' + containerPort);
  const [start, end] = range;
  if (hostPort !== '') {
    const hostRange = parsePortRange(hostPort);
    if (!hostRange) throw new PortSpecError('invalid hostPort: ' + hostPort);
    // A host range only has to match when the container side is a range too.
    if (end - start !== hostRange[1] - hostRange[0] && end !== start) {
      throw new PortSpecError(
        `invalid ranges specified for container and host Ports: ${containerPort} and ${hostPort}`,
      );
    }
  }
  const out: string[] = [];
  const p = goToLower(proto);
  for (let n = start; n <= end; n++) out.push(`${n}/${p}`);
  return out;
}

/** Every spec of an EXPOSE (after expansion) → port keys, in order. */
export function parsePortSpecs(ports: readonly string[], notes?: PortSpecNotes): string[] {
  const out: string[] = [];
  for (const p of ports) out.push(...parsePortSpec(p, notes));
  return out;
}
