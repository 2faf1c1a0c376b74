/**
 * `kiln ps`, `start`, `stop`, `kill`, `rm` and `logs`, worded as docker words them. These read and
 * signal containers from outside kiln's user namespace (the user owns it, so its processes may be
 * signalled from here); only removing a container's files enters the namespace, because its
 * read-write layer belongs to the user's subordinate ids.
 */
import { KilnError, UsageError } from '../../errors.js';
import { ContainerStore, isRunning, shortContainerId, type ContainerRecord } from '../../run/containers.js';
import { LogReader, tail, type LogEntry } from '../../run/logs.js';
import { tabwrite } from '../image/tabwriter.js';
import { createdSince, ellipsis, humanDuration } from '../image/units.js';

/** Runs `each` for every reference; failures are printed and the last one thrown, as docker does. */
async function forEachContainer(root: string, refs: string[], each: (rec: ContainerRecord, ref: string) => Promise<void>): Promise<void> {
  const containers = ContainerStore.open(root);
  const errors: KilnError[] = [];
  for (const ref of refs) {
    try {
      await each(await containers.find(ref), ref);
    } catch (err) {
      if (!(err instanceof KilnError)) throw err;
      errors.push(err);
    }
  }
  if (!errors.length) return;
  for (const err of errors.slice(0, -1)) process.stderr.write(`kiln: ${err.describe()}\n`);
  throw errors[errors.length - 1];
}

// ---------------------------------------------------------------------------- ps

export interface PsOptions {
  all?: boolean;
  quiet?: boolean;
  trunc?: boolean;
}

export function statusText(rec: ContainerRecord, now = Date.now()): string {
  const s = rec.state;
  if (s.status === 'running') return `Up ${humanDuration(now - Date.parse(s.startedAt ?? rec.created))}`;
  if (s.status === 'created') return 'Created';
  return `Exited (${s.exitCode ?? 0}) ${humanDuration(now - Date.parse(s.finishedAt ?? rec.created))} ago`;
}

function portsText(rec: ContainerRecord): string {
  if (!isRunning(rec)) return '';
  return (rec.state.ports ?? rec.hostConfig.publish).map((p) => `${p.hostIp ?? '0.0.0.0'}:${p.hostPort}->${p.containerPort}/${p.protocol}`).join(', ');
}

export async function runPs(root: string, options: PsOptions): Promise<void> {
  const all = await ContainerStore.open(root).list();
  const shown = options.all ? all : all.filter(isRunning);
  const trunc = options.trunc !== false;
  if (options.quiet) {
    process.stdout.write(shown.map((c) => `${trunc ? shortContainerId(c.id) : c.id}\n`).join(''));
    return;
  }
  const rows = ['CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES'];
  for (const c of shown) {
    const command = [c.config.path, ...c.config.args].join(' ');
    rows.push(
      [
        trunc ? shortContainerId(c.id) : c.id,
        c.image,
        `"${trunc ? ellipsis(command, 20) : command}"`,
        createdSince(new Date(c.created)),
        statusText(c),
        portsText(c),
        c.name,
      ].join('\t'),
    );
  }
  process.stdout.write(tabwrite(`${rows.join('\n')}\n`));
}

// ---------------------------------------------------------------------------- start / stop / kill / rm

export async function runStart(root: string, refs: string[], options: { attach?: boolean; interactive?: boolean }): Promise<number> {
  // -i attaches too (docker's start -i), input included.
  const attach = Boolean(options.attach || options.interactive);
  if (attach && refs.length > 1) throw new UsageError('you cannot start and attach multiple containers at once');
  const { openStoreForCommand } = await import('../store.js');
  const store = await openStoreForCommand(root, { namespace: true });
  const { startDetached } = await import('../../run/lifecycle.js');
  const containers = ContainerStore.open(root);
  let exitCode = 0;
  await forEachContainer(root, refs, async (rec, ref) => {
    if (!attach) {
      await startDetached(root, rec);
      process.stdout.write(`${ref}\n`);
      return;
    }
    const reader = new LogReader(containers.pathOf(rec.id, 'container.log'));
    reader.read();
    if (!isRunning(rec)) {
      // Attached, kiln is the monitor, as in a foreground run: input, terminal and signals reach it.
      const { runAttached } = await import('./run.js');
      const { ContainerAlreadyRunningError } = await import('../../run/containers.js');
      try {
        exitCode = await runAttached(store, rec, { interactive: Boolean(options.interactive) });
        return;
      } catch (err) {
        if (!(err instanceof ContainerAlreadyRunningError)) throw err;
      }
    }
    // Already running under its own monitor: its output from now on, until it exits.
    const after = await follow(root, rec.id, reader, { timestamps: false });
    exitCode = after?.state.exitCode ?? 0;
  });
  return exitCode;
}

export async function runStop(root: string, refs: string[], options: { time?: string; signal?: string }): Promise<void> {
  const { stopContainer, parseSignal } = await import('../../run/lifecycle.js');
  let timeout: number | undefined;
  if (options.time !== undefined) {
    timeout = Number(options.time);
    if (!Number.isInteger(timeout)) throw new UsageError(`invalid argument "${options.time}" for "-t, --time" flag: not an integer`);
  }
  if (options.signal !== undefined) parseSignal(options.signal);
  await forEachContainer(root, refs, async (rec, ref) => {
    const target = options.signal ? { ...rec, config: { ...rec.config, stopSignal: options.signal } } : rec;
    await stopContainer(root, target, timeout);
    process.stdout.write(`${ref}\n`);
  });
}

export async function runKill(root: string, refs: string[], options: { signal: string }): Promise<void> {
  const { signalContainer, parseSignal, waitForExit } = await import('../../run/lifecycle.js');
  const signal = parseSignal(options.signal);
  await forEachContainer(root, refs, async (rec, ref) => {
    signalContainer(rec, signal);
    // SIGKILL always ends it: report only once it has, so a following rm or ps sees it stopped.
    if (signal === 'SIGKILL') await waitForExit(root, rec.id, 30_000);
    process.stdout.write(`${ref}\n`);
  });
}

export async function runRm(root: string, refs: string[], options: { force?: boolean; volumes?: boolean }): Promise<void> {
  const { removeContainer, signalContainer, waitForExit } = await import('../../run/lifecycle.js');
  // Stop what -f removes while still outside kiln's user namespace (signals work from here),
  // then remove the files inside it.
  if (options.force) {
    const containers = ContainerStore.open(root);
    for (const ref of refs) {
      const rec = await containers.find(ref).catch(() => undefined);
      if (rec && isRunning(rec)) {
        signalContainer(rec, 'SIGKILL');
        await waitForExit(root, rec.id, 30_000);
      }
    }
  }
  const { openStoreForCommand } = await import('../store.js');
  await openStoreForCommand(root, { namespace: true });
  await forEachContainer(root, refs, async (rec, ref) => {
    await removeContainer(root, rec, options);
    process.stdout.write(`${ref}\n`);
  });
}

// ---------------------------------------------------------------------------- logs

export interface LogsOptions {
  follow?: boolean;
  tail?: string;
  timestamps?: boolean;
}

function writeEntries(entries: LogEntry[], timestamps: boolean): void {
  for (const e of entries) {
    const text = timestamps ? `${e.time} ${e.log}` : e.log;
    (e.stream === 'stderr' ? process.stderr : process.stdout).write(text);
  }
}

/** Prints new entries until the container stops running; answers its final record. */
async function follow(root: string, id: string, reader: LogReader, o: { timestamps: boolean }): Promise<ContainerRecord | undefined> {
  const containers = ContainerStore.open(root);
  for (;;) {
    const rec = await containers.read(id);
    writeEntries(reader.read(), o.timestamps);
    if (!rec || !isRunning(rec)) {
      // The monitor writes the exit after the last output: one more read catches anything in between.
      writeEntries(reader.read(), o.timestamps);
      return rec;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function runLogs(root: string, ref: string | undefined, options: LogsOptions): Promise<void> {
  if (!ref) throw new UsageError('"kiln logs" requires exactly 1 argument: a container name or ID (or --build)');
  let lines: number | undefined;
  if (options.tail !== undefined && options.tail !== 'all') {
    lines = Number(options.tail);
    if (!Number.isInteger(lines)) throw new UsageError(`invalid argument "${options.tail}" for "-n, --tail" flag`);
  }
  const containers = ContainerStore.open(root);
  const rec = await containers.find(ref);
  const reader = new LogReader(containers.pathOf(rec.id, 'container.log'));
  writeEntries(tail(reader.read(), lines), Boolean(options.timestamps));
  if (options.follow) await follow(root, rec.id, reader, { timestamps: Boolean(options.timestamps) });
}
