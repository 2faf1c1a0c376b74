/**
 * `kiln build` end to end, as root, FROM the busybox test base: the quick-start example, caching,
 * outputs read by independent tools, reproducibility, and the one-line errors a user meets.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../conformance/harness.js';
import { busyboxStore, loadBusybox, type BusyboxStore } from '../helpers/busybox.js';
import { kilnAt, tempDir } from '../helpers/store.js';

let base: BusyboxStore;
beforeAll(async () => {
  base = await busyboxStore();
}, 120_000);
afterAll(async () => {
  await base?.cleanup();
});

function context(files: Record<string, string>): string {
  const dir = join(base.dir, `ctx-${Math.random().toString(36).slice(2)}`);
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  return dir;
}

function build(args: string[], env?: NodeJS.ProcessEnv) {
  return kilnAt(base.root, ['build', '--progress', 'plain', ...args], env ? { env: { ...process.env, ...env } } : {});
}

describe('kiln build', () => {
  it('builds the quick-start example, and a rebuild has every step cached', () => {
    const first = build(['-t', 'hello', join(REPO_ROOT, 'fixtures/hello')]);
    expect(first.stderr).not.toContain('ERROR');
    expect(first.status).toBe(0);
    expect(first.stderr).toMatch(/#\d+ \[base 4\/4\] RUN echo "built by kiln" > \/app\/built.txt\n#\d+ DONE/);
    const second = build(['-t', 'hello', join(REPO_ROOT, 'fixtures/hello')]);
    expect(second.status).toBe(0);
    const steps = second.stderr.split('\n').filter((l) => /^#\d+ \[base \d\/4\]/.test(l)).length;
    expect(steps).toBe(3);
    expect(second.stderr.split('\n').filter((l) => /^#\d+ CACHED$/.test(l))).toHaveLength(3);
    expect(second.stderr).toContain('3/3 steps cached');
  });

  it('puts the files where BuildKit would, with the config the Dockerfile says', async () => {
    const out = await tempDir();
    try {
      const r = build(['-o', `type=local,dest=${out.dir}`, join(REPO_ROOT, 'fixtures/hello')]);
      expect(r.status).toBe(0);
      expect(readFileSync(join(out.dir, 'app/greeting.txt'), 'utf8')).toBe('Hello from a kiln-built image!\n');
      expect(readFileSync(join(out.dir, 'app/built.txt'), 'utf8')).toBe('built by kiln\n');
      const inspect = JSON.parse(kilnAt(base.root, ['inspect', 'hello']).stdout)[0];
      expect(inspect.Config.Cmd).toEqual(['sh', '-c', 'cat $GREETING_FILE /app/built.txt']);
      expect(inspect.Config.WorkingDir).toBe('/app');
      expect(inspect.Config.Env).toContain('GREETING_FILE=/app/greeting.txt');
    } finally {
      await out.cleanup();
    }
  });

  it('-o type=docker writes an archive skopeo copies into an OCI layout', async () => {
    const out = await tempDir();
    try {
      const tar = join(out.dir, 'x.tar');
      expect(build(['-o', `type=docker,dest=${tar}`, '-t', 'x', join(REPO_ROOT, 'fixtures/hello')]).status).toBe(0);
      execFileSync('skopeo', ['copy', '-q', `docker-archive:${tar}`, `oci:${join(out.dir, 'oci')}:x`]);
      const info = JSON.parse(execFileSync('skopeo', ['inspect', `oci:${join(out.dir, 'oci')}:x`], { encoding: 'utf8' }));
      expect(info.Layers.length).toBeGreaterThanOrEqual(3);
    } finally {
      await out.cleanup();
    }
  });

  it('gives the same digest in two empty stores with SOURCE_DATE_EPOCH', async () => {
    const dirs = [await tempDir(), await tempDir()];
    try {
      const ids: string[] = [];
      for (const d of dirs) {
        const root = join(d.dir, 'store');
        await loadBusybox(root);
        const meta = join(d.dir, 'meta.json');
        const r = kilnAt(root, ['build', '-q', '--metadata-file', meta, join(REPO_ROOT, 'fixtures/hello')], {
          env: { ...process.env, SOURCE_DATE_EPOCH: '1700000000' },
        });
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
        ids.push(JSON.parse(readFileSync(meta, 'utf8'))['containerimage.digest']);
      }
      expect(ids[0]).toMatch(/^sha256:[a-f0-9]{64}$/);
      expect(ids[1]).toBe(ids[0]);
    } finally {
      for (const d of dirs) await d.cleanup();
    }
  });

  it('a changed file invalidates only the steps that read it', () => {
    const dir = context({
      Dockerfile: `FROM ${base.image}\nRUN echo one > /one\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy\n`,
      'a.txt': 'v1',
    });
    expect(build([dir]).status).toBe(0);
    writeFileSync(join(dir, 'a.txt'), 'v2');
    const r = build([dir]);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('1/3 steps cached');
  });

  it('a fully cached rebuild gives the same image ID; a changed file gives a new one', () => {
    const dir = context({
      Dockerfile: `FROM ${base.image}\nENV STAGE=one\nWORKDIR /work\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy\nLABEL built=yes\nCMD ["cat", "/copy"]\n`,
      'a.txt': 'v1',
    });
    const id = () => {
      const r = build(['-q', dir]);
      expect(r.status).toBe(0);
      return r.stdout.trim();
    };
    const first = id();
    expect(first).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(id()).toBe(first);
    writeFileSync(join(dir, 'a.txt'), 'v2');
    const changed = id();
    expect(changed).not.toBe(first);
    expect(id()).toBe(changed);
  });

  describe('bad input gets one line naming the Dockerfile line', () => {
    it('a COPY source missing from the context', () => {
      const dir = context({ Dockerfile: `FROM ${base.image}\nCOPY missing.txt /x\n` });
      const r = build(['-q', dir]);
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/Dockerfile:2: .*"\/missing.txt": not found/);
    });

    it('a RUN that exits non-zero', () => {
      const dir = context({ Dockerfile: `FROM ${base.image}\nRUN echo doomed; exit 3\n` });
      const r = build(['-q', dir]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/Dockerfile:2: process "\/bin\/sh -c echo doomed; exit 3" did not complete successfully: exit code: 3\n$/);
      // The step's last output lines come above the error, as buildx shows them.
      expect(r.stderr).toContain('   doomed\n');
    });

    it('a --from naming no stage or image', () => {
      const dir = context({ Dockerfile: `FROM ${base.image}\nCOPY --from=nowhere /x /x\n` });
      const r = build(['-q', dir]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/Dockerfile:2: /);
    });

    it('a dependency cycle', () => {
      const dir = context({ Dockerfile: `FROM ${base.image} AS a\nCOPY --from=b /x /x\nFROM ${base.image} AS b\nCOPY --from=a /y /y\n` });
      const r = build(['-q', dir]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/Dockerfile:\d+: .*(circular|later)/);
    });
  });
});
