/**
 * The sandbox fixtures, run once as root and once as an unprivileged user (through `runuser`), with
 * the results printed as JSON for sandbox.test.ts to compare. Everything a fixture observes is
 * recorded as data; the assertions live in the test, so both runs are judged by the same rules.
 *
 *   node --import tsx test/sandbox/fixtures.ts WORKDIR [only,scenarios]
 *
 * As a plain user the script first enters kiln's user namespace (ensureNamespace), as the CLI does.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Mount } from '../../src/dockerfile/instructions/mounts.js';
import type { Digest } from '../../src/oci/digest.js';
import { writeTarEntries } from '../../src/oci/layer/index.js';
import { createExtract } from '../../src/oci/layer/tar.js';
import { memoryImage } from '../../src/oci/layout/memory.js';
import { openStore, type Store } from '../../src/store/index.js';
import { RunFailedError, lowerDirsFor, runStep, squashedLayerCodec, type RunStepOptions } from '../../src/sandbox/index.js';
import { ensureNamespace, type NamespaceInfo } from '../../src/sandbox/userns.js';
import { busyboxTar } from '../helpers/busybox.js';

export interface TarEntryInfo {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  linkname?: string;
}

export interface ScenarioResult {
  ok: boolean;
  error?: string;
  [key: string]: unknown;
}

export interface FixtureReport {
  namespace: { mode: string; mapping: string; squashed: boolean };
  uid: number;
  scenarios: Record<string, ScenarioResult>;
}

const EPOCH = 0;

function mount(partial: Partial<Mount> & Pick<Mount, 'type' | 'target'>): Mount {
  return { from: '', source: '', readOnly: false, sizeLimit: 0, cacheId: '', cacheSharing: '', required: false, ...partial };
}

async function layerEntries(store: Store, diffID: Digest): Promise<{ entries: TarEntryInfo[]; raw: Buffer }> {
  const raw = await store.readBlob({ digest: diffID });
  const ex = createExtract();
  const entries: TarEntryInfo[] = [];
  Readable.from([raw]).pipe(ex as unknown as NodeJS.WritableStream);
  for await (const e of ex) {
    const h = e.header;
    entries.push({
      name: h.name,
      type: h.type ?? 'file',
      mode: (h.mode ?? 0) & 0o7777,
      uid: h.uid ?? 0,
      gid: h.gid ?? 0,
      size: h.size ?? 0,
      ...(h.linkname ? { linkname: h.linkname } : {}),
    });
    e.resume();
  }
  return { entries, raw };
}

class Collector {
  chunks: Buffer[] = [];
  sink = (c: Buffer) => {
    this.chunks.push(Buffer.from(c));
  };
  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

async function main(): Promise<void> {
  const ns: NamespaceInfo = await ensureNamespace();
  const work = process.argv[2];
  if (!work) throw new Error('usage: fixtures.ts WORKDIR [scenarios]');
  const only = process.argv[3] ? new Set(process.argv[3].split(',')) : undefined;
  mkdirSync(work, { recursive: true });
  const store = await openStore({ root: join(work, 'store'), ...(ns.squashed ? { layerCodec: squashedLayerCodec() } : {}) });
  const lease = await store.createLease({ label: 'sandbox-fixtures' });
  const baseTar = readFileSync(await busyboxTar());
  const base = memoryImage({ layers: [{ blob: baseTar }] });
  await store.putImage(base, { names: ['fixtures/busybox:latest'], lease });
  const baseDiff = (await base.configFile()).rootfs.diff_ids[0]!;
  const baseLower = await lowerDirsFor(store, [baseDiff], { lease });

  const report: FixtureReport = {
    namespace: { mode: ns.mode, mapping: ns.mapping, squashed: ns.squashed },
    uid: Number(readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/)[1]),
    scenarios: {},
  };
  const run = (o: Omit<RunStepOptions, 'store' | 'lease'>) => runStep({ store, lease, sourceDateEpoch: EPOCH, ...o });
  const scenario = async (name: string, fn: () => Promise<Record<string, unknown>>) => {
    if (only && !only.has(name)) return;
    const started = Date.now();
    try {
      report.scenarios[name] = { ok: true, ...(await fn()), ms: Date.now() - started };
    } catch (err) {
      const e = err as Error & { code?: string; tail?: string[] };
      report.scenarios[name] = { ok: false, error: `${e.name}: ${e.message}${e.tail ? ` | ${e.tail.join(' / ')}` : ''}`, code: e.code, ms: Date.now() - started };
    }
  };

  // Layers: the same steps must give byte-identical layers as root and rootless.
  await scenario('layers', async () => {
    const sh = (script: string) => ['/bin/sh', '-c', script];
    const step1 = await run({
      lower: baseLower,
      command: sh(
        [
          'set -e',
          'echo hi > /x',
          'rm /bin/ls',
          'mkdir -p /srv/data /home/u',
          'echo a > /srv/data/a; echo b > /srv/data/b',
          'echo u:x:1000:1000::/home/u:/bin/sh >> /etc/passwd',
          'echo u:x:1000: >> /etc/group; echo wheel:x:10:u >> /etc/group',
          'chown 1000:1000 /home/u; chmod 0700 /home/u',
          'echo secret > /home/u/private; chown 1000:1000 /home/u/private; chmod 0600 /home/u/private',
          'echo tool > /usr/bin/tool; chmod 4755 /usr/bin/tool',
          'ln /x /x-hardlink',
          'ln -s ../x /srv/link',
          'mkfifo /srv/fifo',
          'chown 65534:65534 /srv/data/b',
        ].join('\n'),
      ),
    });
    const lower2 = await lowerDirsFor(store, [baseDiff, step1.diffID], { lease });
    const step2 = await run({
      lower: lower2,
      command: sh('set -e; rm -r /srv/data; mkdir /srv/data; echo c > /srv/data/c; rm /x; echo more >> /home/u/private'),
    });
    const l1 = await layerEntries(store, step1.diffID);
    const l2 = await layerEntries(store, step2.diffID);
    return { step1: { diffID: step1.diffID, empty: step1.empty, snapshotter: step1.snapshotter, entries: l1.entries }, step2: { diffID: step2.diffID, entries: l2.entries } };
  });

  // The copy snapshotter must give the same layer as overlay for steps without whole-directory replacement.
  await scenario('copy', async () => {
    const script = ['/bin/sh', '-c', 'set -e; echo hi > /x; rm /bin/ls; mkdir -p /srv/d; echo a > /srv/d/a; chmod 0750 /srv/d; ln -s /x /srv/l'];
    const overlay = await run({ lower: baseLower, command: script, snapshotter: 'overlay' });
    const copy = await run({ lower: baseLower, command: script, snapshotter: 'copy' });
    return {
      overlay: (await layerEntries(store, overlay.diffID)).entries,
      copy: (await layerEntries(store, copy.diffID)).entries,
      copySnapshotter: copy.snapshotter,
      copyDiffID: copy.diffID,
      overlayDiffID: overlay.diffID,
    };
  });

  // USER: names and groups from the image's files.
  await scenario('user', async () => {
    const step = await run({ lower: baseLower, command: ['/bin/sh', '-c', 'echo u:x:1000:1000::/home/u:/bin/sh >> /etc/passwd; echo u:x:1000: >> /etc/group; echo wheel:x:10:u >> /etc/group'] });
    const lower = await lowerDirsFor(store, [baseDiff, step.diffID], { lease });
    const out: Record<string, string> = {};
    for (const user of ['u', '1000', '1000:10', 'u:wheel', '4242']) {
      const c = new Collector();
      try {
        await run({ lower, command: ['/bin/sh', '-c', 'id; echo "HOME=$HOME"; pwd'], user, cwd: '/home/u/work', stdout: c.sink });
        out[user] = c.text.trim();
      } catch (err) {
        out[user] = `ERROR ${(err as Error).message}`;
      }
    }
    try {
      await run({ lower, command: ['/bin/true'], user: 'nosuchuser' });
      out.nosuchuser = 'ran';
    } catch (err) {
      out.nosuchuser = `${(err as { code?: string }).code}: ${(err as Error).message}`;
    }
    return { out };
  });

  // What a step must not be able to do.
  await scenario('refused', async () => {
    const hostFile = join(work, `host-secret-${randomBytes(4).toString('hex')}`);
    writeFileSync(hostFile, 'HOST-SECRET-CONTENT\n');
    const tries: Record<string, { exit: number | 'ok'; out: string }> = {};
    const attempt = async (name: string, script: string, extra: Partial<RunStepOptions> = {}) => {
      const c = new Collector();
      try {
        await run({ lower: baseLower, command: ['/bin/sh', '-c', script], stdout: c.sink, stderr: c.sink, ...extra });
        tries[name] = { exit: 'ok', out: c.text };
      } catch (err) {
        if (!(err instanceof RunFailedError)) throw err;
        tries[name] = { exit: err.status, out: c.text };
      }
    };
    await attempt('readHostFile', `cat ${hostFile}; cat /proc/1/root${hostFile}; cat /proc/self/root${hostFile}; cat /dev/.kiln/../..${hostFile}`);
    await attempt('listRoot', 'ls /');
    await attempt('processes', 'ls /proc | grep -E "^[0-9]+$" | tr "\\n" " "; echo; cat /proc/1/cmdline | tr "\\0" " "');
    await attempt('mount', 'mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo MOUNTED');
    await attempt('remount', 'mount -o remount,rw /dev/.kiln && echo REMOUNTED');
    await attempt('caps', 'grep Cap /proc/self/status; grep NoNewPrivs /proc/self/status');
    const roDir = join(work, 'ro-bind');
    mkdirSync(roDir, { recursive: true });
    writeFileSync(join(roDir, 'kept'), 'original\n');
    await attempt('roBindWrite', 'echo changed > /data/kept; touch /data/new', {
      mounts: [{ mount: mount({ type: 'bind', target: '/data', readOnly: true }), hostPath: roDir }],
    });
    await attempt('rwBindWrite', 'echo changed > /data/kept && touch /data/new && cat /data/kept', {
      mounts: [{ mount: mount({ type: 'bind', target: '/data', readOnly: false }), hostPath: roDir }],
    });
    const hostDir = { files: readdirSync(roDir).sort(), kept: readFileSync(join(roDir, 'kept'), 'utf8') };
    return { tries, hostDir, hostPid: process.pid };
  });

  // Secrets: usable inside, absent from layers and logs.
  await scenario('secrets', async () => {
    const value = `s3cr3t-${randomBytes(12).toString('hex')}`;
    const c = new Collector();
    const step = await run({
      lower: baseLower,
      command: ['/bin/sh', '-c', 'set -e; sha256sum /run/secrets/tok | cut -d" " -f1 > /hash; printf %s "$TOKEN" | sha256sum | cut -d" " -f1 > /envhash; ls -l /run/secrets/tok; cat /run/secrets/tok; echo; echo "env: $TOKEN"'],
      mounts: [
        { mount: mount({ type: 'secret', target: '', cacheId: 'tok', required: true, mode: 0o440, uid: 0, gid: 0 }) },
        { mount: mount({ type: 'secret', target: '', cacheId: 'tok2', env: 'TOKEN', required: true }) },
      ],
      secrets: { tok: { value }, tok2: { value } },
      stdout: c.sink,
      stderr: c.sink,
    });
    const layer = await layerEntries(store, step.diffID);
    const missing = await run({ lower: baseLower, command: ['/bin/true'], mounts: [{ mount: mount({ type: 'secret', target: '', cacheId: 'absent', required: true }) }], secrets: {} }).then(
      () => 'ran',
      (err: Error & { code?: string }) => `${err.code}: ${err.message}`,
    );
    return {
      expectedHash: createHash('sha256').update(value).digest('hex'),
      hashFile: layer.entries.find((e) => e.name === 'hash')?.size,
      layerNames: layer.entries.map((e) => e.name),
      layerHasValue: layer.raw.includes(Buffer.from(value)),
      logHasValue: c.text.includes(value),
      log: c.text,
      hashes: await (async () => {
        const lower = await lowerDirsFor(store, [baseDiff, step.diffID], { lease });
        const h = new Collector();
        await run({ lower, command: ['/bin/sh', '-c', 'cat /hash /envhash'], stdout: h.sink });
        return h.text.trim().split('\n');
      })(),
      missing,
    };
  });

  // Networks.
  await scenario('network', async () => {
    const none = new Collector();
    await run({ lower: baseLower, network: 'none', command: ['/bin/sh', '-c', 'cat /proc/net/dev; echo ---; ip addr show lo; ls /sys/class/net'], stdout: none.sink, stderr: none.sink });
    const host = new Collector();
    await run({ lower: baseLower, network: 'default', command: ['/bin/sh', '-c', 'cat /proc/net/dev'], stdout: host.sink, stderr: host.sink });
    const ifaces = (text: string) =>
      text
        .split('---')[0]!
        .split('\n')
        .map((l) => /^\s*([^\s:]+):/.exec(l)?.[1])
        .filter((n): n is string => !!n && n !== 'Inter-|' && n !== 'face');
    return { none: ifaces(none.text), noneText: none.text, host: ifaces(host.text) };
  });

  // Cache mounts persist across steps and never reach a layer.
  await scenario('cache', async () => {
    const m = mount({ type: 'cache', target: '/root/.cache/tool', cacheId: `fixture-${randomBytes(3).toString('hex')}`, cacheSharing: 'locked' });
    const first = await run({ lower: baseLower, command: ['/bin/sh', '-c', 'echo persisted > /root/.cache/tool/f; mkdir -p /root/.cache/tool/sub'], mounts: [{ mount: m }] });
    const c = new Collector();
    const second = await run({ lower: baseLower, command: ['/bin/sh', '-c', 'cat /root/.cache/tool/f; ls /root/.cache/tool'], mounts: [{ mount: m }], stdout: c.sink });
    return {
      firstEmpty: first.empty,
      firstEntries: (await layerEntries(store, first.diffID)).entries.map((e) => e.name),
      secondEmpty: second.empty,
      secondOut: c.text.trim(),
    };
  });

  // tmpfs mounts.
  await scenario('tmpfs', async () => {
    const c = new Collector();
    const step = await run({
      lower: baseLower,
      command: ['/bin/sh', '-c', 'echo x > /scratch/f && grep " /scratch " /proc/mounts'],
      mounts: [{ mount: mount({ type: 'tmpfs', target: '/scratch', sizeLimit: 1 << 20 }) }],
      stdout: c.sink,
    });
    return { out: c.text.trim(), empty: step.empty };
  });

  // A deep image: overlay must mount 120 layers.
  await scenario('layers120', async () => {
    const layers = [{ blob: baseTar }];
    for (let i = 0; i < 120; i++) {
      const chunks: Buffer[] = [];
      for await (const c of writeTarEntries([{ path: `/f${i}`, content: `${i}\n` }], { sourceDateEpoch: 0 })) chunks.push(c as Buffer);
      layers.push({ blob: Buffer.concat(chunks) });
    }
    const image = memoryImage({ layers });
    await store.putImage(image, { names: ['fixtures/deep:latest'], lease });
    const lower = await store.lowerDirs(await store.resolve('fixtures/deep:latest'), { lease });
    const c = new Collector();
    const step = await run({ lower, command: ['/bin/sh', '-c', 'cat /f0 /f119; ls / | grep -c "^f[0-9]"'], stdout: c.sink });
    return { out: c.text.trim().split('\n'), snapshotter: step.snapshotter, warnings: step.warnings, lowers: lower.lowerdirs.length };
  });

  // A failing command reports its status and last lines.
  await scenario('failure', async () => {
    try {
      await run({ lower: baseLower, command: ['/bin/sh', '-c', 'for i in $(seq 1 30); do echo line$i; done; echo oops >&2; exit 3'] });
      return { result: 'succeeded' };
    } catch (err) {
      const e = err as RunFailedError;
      return { code: e.code, status: e.status, message: e.message, tail: e.tail };
    }
  });

  // Limits: what applied, and that memory is enforced.
  await scenario('limits', async () => {
    const c = new Collector();
    const small = await run({ lower: baseLower, command: ['/bin/sh', '-c', 'grep -E "Max (address space|processes)" /proc/self/limits'], limits: { memory: 64 << 20, pidsLimit: 64, cpuQuota: 50000 }, stdout: c.sink });
    let hog: string;
    try {
      await run({ lower: baseLower, command: ['/bin/sh', '-c', 'awk "BEGIN { s = \\"x\\"; while (1) s = s s }"'], limits: { memory: 64 << 20 } });
      hog = 'succeeded';
    } catch (err) {
      hog = `${(err as { code?: string }).code}: ${(err as Error).message} ${(err as { hint?: string }).hint ?? ''}`;
    }
    return { applied: small.limits, out: c.text.trim().split('\n'), hog };
  });

  // Cancelling a step kills every process of it and leaves no mount or scratch directory behind.
  await scenario('abort', async () => {
    const marker = String(100000 + Math.floor(Math.random() * 800000));
    const controller = new AbortController();
    const before = readdirSync(store.tmpDir).filter((n) => n.endsWith('.run'));
    let started = false;
    const c = new Collector();
    const p = run({
      lower: baseLower,
      command: ['/bin/sh', '-c', `sleep ${marker} & (sleep ${marker}; true) & echo started; wait`],
      stdout: (chunk) => {
        c.sink(chunk);
        if (!started && c.text.includes('started')) {
          started = true;
          setTimeout(() => controller.abort(), 200);
        }
      },
      signal: controller.signal,
    });
    let outcome: string;
    try {
      await p;
      outcome = 'finished';
    } catch (err) {
      outcome = `${(err as { code?: string }).code}`;
    }
    const survivors: string[] = [];
    for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
        if (cmd.includes(marker) && !cmd.includes('sh -c')) survivors.push(`${pid}: ${cmd}`);
      } catch {
        // gone
      }
    }
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(store.tmpDir));
    // Step directories made ahead of time (empty upper and work dirs) are expected; anything else is debris.
    const after = readdirSync(store.tmpDir).filter((n) => n.endsWith('.run') && !before.includes(n));
    const debris = after.filter((n) => {
      const dir = join(store.tmpDir, n);
      const entries = readdirSync(dir).sort();
      return entries.join() !== 'upper,work' || readdirSync(join(dir, 'upper')).length > 0 || readdirSync(join(dir, 'work')).length > 0;
    });
    return { started, outcome, survivors, mounts, leftoverRunDirs: debris };
  });

  // Ownership squashing (single-uid namespace): image owners survive a copy-up.
  await scenario('ownership', async () => {
    const chunks: Buffer[] = [];
    for await (const c of writeTarEntries(
      [
        { path: '/home', type: 'directory', mode: 0o755 },
        { path: '/home/u', type: 'directory', mode: 0o750, uid: 1000, gid: 1000 },
        { path: '/home/u/file', content: 'one\n', mode: 0o640, uid: 1000, gid: 1000 },
        { path: '/opt', type: 'directory', mode: 0o755, uid: 1000, gid: 1000 },
      ],
      { sourceDateEpoch: 0 },
    )) {
      chunks.push(c as Buffer);
    }
    const image = memoryImage({ layers: [{ blob: baseTar }, { blob: Buffer.concat(chunks) }] });
    await store.putImage(image, { names: ['fixtures/owned:latest'], lease });
    const lower = await store.lowerDirs(await store.resolve('fixtures/owned:latest'), { lease });
    const step = await run({ lower, command: ['/bin/sh', '-c', 'echo two >> /home/u/file; touch /opt/new; echo n > /newfile'] });
    const asUser = await run({ lower, command: ['/bin/true'], user: '1000' }).then(
      () => 'ran',
      (err: Error & { code?: string }) => `${err.code}`,
    );
    return { diffID: step.diffID, entries: (await layerEntries(store, step.diffID)).entries, asUser };
  });

  await lease.release();
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

if (existsSync(process.argv[1] ?? '') && process.argv[1]!.endsWith('fixtures.ts')) {
  main().then(
    () => process.exit(0),
    (err: Error) => {
      process.stderr.write(`fixtures: ${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  );
}
