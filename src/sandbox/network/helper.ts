/**
 * The process that gives a container's network namespace its way out: pasta or slirp4netns, under a
 * small shell that owns its lifetime. The shell leads its own process group and session, so
 * stopping it (close(), or the end of the container) stops the tool with it, and a terminal's
 * Ctrl-C aimed at kiln does not cut the network from under a container that is still shutting down.
 *
 * Stopping waits for the tool itself to be gone (not just signalled), so once close() resolves the
 * container's eth0 and the published host ports are gone too.
 *
 * How it ends by itself: `tail --pid` (coreutils; a poll every second, no process per poll) waits
 * for the container's process; when that is gone, the shell kills its group and removes its run
 * directory. So a detached container's network lives exactly as long as the container, whether or
 * not the kiln that started it is still there.
 *
 * File descriptors the shell receives: 3 is the target's network namespace, opened by kiln (pasta
 * drops its capabilities before it opens the namespace, and the kernel then refuses it
 * /proc/PID/ns/net of a process with more capabilities than it keeps; a descriptor it inherits is
 * reached through /proc/self/fd instead, which needs no such check); 4 is the channel back to kiln,
 * on which the shell (or slirp4netns' --ready-fd) says "ready", or the tool's exit status when it
 * failed to start.
 */
export type NetworkTool = 'pasta' | 'slirp4netns';

/** The fixed addressing every private network gets, whichever tool provides it (slirp4netns' defaults). */
export const PRIVATE_NET = {
  interface: 'eth0',
  address: '10.0.2.100',
  prefixLength: 24,
  gateway: '10.0.2.2',
  dns: '10.0.2.3',
  mtu: 65520,
} as const;

/** Arguments: target pid, run directory, tool name, then the tool's argv. */
export const SUPERVISOR_SCRIPT = `target=$1 dir=$2 kind=$3
shift 3
finish() {
  trap '' TERM INT HUP
  rm -rf "$dir"
  kill -TERM 0 2>/dev/null
  wait
  exit 0
}
trap finish TERM INT HUP
(
  "$@" &
  pid=$!
  trap 'kill "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM
  wait "$pid"
  echo "exited $?" >&4
) &
tool=$!
exec 3<&-
if [ "$kind" = pasta ]; then
  while [ ! -s "$dir/pasta.pid" ] && kill -0 "$tool" 2>/dev/null; do sleep 0.02; done
  [ -s "$dir/pasta.pid" ] && echo ready >&4
fi
exec 4>&-
tail --pid="$target" -s 1 -f /dev/null &
wait $!
finish
`;

export interface ToolArgvOptions {
  executable: string;
  /** The run directory: pid file, API socket, log. */
  dir: string;
  publish: Array<{ hostIp?: string; hostPort: number; containerPort: number; protocol: 'tcp' | 'udp' }>;
}

/**
 * pasta: joins the namespace through fd 3 without touching its user namespace (kiln has the
 * capabilities it needs over it already), configures eth0 itself (`--config-net`), forwards
 * published ports natively, answers DNS on the fixed address and relays it to the host's resolver.
 * `--no-map-gw` keeps the host's loopback services out of the container's reach, as docker's
 * bridge does. Run as root it would switch to `nobody`, which then cannot open the tun device:
 * `--runas` keeps the current ids.
 */
export function pastaArgv(o: ToolArgvOptions): string[] {
  const spec = (proto: 'tcp' | 'udp') =>
    o.publish.filter((p) => p.protocol === proto).map((p) => `${p.hostIp ? `${p.hostIp}/` : ''}${p.hostPort}:${p.containerPort}`);
  const tcp = spec('tcp');
  const udp = spec('udp');
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  return [
    o.executable,
    '--foreground',
    '--quiet',
    '--runas',
    `${uid}:${gid}`,
    '--ipv4-only',
    '--config-net',
    '--ns-ifname',
    PRIVATE_NET.interface,
    '--address',
    PRIVATE_NET.address,
    '--netmask',
    String(PRIVATE_NET.prefixLength),
    '--gateway',
    PRIVATE_NET.gateway,
    '--mtu',
    String(PRIVATE_NET.mtu),
    '--no-map-gw',
    '--dns-forward',
    PRIVATE_NET.dns,
    ...(tcp.length ? tcp.flatMap((s) => ['--tcp-ports', s]) : ['--tcp-ports', 'none']),
    ...(udp.length ? udp.flatMap((s) => ['--udp-ports', s]) : ['--udp-ports', 'none']),
    '--tcp-ns',
    'none',
    '--udp-ns',
    'none',
    '--pid',
    `${o.dir}/pasta.pid`,
    '--netns',
    '/proc/self/fd/3',
    '--netns-only',
  ];
}

/**
 * slirp4netns: the namespace by path (fd 3), readiness on fd 4, published ports through its API
 * socket afterwards. Its defaults are the fixed addressing (10.0.2.100, gateway .2, DNS .3).
 */
export function slirp4netnsArgv(o: ToolArgvOptions): string[] {
  return [
    o.executable,
    '--configure',
    `--mtu=${PRIVATE_NET.mtu}`,
    '--disable-host-loopback',
    '--ready-fd=4',
    `--api-socket=${o.dir}/api.sock`,
    '--netns-type=path',
    '/proc/self/fd/3',
    PRIVATE_NET.interface,
  ];
}
