import { openStore } from './src/store/index.js';
const store = await openStore({ root: process.argv[2]! });
const lease = await store.createLease({ label: 'x' });
for (let i = 0; i < 10; i++) {
  let t = performance.now();
  await store.writeBlob(Buffer.from('x' + Math.random()), { lease });
  const a = performance.now() - t; t = performance.now();
  await store.writeBlob(Buffer.from('x' + Math.random()));
  const b = performance.now() - t; t = performance.now();
  await lease.add(`sha256:${'0'.repeat(63)}${i}` as any);
  const c = performance.now() - t;
  console.log(`with lease ${a.toFixed(1)}  no lease ${b.toFixed(1)}  lease.add ${c.toFixed(1)}`);
}
await lease.release();
