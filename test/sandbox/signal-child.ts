/**
 * A kiln-like process for signals.test.ts: enters the namespace, runs one long step
 * (`sleep MARKER`) with SIGINT/SIGTERM wired to cancellation, and says what happened.
 *
 *   node --import tsx test/sandbox/signal-child.ts WORKDIR MARKER
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { memoryImage } from '../../src/oci/layout/memory.js';
import { openStore } from '../../src/store/index.js';
import { abortOnSignals, lowerDirsFor, runStep, squashedLayerCodec } from '../../src/sandbox/index.js';
import { ensureNamespace } from '../../src/sandbox/userns.js';
import { busyboxTar } from '../helpers/busybox.js';

const [work, marker] = process.argv.slice(2) as [string, string];
const ns = await ensureNamespace();
const store = await openStore({ root: join(work, 'store'), ...(ns.squashed ? { layerCodec: squashedLayerCodec() } : {}) });
const base = memoryImage({ layers: [{ blob: readFileSync(await busyboxTar()) }] });
await store.putImage(base, { names: ['signals/busybox:latest'] });
const lower = await lowerDirsFor(store, (await base.configFile()).rootfs.diff_ids);
const controller = new AbortController();
abortOnSignals(controller);
let said = false;
try {
  await runStep({
    store,
    lower,
    command: ['/bin/sh', '-c', `echo started; sleep ${marker} & sleep ${marker}; wait`],
    signal: controller.signal,
    stdout: (chunk) => {
      if (!said && chunk.toString().includes('started')) {
        said = true;
        process.stdout.write(`started ${process.pid}\n`);
      }
    },
  });
  process.stdout.write('finished\n');
} catch (err) {
  process.stdout.write(`${(err as { code?: string }).code ?? (err as Error).message}\n`);
  process.exitCode = 130;
}
