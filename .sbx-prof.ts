import { readFileSync } from 'node:fs';
import { openStore } from './src/store/index.js';
import { memoryImage } from './src/oci/layout/memory.js';
import { busyboxTar } from './test/helpers/busybox.js';
import { runStep } from './src/sandbox/run.js';
const root = process.argv[2]!;
const store = await openStore({ root });
const tar = readFileSync(await busyboxTar());
await store.putImage(memoryImage({ layers: [{ blob: tar }] }), { names: ['smoke:latest'] });
const lower = await store.lowerDirs(await store.resolve('smoke:latest'));
for (let i = 0; i < 8; i++) {
  const t = Date.now();
  const ph: string[] = [];
  const r = await runStep({ store, lower, command: ['/bin/true'], onPhase: (p, ms) => ph.push(`${p}=${ms.toFixed(1)}`) });
  console.log(`run ${i}: ${Date.now() - t} ms`, ph.join(' '));
}
