import cp from 'node:child_process';
import { readFileSync } from 'node:fs';
const orig = cp.spawn;
(cp as any).spawn = (file: string, args: string[], opts: any) => {
  if (file.endsWith('setpriv') && process.env.TRACE) return orig('strace', ['-f', '-tt', '-e', 'trace=execve,exit_group,mount,pivot_root,umount2,clone,clone3,unshare', '-o', process.env.TRACE, file, ...args], opts);
  return orig(file, args, opts);
};
(await import('node:module')).syncBuiltinESMExports();
const { openStore } = await import('./src/store/index.js');
const { memoryImage } = await import('./src/oci/layout/memory.js');
const { busyboxTar } = await import('./test/helpers/busybox.js');
const { runStep } = await import('./src/sandbox/run.js');
const store = await openStore({ root: process.argv[2]! });
await store.putImage(memoryImage({ layers: [{ blob: readFileSync(await busyboxTar()) }] }), { names: ['smoke:latest'] });
const lower = await store.lowerDirs(await store.resolve('smoke:latest'));
await runStep({ store, lower, command: ['/bin/true'] });
process.env.TRACE = '/tmp/ktrace.txt';
await runStep({ store, lower, command: ['/bin/true'] });
