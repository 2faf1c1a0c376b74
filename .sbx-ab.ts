import { readFileSync } from 'node:fs';
import { openStore } from './src/store/index.js';
import { memoryImage } from './src/oci/layout/memory.js';
import { busyboxTar } from './test/helpers/busybox.js';
import { runStep } from './src/sandbox/run.js';
const store = await openStore({ root: process.argv[2]! });
const tar = readFileSync(await busyboxTar());
await store.putImage(memoryImage({ layers: [{ blob: tar }] }), { names: ['smoke:latest'] });
const lower = await store.lowerDirs(await store.resolve('smoke:latest'));
const res: Record<string, number[]> = { A: [], B: [] };
for (let i = 0; i < 30; i++) for (const k of ['A', 'B']) {
  if (k === 'B') process.env.KILN_NO_PDEATH = '1'; else delete process.env.KILN_NO_PDEATH;
  let sb = 0;
  await runStep({ store, lower, command: ['/bin/true'], onPhase: (p, ms) => { if (p === 'sandbox') sb = ms; } });
  res[k]!.push(sb);
}
for (const [k, v] of Object.entries(res)) { v.sort((a, b) => a - b); console.log(k, 'median', v[15]!.toFixed(1), 'p10', v[3]!.toFixed(1)); }
