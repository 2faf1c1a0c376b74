/** `-p` and `--network` values as docker reads them, and the refusals a user meets for bad ones. */
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { formatPortMapping, parseNetworkMode, parsePublish } from '../../src/sandbox/network.js';
import { resolveHostPorts } from '../../src/sandbox/network/ports.js';
import { createServer, type AddressInfo } from 'node:net';

describe('parsePublish', () => {
  it('reads every docker form', () => {
    expect(parsePublish('80')).toEqual([{ hostPort: 0, containerPort: 80, protocol: 'tcp' }]);
    expect(parsePublish('8080:80')).toEqual([{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }]);
    expect(parsePublish('127.0.0.1:8080:80')).toEqual([{ hostIp: '127.0.0.1', hostPort: 8080, containerPort: 80, protocol: 'tcp' }]);
    expect(parsePublish('127.0.0.1::80')).toEqual([{ hostIp: '127.0.0.1', hostPort: 0, containerPort: 80, protocol: 'tcp' }]);
    expect(parsePublish('5353:53/udp')).toEqual([{ hostPort: 5353, containerPort: 53, protocol: 'udp' }]);
    expect(parsePublish('53/UDP')).toEqual([{ hostPort: 0, containerPort: 53, protocol: 'udp' }]);
    expect(parsePublish('80/')).toEqual([{ hostPort: 0, containerPort: 80, protocol: 'tcp' }]);
    expect(parsePublish('[::1]:8080:80')).toEqual([{ hostIp: '::1', hostPort: 8080, containerPort: 80, protocol: 'tcp' }]);
  });

  it('pairs equal ranges port by port, and makes a host range a choice for a single container port', () => {
    expect(parsePublish('8000-8002:9000-9002')).toEqual([
      { hostPort: 8000, containerPort: 9000, protocol: 'tcp' },
      { hostPort: 8001, containerPort: 9001, protocol: 'tcp' },
      { hostPort: 8002, containerPort: 9002, protocol: 'tcp' },
    ]);
    expect(parsePublish('7000-7001')).toEqual([
      { hostPort: 0, containerPort: 7000, protocol: 'tcp' },
      { hostPort: 0, containerPort: 7001, protocol: 'tcp' },
    ]);
    expect(parsePublish('8000-8010:80')).toEqual([{ hostPort: 8000, hostPortEnd: 8010, containerPort: 80, protocol: 'tcp' }]);
  });

  it.each([
    ['', 'no port specified: <empty>'],
    ['8080:', 'no port specified: 8080:<empty>'],
    ['abc', 'invalid containerPort: abc'],
    ['0', 'invalid containerPort: 0'],
    ['70000', 'invalid containerPort: 70000'],
    ['x:80', 'invalid hostPort: x'],
    ['80-70:80', 'invalid hostPort: 80-70'],
    ['8000-8001:80-82', 'invalid ranges specified for container and host Ports: 80-82 and 8000-8001'],
    ['80/icmp', 'invalid proto: icmp'],
    ['80/sctp', 'not sctp'],
    ['300.1.1.1:80:80', 'invalid IP address: 300.1.1.1'],
    ['localhost:80:80', 'invalid IP address: localhost'],
  ])('refuses %j', (spec, message) => {
    expect(() => parsePublish(spec)).toThrow(UsageError);
    expect(() => parsePublish(spec)).toThrow(message);
  });

  it('formats a mapping as docker ps shows it', () => {
    expect(formatPortMapping({ hostPort: 8080, containerPort: 80, protocol: 'tcp' })).toBe('0.0.0.0:8080->80/tcp');
    expect(formatPortMapping({ hostIp: '::1', hostPort: 53, containerPort: 53, protocol: 'udp' })).toBe('[::1]:53->53/udp');
  });
});

describe('resolveHostPorts', () => {
  it('picks a free port for port 0, skips a busy port of a range, and refuses a port given twice', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as AddressInfo).port;
    try {
      const [any] = await resolveHostPorts([{ hostIp: '127.0.0.1', hostPort: 0, containerPort: 80, protocol: 'tcp' }]);
      expect(any!.hostPort).toBeGreaterThan(0);
      expect(any!.hostPort).not.toBe(port);
      const [ranged] = await resolveHostPorts([{ hostIp: '127.0.0.1', hostPort: port, hostPortEnd: port + 1, containerPort: 80, protocol: 'tcp' }]);
      expect(ranged).toEqual({ hostIp: '127.0.0.1', hostPort: port + 1, containerPort: 80, protocol: 'tcp' });
      await expect(
        resolveHostPorts([
          { hostPort: 18080, containerPort: 80, protocol: 'tcp' },
          { hostPort: 18080, containerPort: 81, protocol: 'tcp' },
        ]),
      ).rejects.toThrow('host port 18080/tcp is published twice');
      // The same port number for tcp and udp is two different mappings.
      expect(
        await resolveHostPorts([
          { hostPort: 18080, containerPort: 80, protocol: 'tcp' },
          { hostPort: 18080, containerPort: 80, protocol: 'udp' },
        ]),
      ).toHaveLength(2);
    } finally {
      busy.close();
    }
  });
});

describe('parseNetworkMode', () => {
  it('maps docker names onto host, none and private', () => {
    expect(parseNetworkMode(undefined)).toBeUndefined();
    expect(parseNetworkMode('host')).toBe('host');
    expect(parseNetworkMode('none')).toBe('none');
    expect(parseNetworkMode('bridge')).toBe('private');
    expect(parseNetworkMode('default')).toBe('private');
    expect(parseNetworkMode('private')).toBe('private');
  });

  it('refuses networks kiln does not have', () => {
    expect(() => parseNetworkMode('mynet')).toThrow('network mynet not found');
    expect(() => parseNetworkMode('container:web')).toThrow("sharing another container's network is not supported");
    expect(() => parseNetworkMode('')).toThrow(UsageError);
  });
});
