/**
 * RUN step overhead. 40 trivial RUN steps in one stage (`echo i > /step<i>`), each committed as a
 * layer and unpacked as a lowerdir for the next one, so step i runs over the busybox base plus the
 * i-1 layers before it, as a build does. Measured as real root and as an unprivileged user (kiln's
 * user namespace, entered once per process as the CLI does), against `runc run` of `true` in a
 * busybox bundle in the same run when runc is installed (apt-get install runc).
 *
 *   npx tsx bench/run-steps.ts [--steps=40] [--dir=PATH] [--runc-runs=40] [--json]
 *
 * "per RUN" is the whole runStep call: preparing the upper dir and mounts, the sandbox (namespaces,
 * mounts, pivot_root, setpriv, the command), removing mount stubs, and the commit (layer tar, digest,
 * blob written to the store with its fsyncs, lease). "snapshot" (unpacking the new layer for the next
 * step) and "lower" (assembling the next lowerdir list) are reported beside it. Each step runs in a
 * child process so root and rootless are measured the same way; the first step of each child is a
 * warm-up (the sandbox tools copy and the overlay probe happen once per store/process).
 *
 * As root the user is created if needed (useradd -m, as the tests do); as a non-root user only that
 * user's rootless numbers are measured. --dir places the stores (default: a temp dir on the same disk
 * as /tmp; commit time includes that disk's fsyncs).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Digest } from '../src/oci/digest.js';
import { memoryImage } from '../src/oci/layout/memory.js';
import { openStore } from '../src/store/index.js';
import { lowerDirsFor, runStep, settleSandboxCleanup, squashedLayerCodec, withLayerOnTop } from '../src/sandbox/index.js';
import { ensureNamespace } from '../src/sandbox/userns.js';
import { readSubIds } from '../src/sandbox/idmap.js';
import { busyboxTar } from '../test/helpers/busybox.js';
import { ensurePackages, ensureUsers } from '../test/sandbox/users.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..');

interface StepTiming {
  total: number;
  prepare: number;
  sandbox: number;
  commit: number;
  cleanup: number;
  snapshot: number;
  lower: number;
}

interface ChildReport {
  mode: string;
  steps: StepTiming[];
}

function arg(name: string): string | undefined {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit?.slice(name.length + 3);
}

// ------------------------------------------------------------------------------- child: kiln RUNs

async function kilnChild(dir: string, steps: number): Promise<void> {
  const ns = await ensureNamespace();
  const store = await openStore({ root: join(dir, 'store'), ...(ns.squashed ? { layerCodec: squashedLayerCodec() } : {}) });
  const lease = await store.createLease({ label: 'bench' });
  const base = memoryImage({ layers: [{ blob: readFileSync(await busyboxTar()) }] });
  await store.putImage(base, { names: ['bench/busybox:latest'], lease });
  const chain: Digest[] = [(await base.configFile()).rootfs.diff_ids[0]!];
  let lower = await lowerDirsFor(store, chain, { lease });
  const out: StepTiming[] = [];
  for (let i = 0; i <= steps; i++) {
    const phases: Record<string, number> = {};
    const t0 = performance.now();
    const r = await runStep({
      store,
      lease,
      lower,
      command: ['/bin/sh', '-c', `echo ${i} > /step${i}`],
      snapshot: true,
      onPhase: (p, ms) => (phases[p] = (phases[p] ?? 0) + ms),
    });
    const total = performance.now() - t0 - (phases.snapshot ?? 0);
    chain.push(r.diffID);
    const t1 = performance.now();
    lower = withLayerOnTop(lower, r.snapshot!);
    const lowerMs = performance.now() - t1;
    if (i === 0) continue; // warm-up
    out.push({
      total,
      prepare: phases.prepare ?? 0,
      sandbox: phases.sandbox ?? 0,
      commit: phases.commit ?? 0,
      cleanup: phases.cleanup ?? 0,
      snapshot: phases.snapshot ?? 0,
      lower: lowerMs,
    });
  }
  await settleSandboxCleanup();
  await lease.release();
  const report: ChildReport = { mode: ns.mode === 'root' ? 'root' : `rootless (${ns.mapping} mapping)`, steps: out };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

// ------------------------------------------------------------------------------- child: runc

function runcChild(dir: string, runs: number): void {
  const runc = spawnSync('sh', ['-c', 'command -v runc'], { encoding: 'utf8' }).stdout.trim();
  if (!runc) {
    process.stdout.write(`${JSON.stringify({ skipped: 'runc is not installed (apt-get install runc)' })}\n`);
    return;
  }
  const bundle = join(dir, 'bundle');
  mkdirSync(join(bundle, 'rootfs'), { recursive: true });
  execFileSync('tar', ['-xf', process.argv.find((a) => a.startsWith('--tar='))!.slice(6), '-C', join(bundle, 'rootfs')]);
  const rootless = process.getuid?.() !== 0;
  execFileSync(runc, ['spec', ...(rootless ? ['--rootless'] : [])], { cwd: bundle });
  const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as Record<string, any>;
  config.process.args = ['true'];
  config.process.terminal = false;
  if (rootless) {
    // `runc spec --rootless` maps only the user; give it the subordinate range as kiln has.
    const name = execFileSync('id', ['-un'], { encoding: 'utf8' }).trim();
    const uid = process.getuid!();
    const gid = process.getgid!();
    const su = readSubIds('/etc/subuid', { name, id: uid }).ranges[0];
    const sg = readSubIds('/etc/subgid', { name, id: uid }).ranges[0];
    config.linux.uidMappings = [{ containerID: 0, hostID: uid, size: 1 }, ...(su ? [{ containerID: 1, hostID: su.start, size: su.count }] : [])];
    config.linux.gidMappings = [{ containerID: 0, hostID: gid, size: 1 }, ...(sg ? [{ containerID: 1, hostID: sg.start, size: sg.count }] : [])];
  }
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
  const state = join(dir, 'runc-state');
  const env = { ...process.env, XDG_RUNTIME_DIR: join(dir, 'xdg') };
  mkdirSync(env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
  const times: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const t = performance.now();
    const r = spawnSync(runc, ['--root', state, 'run', '--bundle', bundle, `kiln-bench-${process.pid}-${i}`], { env, encoding: 'utf8' });
    const ms = performance.now() - t;
    if (r.status !== 0) {
      process.stdout.write(`${JSON.stringify({ skipped: `runc run failed: ${(r.stderr || r.stdout).trim().split('\n').pop()}` })}\n`);
      return;
    }
    if (i > 0) times.push(ms);
  }
  process.stdout.write(`${JSON.stringify({ times })}\n`);
}

// ------------------------------------------------------------------------------- parent

function spawnChild(args: string[], user?: string): Promise<string> {
  const node = [process.execPath, '--import', 'tsx', join(HERE, 'run-steps.ts'), ...args];
  const argv = user ? ['runuser', '-u', user, '--', ...node] : node;
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => (code === 0 ? resolve(out.trim().split('\n').pop()!) : reject(new Error(`${argv.join(' ')} exited ${code}`))));
  });
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length - 1) * p))]!;
const f = (n: number) => n.toFixed(1).padStart(6);

async function parent(): Promise<void> {
  const steps = Number(arg('steps') ?? 40);
  const runcRuns = Number(arg('runc-runs') ?? 40);
  const asRoot = process.getuid?.() === 0;
  let user: string | undefined;
  if (asRoot) {
    ensurePackages();
    user = ensureUsers().user;
  }
  const base = arg('dir') ?? mkdtempSync(join(tmpdir(), 'kiln-bench-run-'));
  mkdirSync(base, { recursive: true });
  // The unprivileged user needs to reach its own directory below it.
  chmodSync(base, 0o755);
  const tar = await busyboxTar();
  const plans: Array<{ label: string; user?: string }> = asRoot ? [{ label: 'root' }, { label: 'rootless', ...(user ? { user } : {}) }] : [{ label: 'rootless' }];
  const rows: Array<Record<string, unknown>> = [];
  const lines: string[] = [];
  lines.push(`kiln RUN steps: ${steps} trivial steps chained in one stage (each step's lower = base + previous layers)`);
  lines.push(`load average at start: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} on ${spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()} cores`);
  lines.push('');
  lines.push('mode                          per RUN: mean median    p90    min | prepare sandbox  commit cleanup | snapshot  lower | runc run true: mean median');
  for (const plan of plans) {
    const dir = join(base, plan.label);
    mkdirSync(dir, { recursive: true });
    if (plan.user) chownSync(dir, Number(execFileSync('id', ['-u', plan.user], { encoding: 'utf8' })), Number(execFileSync('id', ['-g', plan.user], { encoding: 'utf8' })));
    const kilnOut = JSON.parse(await spawnChild([`--child=${join(dir, 'kiln')}`, `--steps=${steps}`], plan.user)) as ChildReport;
    const runcOut = JSON.parse(await spawnChild([`--runc=${join(dir, 'runc')}`, `--runc-runs=${runcRuns}`, `--tar=${tar}`], plan.user)) as { times?: number[]; skipped?: string };
    const s = kilnOut.steps;
    const col = (k: keyof StepTiming) => s.map((x) => x[k]);
    const totals = col('total');
    const row = {
      mode: kilnOut.mode,
      steps: s.length,
      mean: mean(totals),
      median: pct(totals, 0.5),
      p90: pct(totals, 0.9),
      min: Math.min(...totals),
      prepare: mean(col('prepare')),
      sandbox: mean(col('sandbox')),
      commit: mean(col('commit')),
      cleanup: mean(col('cleanup')),
      snapshot: mean(col('snapshot')),
      lower: mean(col('lower')),
      runc: runcOut.times ? { mean: mean(runcOut.times), median: pct(runcOut.times, 0.5) } : { skipped: runcOut.skipped },
    };
    rows.push(row);
    const runcText = runcOut.times ? `${f(row.runc.mean!)} ${f(row.runc.median!)}` : `n/a (${runcOut.skipped})`;
    lines.push(
      `${row.mode.padEnd(29)} ${f(row.mean)} ${f(row.median)} ${f(row.p90)} ${f(row.min)} | ${f(row.prepare)}  ${f(row.sandbox)}  ${f(row.commit)}  ${f(row.cleanup)} | ${f(row.snapshot)} ${f(row.lower)} | ${runcText}`,
    );
  }
  lines.push('');
  lines.push('all times in ms; target: per RUN < 45 ms including the commit');
  if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  else process.stdout.write(`${lines.join('\n')}\n`);
  if (!arg('dir')) {
    // Rootless stores hold files of subordinate uids; root can remove them all.
    if (asRoot) rmSync(base, { recursive: true, force: true });
    else spawnSync(process.execPath, [join(REPO, 'bin/kiln.js'), 'unshare', 'rm', '-rf', base]);
  }
}

const child = arg('child');
const runcDir = arg('runc');
if (child) await kilnChild(child, Number(arg('steps') ?? 40));
else if (runcDir) runcChild(runcDir, Number(arg('runc-runs') ?? 40));
else await parent();
