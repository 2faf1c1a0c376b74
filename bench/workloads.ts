/**
 * Data and build contexts the benches share, so their figures describe the same work: text-like
 * bytes, the many-file tree COPY'd whole (`bigcontext`), and three stages whose outputs one final
 * stage copies (`multistage`).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * `dirs` directories of 100 files each (200 make 20,000 files, about 300 MB), sizes log-uniform
 * between 256 B and 64 KiB with a 1.5 % tail up to 512 KiB, as bench/context.ts and bench/layer.ts;
 * `fill` writes a file's bytes (file `f` of directory `d`). The Dockerfile is `FROM`, `COPY . /app`.
 */
export function writeBigContext(dir: string, from: string, dirs: number, fill: (view: Buffer, d: number, f: number) => void): void {
  const buf = Buffer.allocUnsafe(512 * 1024);
  for (let d = 0; d < dirs; d++) {
    const sub = join(dir, `pkg${String(d).padStart(3, '0')}`, d % 2 ? 'lib' : 'share');
    mkdirSync(sub, { recursive: true });
    for (let f = 0; f < 100; f++) {
      const size = Math.floor(Math.random() < 0.985 ? 256 * 2 ** (Math.random() * 8) : 64 * 1024 * 2 ** (Math.random() * 3));
      const view = buf.subarray(0, size);
      fill(view, d, f);
      writeFileSync(join(sub, `file${f}.dat`), view);
    }
  }
  writeFileSync(join(dir, 'Dockerfile'), `${from}\nCOPY . /app\n`);
}

/** Three independent stages each writing `bytes` random bytes; the last stage COPY --from each. */
export function writeMultistage(dir: string, from: string, bytes: number): void {
  const stages = ['a', 'b', 'c'];
  const lines = stages.map((s) => `${from} AS ${s}\nRUN head -c ${bytes} /dev/urandom > /data-${s}\n`);
  lines.push(from, ...stages.map((s) => `COPY --from=${s} /data-${s} /${s}.bin`), '');
  writeFileSync(join(dir, 'Dockerfile'), lines.join('\n'));
}

/** Text-like bytes (words from a small vocabulary), compressible roughly 3:1 by gzip -6. */
export function textPool(size: number): Buffer {
  const words = Array.from({ length: 4096 }, (_, i) => `w${(i * 2654435761) % 1000003}`.slice(0, 3 + (i % 9)));
  const rnd = randomBytes(size / 4);
  const parts: string[] = [];
  let length = 0;
  for (let i = 0; length < size; i++) {
    const w = words[(rnd.readUInt16LE((i * 2) % (rnd.length - 2)) + i) % words.length]!;
    parts.push(w, i % 13 === 0 ? '\n' : ' ');
    length += w.length + 1;
  }
  return Buffer.from(parts.join('')).subarray(0, size);
}
