/**
 * The detached monitor of a container (see monitor.ts): `kiln container-monitor STORE ID` (a hidden
 * command), started by `kiln run -d` or `kiln start` in its own session. It reports `ok` (or `error
 * STATUS MESSAGE`) on fd 3 once the command runs or fails to, then supervises the container until
 * it exits.
 */
import { createWriteStream } from 'node:fs';
import { KilnError } from '../errors.js';
import { openStore } from '../store/index.js';
import { ContainerAlreadyRunningError, ContainerStore } from './containers.js';
import { superviseContainer } from './monitor.js';

export async function runMonitor(root: string, id: string): Promise<number> {
  const report = createWriteStream('', { fd: 3 });
  report.on('error', () => undefined);
  let reported = false;
  const say = (line: string) => {
    if (reported) return;
    reported = true;
    report.end(`${line}\n`);
  };
  try {
    if (!root || !id) throw new KilnError('USAGE', 'usage: monitor-main STORE ID');
    const { currentNamespace } = await import('../sandbox/userns.js');
    const squashed = currentNamespace()?.squashed;
    const store = squashed ? await openStore({ root, layerCodec: (await import('../sandbox/squash.js')).squashedLayerCodec() }) : await openStore({ root });
    const rec = await ContainerStore.open(root).read(id);
    if (!rec) throw new KilnError('CONTAINER_NOT_FOUND', `No such container: ${id}`);
    // The container's own stop signal is what ends it; the monitor outlives the terminal it came from.
    for (const sig of ['SIGHUP', 'SIGINT'] as const) process.on(sig, () => undefined);
    await superviseContainer(store, rec, { forwardSignals: false }, (err) => say(err ? `error ${err.exitCode} ${err.message}` : 'ok'));
    return 0;
  } catch (err) {
    // Another start won: the container runs, which is what was asked.
    if (err instanceof ContainerAlreadyRunningError) {
      say('ok');
      return 0;
    }
    const message = err instanceof KilnError ? err.describe() : String((err as Error)?.stack ?? err);
    say(`error ${err instanceof KilnError ? err.exitCode : 125} ${message.replace(/\n/g, ' ')}`);
    process.stderr.write(`${message}\n`);
    return 1;
  }
}

