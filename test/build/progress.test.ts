/**
 * What a user sees during `kiln build`: in a terminal, live steps with parallel stages side by side
 * and a summary; piped to a file, buildx's plain lines (and ink is never loaded); `--progress=json`,
 * one event per line; `kiln history --build`, the recent builds with their outcome.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../conformance/harness.js';
import { type BusyboxStore } from '../helpers/busybox.js';
import { copyFixture, expectOk, kilnRun } from '../helpers/build.js';
import { useFixtureStore } from '../helpers/fixture-store.js';
import { KILN_BIN } from '../helpers/kiln.js';
import { startRegistry } from '../helpers/registry/index.js';
import { kilnAt, tempDir } from '../helpers/store.js';
import { Terminal, shellQuote } from '../ui/terminal.js';

let base: BusyboxStore;
let ctx: string;
useFixtureStore('progress', (s) => ({ base, ctx } = s));

describe('kiln build progress', () => {
  it('in a terminal: running stages side by side with their output, then every step and a summary', { timeout: 120_000 }, async () => {
    const term = new Terminal(`cd ${shellQuote(REPO_ROOT)} && ${shellQuote(process.execPath)} ${shellQuote(KILN_BIN)} --root ${shellQuote(base.root)} build --no-cache -t progress ${shellQuote(ctx)}`);
    try {
      // Both RUN steps of the independent stages are on screen at once, in columns of their own.
      const parallel = await term.waitFor((s) => /stage left +stage right/.test(s) && /right working \d/.test(s));
      const header = parallel.split('\n').find((l) => /stage left/.test(l))!;
      const row = parallel.split('\n')[parallel.split('\n').indexOf(header) + 1]!;
      expect(row).toMatch(/=> #\d+ [\d.]+s \[left 2\/2\] RUN.*=> #\d+ [\d.]+s \[right 3\/3\] RUN/);
      expect(await term.exitStatus()).toBe(0);
      const end = term.screen(true);
      expect(end).toMatch(/#\d+ \[right 2\/3\] COPY src\/ \/src\/ +DONE \d+\.\ds/);
      expect(end).toMatch(/Summary: 6 steps, 0 cached/);
      expect(end).toMatch(/Image: sha256:[0-9a-f]{64} \([\d.]+[kM]B in 4 layers\)/);
      expect(end).toMatch(/0\/6 steps cached; image sha256:/);
      // Colour in a terminal (NO_COLOR unset).
      expect(term.screenWithColours()).toMatch(/\x1b\[[0-9;]*3\dm/);
    } finally {
      term.close();
    }
  });

  it('piped to a file: plain numbered lines and the summary, without loading ink', async () => {
    const trace = join(base.dir, 'imports.txt');
    writeFileSync(trace, '');
    // Records every module kiln imports (a resolve hook in the loader thread), to see ink is not among them.
    const hooks = join(base.dir, 'trace-hooks.mjs');
    writeFileSync(
      hooks,
      `import { appendFileSync } from 'node:fs';\nexport async function resolve(s, c, next) { appendFileSync(${JSON.stringify(trace)}, s + '\\n'); return next(s, c); }\n`,
    );
    const hook = join(base.dir, 'trace.mjs');
    writeFileSync(hook, `import { register } from 'node:module';\nregister(${JSON.stringify(`file://${hooks}`)});\n`);
    // A context never scanned before: its files are read, and the COPY says how many.
    const fresh = await copyFixture('progress', join(base.dir, 'progress-fresh'));
    const r = spawnSync(process.execPath, ['--import', hook, KILN_BIN, '--root', base.root, 'build', '--build-arg', 'NAP=0', '-t', 'progress', fresh], {
      encoding: 'utf8',
      env: { ...process.env, CI: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^#\d+ \[left 2\/2\] RUN for i in/m);
    expect(r.stderr).toMatch(/^#\d+ \d+\.\d{3} left working 6 \(version 1\.0\)$/m);
    expect(r.stderr).toMatch(/^Summary: 6 steps, \d cached/m);
    expect(r.stderr).toMatch(/^#\d+ context files read 3\/3 done$/m);
    const imported = readFileSync(trace, 'utf8');
    // The hook sees kiln's launcher; neither the terminal renderer nor ink nor React is loaded.
    expect(imported).toMatch(/kiln\.js$/m);
    expect(imported).not.toMatch(/tty\.(m?js)$|^(ink|react)$/m);
  });

  it('--progress=json: one event per line, with explanations and the image at the end', async () => {
    const r = await kilnRun(base.root, ['build', '--progress', 'json', '--build-arg', 'NAP=0', '--build-arg', 'VERSION=3', ctx]);
    expect(r.status, r.stderr).toBe(0);
    const events = r.stderr.trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string; reasons?: string[]; digest?: string; build?: string });
    expect(events[0]!.type).toBe('build-start');
    expect(events.filter((e) => e.type === 'vertex-miss').flatMap((e) => e.reasons)).toContain('ARG VERSION changed (1.0 -> 3)');
    const done = events[events.length - 1]!;
    expect(done.type).toBe('build-done');
    expect(done.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('kiln history --build lists the recent builds, newest first, with their outcome', async () => {
    expectOk(await kilnRun(base.root, ['build', '--progress', 'plain', '--build-arg', 'NAP=0', '-t', 'progress', ctx]));
    const failed = await kilnRun(base.root, ['build', '--progress', 'plain', '-f', join(ctx, 'Dockerfile.fail'), ctx]);
    expect(failed.status).toBe(1);
    // A failed build sums up too: what ran, and the step that failed with its time.
    expect(failed.stderr).toMatch(/^Summary: 2 steps, 0 cached, 1 failed, [\d.]+s$/m);
    expect(failed.stderr).toMatch(/^Failed: #\d+ \[3\/3\] RUN echo "made by the failed step".* after \d+\.\ds$/m);
    const out = kilnAt(base.root, ['history', '--build']);
    expect(out.status, out.stderr).toBe(0);
    const [header, newest, previous] = out.stdout.split('\n');
    expect(header).toMatch(/^BUILD ID +CREATED +TARGET +STATUS +DURATION +CACHED$/);
    expect(newest).toMatch(/^\d{8}-\d{6}-[0-9a-f]{6} .* progress +FAILED +[\d.]+s +0\/2$/);
    expect(previous).toMatch(/docker\.io\/library\/progress:latest +SUCCESS +[\d.]+s +\d\/6$/);
    const json = kilnAt(base.root, ['history', '--build', '--format', 'json']).stdout.split('\n')[0]!;
    expect(JSON.parse(json)).toMatchObject({ outcome: 'failed', steps: 2, cached: 0 });
    // Plain `kiln history IMAGE` is unchanged.
    expect(kilnAt(base.root, ['history', 'progress']).stdout).toMatch(/^IMAGE +CREATED +CREATED BY +SIZE +COMMENT/);
  });

  it('-o type=oci,dest=FILE: the layers compressed and the archive written show their bytes and rates', { timeout: 120_000 }, async () => {
    const dir = join(base.dir, 'oci-export');
    mkdirSync(dir, { recursive: true });
    // A layer never built before (random bytes), so it is compressed in this build.
    writeFileSync(join(dir, 'Dockerfile'), 'FROM kiln-test/busybox\nRUN head -c 3000000 /dev/urandom > /blob\n');
    const dest = join(base.dir, 'exported-oci.tar');
    const r = await kilnRun(base.root, ['build', '--progress', 'plain', '-o', `type=oci,dest=${dest}`, dir]);
    expect(r.status, r.stderr).toBe(0);
    // The new layer's end line (the base image's layer may be compressed here too).
    const layer = [...r.stderr.matchAll(/^#(\d+) compressing (sha256:[0-9a-f]{12}) ([\d.]+)MB(?: [\d.]+[kM]B\/s)? done$/gm)].find((m) => Number(m[3]) >= 3);
    expect(layer, r.stderr).toBeDefined();
    const written = r.stderr.match(new RegExp(`^#${layer![1]} writing ${dest.replace(/[.]/g, '\\.')} ([\\d.]+)MB(?: [\\d.]+[kM]B/s)? done$`, 'm'));
    expect(written, r.stderr).not.toBeNull();
    // What the archive holds: at least the compressed random layer (random bytes do not shrink).
    expect(Number(written![1])).toBeGreaterThanOrEqual(3);
    const listing = spawnSync('tar', ['tf', dest], { encoding: 'utf8' }).stdout;
    expect(listing).toMatch(/^index\.json$/m);
  });

  it('a push and a pull show their bytes', { timeout: 120_000 }, async () => {
    const reg = await startRegistry({ mode: 'none' });
    const other = await tempDir();
    try {
      const ref = `${reg.host}/kiln/progress:1`;
      const pushed = await kilnRun(base.root, ['build', '--progress', 'plain', '--build-arg', 'NAP=0', '--push', '--insecure-registry', reg.host, '-t', ref, ctx], {
        env: { ...process.env, HOME: other.dir },
      });
      expect(pushed.status, pushed.stderr).toBe(0);
      expect(pushed.stderr).toMatch(new RegExp(`^#\\d+ pushing ${ref.replace(/[.]/g, '\\.')} [\\d.]+[kM]B\\b`, 'm'));
      const dir = join(other.dir, 'ctx');
      mkdirSync(dir);
      writeFileSync(join(dir, 'Dockerfile'), `FROM ${ref}\nRUN cat /right.txt\n`);
      const pulled = await kilnRun(join(other.dir, 'store'), ['build', '--progress', 'plain', '--insecure-registry', reg.host, dir], { env: { ...process.env, HOME: other.dir } });
      expect(pulled.status, pulled.stderr).toBe(0);
      expect(pulled.stderr).toMatch(/^#1 pulling [\d.]+MB\b/m);
    } finally {
      await reg.stop();
      await other.cleanup();
    }
  });
});
