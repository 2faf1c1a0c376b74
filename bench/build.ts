/**
 * `kiln build` end to end: the `kiln` command as installed (`bin/kiln --root STORE build -q ...`) on five
 * workloads, each FROM the busybox test base (`kiln-test/busybox:latest`, imported into every fresh
 * store), against `cp -a CONTEXT` and `tar -c CONTEXT | pigz -6 > /dev/null` measured in the same run,
 * and against the BuildKit 0.8 / Buildah 1.28 figures the issue gives for these machines.
 * Run with `npm run bench -- build` (not a test; Ctrl-C cleans up under it, not always under npx tsx).
 *
 * Workloads (contexts generated in a temp dir):
 *   hello       two COPY and two RUN steps over a tiny context
 *   multistage  three independent stages each writing 50 MB of random bytes; the last stage COPY --from each
 *   bigcontext  20,000 files, ~300 MB (sizes as in bench/context.ts, mixed random and text bytes), COPY . /app
 *   manyruns    40 trivial RUN steps
 *   bigfile     one 1 GiB file (a quarter random, the rest text-like), COPY big /big
 *
 * For each: a cold build (a fresh store holding only the base), a no-op rebuild in that store, and,
 * for workloads whose Dockerfile reads context files, a rebuild after one file changed (hello: a
 * config file rewritten; bigcontext: one small file appended to; bigfile: 16 bytes overwritten in
 * the middle of the big file). Wall time is measured around the process; peak RSS comes from
 * `/usr/bin/time -f %M` around it (the largest RSS of kiln or any one process it waited for, not a
 * sum). The context is in the page cache before every measurement. Medians of RUNS (default 3) are
 * reported, peak RSS is the largest seen; cold builds of bigcontext and bigfile run --cold-big times
 * (default 1), since they are the slowest part of the bench; their later runs rebuild in the first
 * run's store.
 *
 * CPU time (user + system, kiln and the processes it waited for) is reported beside wall time:
 * on a shared, loaded machine it moves much less than wall time does.
 *
 * Options: --runs=N, --cold-big=N, --only=NAME[,NAME...], --small (bigfile 256 MiB, bigcontext
 * 5,000 files, for a quick look), --keep (leave the temp dir), --dir=PATH (where to put it),
 * --kiln=PATH (another checkout's bin/kiln, or a bin/kiln.js run with node, to compare two versions
 * in the same conditions).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadBusybox } from '../test/helpers/busybox.js';
import { textPool, writeBigContext, writeMultistage } from './workloads.js';

const MiB = 1024 * 1024;
const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
let KILN = join(REPO, 'bin/kiln');
const TIME = '/usr/bin/time';
const BASE = 'kiln-test/busybox:latest';

type Scenario = 'cold' | 'no-op' | 'one file changed';

/** BuildKit 0.8 / Buildah 1.28 on these machines, in seconds, as given in the issue. */
const REFERENCE: Record<string, Partial<Record<Scenario, [number, number]>>> = {
  hello: { 'no-op': [0.11, 0.53] },
  bigcontext: { cold: [18.2, 30.5], 'no-op': [0.64, 17.3], 'one file changed': [7.7, 20.9] },
  manyruns: { cold: [3.5, 15.1] },
  bigfile: { cold: [14.3, 23.2] },
};

interface Workload {
  name: string;
  /** Writes the context (Dockerfile included) into `dir`. */
  make(dir: string): void;
  /** Changes one file the build reads; absent when the Dockerfile reads no context files. */
  change?(dir: string, run: number): void;
  /** Whether the context holds data worth a cp -a / tar | pigz baseline. */
  baseline: boolean;
  big: boolean;
}

// -- data ---------------------------------------------------------------------------------------


let pool: Buffer | undefined;
/** A quarter random bytes, three quarters text from the pool at random offsets. */
function fillMixed(buf: Buffer): void {
  pool ??= textPool(16 * MiB);
  const cut = Math.floor(buf.length / 4);
  randomFillSync(buf, 0, cut);
  for (let off = cut; off < buf.length; ) {
    const start = Math.floor(Math.random() * (pool.length - 64 * 1024));
    const n = Math.min(buf.length - off, 64 * 1024);
    pool.copy(buf, off, start, start + n);
    off += n;
  }
}

function workloads(small: boolean): Workload[] {
  const from = `FROM ${BASE}`;
  return [
    {
      name: 'hello',
      baseline: true,
      big: false,
      make(dir) {
        mkdirSync(join(dir, 'conf'), { recursive: true });
        writeFileSync(join(dir, 'app.sh'), '#!/bin/sh\necho "hello from kiln"\ncat /etc/hello/hello.conf\n');
        writeFileSync(join(dir, 'conf/hello.conf'), 'greeting=hello\n');
        writeFileSync(
          join(dir, 'Dockerfile'),
          [
            from,
            'COPY app.sh /app/app.sh',
            'COPY conf /etc/hello/',
            'RUN chmod +x /app/app.sh && /app/app.sh > /app/out.txt',
            'RUN echo built > /app/stamp',
            '',
          ].join('\n'),
        );
      },
      change(dir, run) {
        writeFileSync(join(dir, 'conf/hello.conf'), `greeting=hello ${run} ${Date.now()}\n`);
      },
    },
    {
      name: 'multistage',
      baseline: false,
      big: false,
      make(dir) {
        writeMultistage(dir, from, 50_000_000);
      },
    },
    {
      name: 'bigcontext',
      baseline: true,
      big: true,
      make(dir) {
        writeBigContext(dir, from, small ? 50 : 200, fillMixed);
      },
      change(dir, run) {
        const fd = openSync(join(dir, 'pkg010/share/file7.dat'), 'a');
        writeSync(fd, `changed ${run} ${Date.now()}\n`);
        closeSync(fd);
      },
    },
    {
      name: 'manyruns',
      baseline: false,
      big: false,
      make(dir) {
        const lines = [from, ...Array.from({ length: 40 }, (_, i) => `RUN echo step ${i} > /step${i}`), ''];
        writeFileSync(join(dir, 'Dockerfile'), lines.join('\n'));
      },
    },
    {
      name: 'bigfile',
      baseline: true,
      big: true,
      make(dir) {
        const fd = openSync(join(dir, 'big'), 'w');
        const block = Buffer.alloc(4 * MiB);
        for (let i = 0; i < (small ? 64 : 256); i++) {
          fillMixed(block);
          writeSync(fd, block);
        }
        closeSync(fd);
        writeFileSync(join(dir, 'Dockerfile'), `${from}\nCOPY big /big\n`);
      },
      change(dir, run) {
        const fd = openSync(join(dir, 'big'), 'r+');
        writeSync(fd, Buffer.from(`run ${run} ${Date.now()}`.padEnd(16).slice(0, 16)), 0, 16, (small ? 128 : 512) * MiB);
        closeSync(fd);
      },
    },
  ];
}

// -- measuring ----------------------------------------------------------------------------------

interface Sample {
  seconds: number;
  /** User + system CPU seconds. */
  cpu: number;
  rssMiB: number;
}

/** Runs argv under /usr/bin/time; throws on failure. */
function timed(argv: string[], timeFile: string): Sample {
  const start = process.hrtime.bigint();
  const r = spawnSync(TIME, ['-f', '%M %U %S', '-o', timeFile, ...argv], { cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr.trim().slice(-2000)}`);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const [rss, user, sys] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  return { seconds, cpu: user! + sys!, rssMiB: rss! / 1024 };
}

function build(store: string, ctx: string, tag: string, timeFile: string): Sample {
  return timed([...(KILN.endsWith('.js') ? [process.execPath] : []), KILN, '--root', store, 'build', '-q', '-t', tag, ctx], timeFile);
}

function warm(dir: string): void {
  spawnSync('bash', ['-c', 'tar -C "$1" -cf - . >/dev/null', 'warm', dir]);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function ensureTools(): void {
  if (spawnSync('pigz', ['--version']).status !== 0) {
    console.error('pigz is missing: installing it with apt-get');
    execFileSync('apt-get', ['install', '-y', '-q', 'pigz'], { stdio: 'inherit' });
  }
  if (spawnSync(TIME, ['true']).status !== 0) {
    console.error('/usr/bin/time is missing: installing it with apt-get');
    execFileSync('apt-get', ['install', '-y', '-q', 'time'], { stdio: 'inherit' });
  }
}

interface Row {
  workload: string;
  scenario: Scenario;
  samples: Sample[];
  cp?: number;
  pigz?: number;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const runs = Number(opt('runs') ?? 3);
  const coldBig = Number(opt('cold-big') ?? 1);
  const only = opt('only')?.split(',');
  const small = args.includes('--small');
  const keep = args.includes('--keep');
  KILN = opt('kiln') ?? KILN;
  ensureTools();
  const top = mkdtempSync(join(opt('dir') ?? tmpdir(), 'kiln-bench-build-'));
  const cleanup = () => {
    if (keep) console.error(`kept ${top}`);
    else rmSync(top, { recursive: true, force: true });
  };
  // Ctrl-C: handlers run only between synchronous children, so cleaning up here is safe. The
  // signal can come twice (the terminal's and tsx relaying it); rmSync with force is idempotent.
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.on(sig, () => {
      cleanup();
      process.exit(130);
    });
  const timeFile = join(top, 'time.out');
  const rows: Row[] = [];
  try {
    const selected = workloads(small).filter((w) => !only || only.includes(w.name));
    for (const w of selected) {
      const ctx = join(top, 'ctx', w.name);
      mkdirSync(ctx, { recursive: true });
      let t = Date.now();
      w.make(ctx);
      console.error(`${w.name}: context made in ${((Date.now() - t) / 1000).toFixed(1)} s`);
      const cold: Row = { workload: w.name, scenario: 'cold', samples: [] };
      const noop: Row = { workload: w.name, scenario: 'no-op', samples: [] };
      const changed: Row = { workload: w.name, scenario: 'one file changed', samples: [] };
      const cps: number[] = [];
      const pigzs: number[] = [];
      const n = Math.max(runs, 1);
      for (let i = 0; i < n; i++) {
        const doCold = !w.big || i < coldBig;
        const store = join(top, 'store', `${w.name}-${i}`);
        if (doCold) {
          await loadBusybox(store);
          warm(ctx);
          cold.samples.push(build(store, ctx, `bench/${w.name}`, timeFile));
        }
        // Runs of a big workload past --cold-big rebuild in the first run's store.
        const use = doCold ? store : join(top, 'store', `${w.name}-0`);
        warm(ctx);
        noop.samples.push(build(use, ctx, `bench/${w.name}`, timeFile));
        if (w.change) {
          w.change(ctx, i);
          warm(ctx);
          changed.samples.push(build(use, ctx, `bench/${w.name}`, timeFile));
        }
        if (w.baseline) {
          const dest = join(top, 'cp');
          warm(ctx);
          cps.push(timed(['cp', '-a', ctx, dest], timeFile).seconds);
          rmSync(dest, { recursive: true, force: true });
          warm(ctx);
          pigzs.push(timed(['bash', '-c', 'set -o pipefail; tar -C "$1" -cf - . | pigz -6 > /dev/null', 'pigz', ctx], timeFile).seconds);
        }
        if (doCold && i > 0) rmSync(store, { recursive: true, force: true });
        const last = (r: Row) => (r.samples.length ? `${r.samples.at(-1)!.seconds.toFixed(2)} s` : '-');
        console.error(
          `${w.name} run ${i + 1}/${n}: cold ${doCold ? last(cold) : '(skipped)'}, no-op ${last(noop)}` +
            (w.change ? `, changed ${last(changed)}` : '') +
            (w.baseline ? `; cp -a ${cps.at(-1)!.toFixed(2)} s, tar|pigz ${pigzs.at(-1)!.toFixed(2)} s` : ''),
        );
      }
      for (const r of w.change ? [cold, noop, changed] : [cold, noop]) {
        if (w.baseline) Object.assign(r, { cp: median(cps), pigz: median(pigzs) });
        rows.push(r);
      }
      rmSync(join(top, 'store'), { recursive: true, force: true });
      rmSync(ctx, { recursive: true, force: true });
    }
  } finally {
    cleanup();
  }

  const table: string[][] = [
    ['workload', 'scenario', 'n', 'kiln s', 'kiln cpu s', 'peak RSS MiB', 'cp -a s', 'tar|pigz s', 'kiln/pigz', 'BuildKit s', 'Buildah s', 'kiln/BuildKit'],
  ];
  for (const r of rows) {
    const s = median(r.samples.map((x) => x.seconds));
    const ref = REFERENCE[r.workload]?.[r.scenario];
    table.push([
      r.workload,
      r.scenario,
      String(r.samples.length),
      s.toFixed(2),
      median(r.samples.map((x) => x.cpu)).toFixed(2),
      Math.max(...r.samples.map((x) => x.rssMiB)).toFixed(0),
      r.cp === undefined ? '-' : r.cp.toFixed(3),
      r.pigz === undefined ? '-' : r.pigz.toFixed(3),
      r.pigz === undefined || r.workload === 'hello' ? '-' : (s / r.pigz).toFixed(2),
      ref ? ref[0].toFixed(2) : '-',
      ref ? ref[1].toFixed(2) : '-',
      ref ? (s / ref[0]).toFixed(2) : '-',
    ]);
  }
  const widths = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
  for (const r of table) console.log(r.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
  console.log(
    `medians of n runs${small ? ' (--small: bigfile 256 MiB, bigcontext 5,000 files)' : ''}; peak RSS is the largest of the n runs` +
      ' (/usr/bin/time %M: the biggest single process). kiln/pigz (not for hello, whose context is a few bytes) and kiln/BuildKit are time ratios: below 1 is faster.',
  );
  console.log('BuildKit 0.8 / Buildah 1.28 figures are the issue\'s, measured on these machines, not in this run.');
}

await main();
