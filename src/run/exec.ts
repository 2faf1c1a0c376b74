/**
 * `kiln exec`: a new process in a running container. nsenter(1) joins the namespaces of the
 * container's PID 1 (its user namespace too when the container is rootless: the user who owns that
 * namespace may enter it), takes its root directory, and runs the same privilege drop as the
 * container's command, with kiln's tools that are mounted at /dev/.kiln inside every container:
 * setpriv (Docker's capabilities, the user), then env (a clean environment, the working directory).
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { KilnError } from '../errors.js';
import { isAlive } from '../store/owner.js';
import type { NamespaceInfo } from '../sandbox/userns.js';
import { isRunning, type ContainerRecord } from './containers.js';

export interface ExecOptions {
  env: string[];
  user?: string;
  workdir?: string;
  tty?: boolean;
  interactive?: boolean;
}

export interface ExecPlan {
  argv: string[];
  stdin: 'inherit' | 'ignore';
}

/** The command line that runs `command` inside the container. */
export async function planExec(storeRoot: string, rec: ContainerRecord, command: string[], o: ExecOptions): Promise<ExecPlan> {
  const pid = rec.state.pid;
  if (!isRunning(rec) || pid === undefined || !isAlive({ pid, start: rec.state.pidStart })) {
    throw new KilnError('CONTAINER_NOT_RUNNING', `container ${rec.id} is not running`, { hint: `kiln start ${rec.name}` });
  }
  const { resolveUser } = await import('../sandbox/users.js');
  const { buildEnv, checkUser, privilegeDropArgv } = await import('../sandbox/prepare.js');
  const { prepareToolsDir, findExecutable } = await import('../sandbox/tools.js');
  const { readIdMap, isIdentityMap, mappedCount } = await import('../sandbox/idmap.js');
  const { terminalArgv } = await import('../sandbox/container.js');

  const read = (path: string) => {
    try {
      return readFileSync(`/proc/${pid}/root${path}`, 'utf8');
    } catch {
      return undefined;
    }
  };
  const spec = o.user ?? rec.config.user;
  const user = resolveUser(spec, read('/etc/passwd'), read('/etc/group'));
  const uidMap = readIdMap('uid', pid);
  const gidMap = readIdMap('gid', pid);
  const rootless = !isIdentityMap(uidMap);
  const single = mappedCount(uidMap) <= 1;
  const ns: NamespaceInfo = { mode: rootless ? 'rootless' : 'root', mapping: rootless ? (single ? 'single' : 'full') : 'host', squashed: rootless && single, uidMap, gidMap };
  checkUser(user, ns, spec);
  const base = rec.config.env.filter((e) => !(o.user !== undefined && e.startsWith('HOME=')));
  if (o.tty && !base.some((e) => e.startsWith('TERM='))) base.push('TERM=xterm');
  const env = buildEnv([...base, ...o.env.filter((e) => e.includes('='))], user);
  const cwd = o.workdir ?? (rec.config.workingDir || '/');
  const tools = await prepareToolsDir(storeRoot);
  const nsenter = findExecutable('nsenter');
  if (!nsenter) throw new KilnError('TOOL_MISSING', 'nsenter is not installed; kiln exec needs it', { hint: 'apt-get install util-linux' });
  const inside = [...privilegeDropArgv(tools, user, ns), ...tools.argv('env'), '-i', `--chdir=${cwd}`, ...env, ...command];
  // Only the namespaces the container has of its own: a host-network container shares the host's
  // network namespace, which a rootless user may not enter (even as root of its user namespace).
  const differs = (ns: string) => readlinkSync(`/proc/self/ns/${ns}`) !== readlinkSync(`/proc/${pid}/ns/${ns}`);
  const join = [['user', '--user'], ['mnt', '--mount'], ['uts', '--uts'], ['ipc', '--ipc'], ['net', '--net'], ['pid', '--pid']].filter(([ns]) => differs(ns!)).map(([, flag]) => flag!);
  let argv = [nsenter, `--target=${pid}`, ...join, '--root', '--wd', '--', ...inside];
  if (o.tty) argv = terminalArgv(argv);
  return { argv, stdin: o.interactive ? 'inherit' : 'ignore' };
}
