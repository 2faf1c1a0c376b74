/**
 * Build cache export and import through a registry (`--cache-to type=registry,mode=max` /
 * `--cache-from`), on the real docker-registry on loopback with an in-process proxy in front that
 * counts the bytes each way. Two workloads, each FROM the busybox test base:
 *
 *   bigcontext  20,000 files, ~300 MB (as bench/build.ts), COPY . /app
 *   multistage  three independent stages each writing 50 MB of random bytes; the last stage COPY --from each
 *
 * Per workload, with same-run baselines:
 *   cold build               a fresh store, no cache flags (what the export adds to)
 *   cold build + export      a fresh store, --cache-to mode=max: time and bytes uploaded
 *   no-op build + export     the same store again: an incremental export sends ~nothing
 *   skopeo copy (push)       the built image from the store to the registry, gzip (--dest-compress)
 *   warm rebuild (import)    an empty store (base only), --cache-from: time, bytes downloaded, steps cached
 *   skopeo copy (pull)       the image from the registry into an empty OCI dir: the least a rebuild
 *                            that must end with the image in its store can download
 *
 * BuildKit is not installed on these machines, so there is no BuildKit column. Options: --small
 * (bigcontext 5,000 files, multistage 3 x 10 MB), --only=NAME, --keep, --dir=PATH.
 */
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadBusybox } from '../test/helpers/busybox.js';
import { requireDebianPackage, startFaultProxy, startRegistry } from '../test/helpers/registry/index.js';
import { writeBigContext, writeMultistage } from './workloads.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const KILN = join(REPO, 'bin/kiln.js');
const BASE = 'kiln-test/busybox:latest';

interface Workload {
  name: string;
  make(dir: string): void;
}

function workloads(small: boolean): Workload[] {
  const from = `FROM ${BASE}`;
  return [
    {
      name: 'bigcontext',
      make(dir) {
        const text = Buffer.from('lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor\n'.repeat(8000));
        writeBigContext(dir, from, small ? 50 : 200, (view, d, f) => {
          // A quarter random, the rest text: compresses about as real trees do.
          const cut = view.length >> 2;
          randomFillSync(view, 0, cut);
          text.copy(view, cut, (d * 7919 + f * 104729) % 4096, ((d * 7919 + f * 104729) % 4096) + view.length - cut);
        });
      },
    },
    {
      name: 'multistage',
      make(dir) {
        writeMultistage(dir, from, (small ? 10 : 50) * 1_000_000);
      },
    },
  ];
}

function run(argv: string[]): Promise<{ seconds: number; stdout: string; stderr: string }> {
  const start = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (status) => {
      if (status !== 0) reject(new Error(`${argv.join(' ')} failed (${status}): ${stderr.trim().slice(-2000)}`));
      else resolve({ seconds: Number(process.hrtime.bigint() - start) / 1e9, stdout, stderr });
    });
  });
}

function kiln(store: string, args: string[]) {
  return run([process.execPath, KILN, '--root', store, ...args]);
}

function layoutName(root: string, tag: string): string {
  const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')) as { manifests: Array<{ annotations?: Record<string, string> }> };
  for (const m of index.manifests) {
    const name = m.annotations?.['org.opencontainers.image.ref.name'];
    if (name && name.endsWith(`/${tag}`)) return name;
  }
  throw new Error(`${tag} is not in ${root}/index.json`);
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
const s = (n: number) => `${n.toFixed(2)} s`;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const small = args.includes('--small');
  const only = opt('only')?.split(',');
  requireDebianPackage('skopeo', 'skopeo');
  const top = mkdtempSync(join(opt('dir') ?? tmpdir(), 'kiln-bench-cache-'));
  const reg = await startRegistry({ mode: 'none', logLevel: 'error' });
  const proxy = await startFaultProxy(reg.url);
  const rows: string[][] = [];
  const fresh = async (name: string) => {
    const root = join(top, name);
    await loadBusybox(root);
    return root;
  };
  try {
    for (const w of workloads(small).filter((x) => !only || only.includes(x.name))) {
      const ctx = join(top, `${w.name}-ctx`);
      mkdirSync(ctx, { recursive: true });
      w.make(ctx);
      await run(['bash', '-c', 'tar -C "$1" -cf - . >/dev/null', 'warm', ctx]);
      const ref = `${proxy.host}/bench/${w.name}:cache`;
      const traffic = async <T>(fn: () => Promise<T>) => {
        const [up, down] = [proxy.stats.bytesToServer, proxy.stats.bytesToClient];
        const out = await fn();
        return { out, up: proxy.stats.bytesToServer - up, down: proxy.stats.bytesToClient - down };
      };

      const plain = await kiln(await fresh(`${w.name}-plain`), ['build', '-q', '-t', `${w.name}:1`, ctx]);
      const storeA = await fresh(`${w.name}-a`);
      const exp = await traffic(() => kiln(storeA, ['build', '-q', '-t', `${w.name}:1`, '--cache-to', `type=registry,ref=${ref},mode=max`, ctx]));
      const again = await traffic(() => kiln(storeA, ['build', '-q', '-t', `${w.name}:1`, '--cache-to', `type=registry,ref=${ref},mode=max`, ctx]));
      const name = layoutName(storeA, `${w.name}:1`);
      const push = await traffic(() =>
        run(['skopeo', 'copy', '-q', '--dest-tls-verify=false', '--dest-compress', '--dest-compress-format', 'gzip', `oci:${storeA}:${name}`, `docker://${proxy.host}/bench/${w.name}-skopeo:1`]),
      );
      const storeB = await fresh(`${w.name}-b`);
      const imp = await traffic(() => kiln(storeB, ['build', '--progress', 'plain', '-t', `${w.name}:1`, '--cache-from', ref, ctx]));
      const cached = /(\d+)\/(\d+) steps cached/.exec(imp.out.stderr)?.slice(1, 3).join('/') ?? '?';
      const pullDir = join(top, `${w.name}-pull`);
      const pull = await traffic(() => run(['skopeo', 'copy', '-q', '--src-tls-verify=false', `docker://${proxy.host}/bench/${w.name}-skopeo:1`, `oci:${pullDir}:x`]));
      rows.push(
        [w.name, 'cold build (no cache flags)', s(plain.seconds), '', ''],
        [w.name, 'cold build + export mode=max', s(exp.out.seconds), mb(exp.up), `export adds ${s(exp.out.seconds - plain.seconds)}`],
        [w.name, 'no-op build + export', s(again.out.seconds), mb(again.up), ''],
        [w.name, 'skopeo copy store -> registry (gzip)', s(push.out.seconds), mb(push.up), 'baseline: the image alone'],
        [w.name, 'warm rebuild, empty store, --cache-from', s(imp.out.seconds), mb(imp.down), `${cached} steps cached; ${(plain.seconds / imp.out.seconds).toFixed(1)}x faster than cold`],
        [w.name, 'skopeo copy registry -> empty dir', s(pull.out.seconds), mb(pull.down), 'baseline: the image alone'],
      );
      if (!args.includes('--keep')) for (const d of [`${w.name}-plain`, `${w.name}-a`, `${w.name}-b`, `${w.name}-pull`, `${w.name}-ctx`]) rmSync(join(top, d), { recursive: true, force: true });
    }
  } finally {
    await proxy.stop();
    await reg.stop();
    if (args.includes('--keep')) console.error(`kept ${top}`);
    else rmSync(top, { recursive: true, force: true });
  }
  const head = ['workload', 'scenario', 'time', 'bytes', 'note'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  console.log(line(head));
  for (const r of rows) console.log(line(r));
}

void main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
