import { readFileSync } from 'node:fs';
import { openStore } from './src/store/index.js';
import { memoryImage } from './src/oci/layout/memory.js';
import { busyboxTar } from './test/helpers/busybox.js';
import { runStep } from './src/sandbox/run.js';
import { ensureNamespace } from './src/sandbox/userns.js';

const ns = await ensureNamespace();
console.error('ns', ns.mode, ns.mapping);
const root = process.argv[2]!;
const store = await openStore({ root });
const tar = readFileSync(await busyboxTar());
const image = memoryImage({ layers: [{ blob: tar }] });
await store.putImage(image, { names: ['smoke:latest'] });
const img = await store.resolve('smoke:latest');
const lower = await store.lowerDirs(img);
const cmd = process.argv[3] ?? 'id; hostname; ls -la /dev; cat /proc/self/status | grep Cap; echo hi > /x; rm /bin/ls; ls /; cat /etc/resolv.conf | head -2; pwd';
for (let i = 0; i < 3; i++) {
  const t = Date.now();
  try {
    const r = await runStep({ store, lower, command: ['/bin/sh', '-c', cmd], stdout: i === 0 ? process.stdout : undefined, stderr: process.stderr, cwd: '/work/dir' });
    console.error(`run ${i}: ${Date.now() - t} ms`, r.diffID, r.empty, r.snapshotter, r.warnings);
  } catch (e) { console.error('ERR', e); }
}
