/**
 * Where the container tests run: a fresh store with the busybox test image, used by root or by an
 * unprivileged user with a subordinate id range (`kiln-sbx`, made as the sandbox tests make it),
 * through the real CLI. The user's store and files live in a directory it owns.
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { busyboxImportEnv, busyboxTar, BUSYBOX_IMAGE } from '../helpers/busybox.js';
import { kilnRun } from '../helpers/build.js';
import type { RunResult } from '../helpers/kiln.js';
import { ensurePackages, ensureUsers } from '../sandbox/users.js';

export type Mode = 'root' | 'rootless';

export interface RunContext {
  mode: Mode;
  /** A directory the kiln user owns (the store is `<dir>/store`). */
  dir: string;
  root: string;
  image: string;
  user: string | undefined;
  kiln(args: string[], opts?: { input?: string; env?: NodeJS.ProcessEnv }): Promise<RunResult>;
  /** Builds `dockerfile` (with `files` beside it) as `tag`. */
  build(tag: string, dockerfile: string, files?: Record<string, string>): Promise<void>;
  /** Makes `path` (under dir) belong to the kiln user. */
  own(path: string): void;
  cleanup(): Promise<void>;
}

export async function runContext(mode: Mode): Promise<RunContext> {
  if (process.getuid?.() !== 0) throw new Error('the container tests run as root: they also run kiln as an unprivileged user they create');
  ensurePackages();
  const user = mode === 'rootless' ? ensureUsers().user : undefined;
  const dir = await fsp.mkdtemp(join(tmpdir(), `kiln-run-${mode}-`));
  await fsp.chmod(dir, 0o755);
  const root = join(dir, 'store');
  const own = (path: string) => {
    if (user) execFileSync('chown', ['-R', `${user}:`, path]);
  };
  const tar = join(dir, 'busybox.tar');
  await fsp.copyFile(await busyboxTar(), tar);
  own(dir);
  const kiln = (args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}) =>
    kilnRun(root, args, { ...(user ? { user } : {}), ...(opts.input !== undefined ? { input: opts.input } : {}), env: opts.env ?? process.env, cwd: dir });
  const imported = await kiln(['import', tar, BUSYBOX_IMAGE], { env: busyboxImportEnv() });
  if (imported.status !== 0) throw new Error(`importing busybox as ${mode} failed: ${imported.stderr}`);
  return {
    mode,
    dir,
    root,
    image: BUSYBOX_IMAGE,
    user,
    kiln,
    own,
    async build(tag, dockerfile, files = {}) {
      const ctx = await fsp.mkdtemp(join(dir, 'ctx-'));
      await fsp.writeFile(join(ctx, 'Dockerfile'), dockerfile);
      for (const [name, content] of Object.entries(files)) await fsp.writeFile(join(ctx, name), content);
      own(ctx);
      const r = await kiln(['build', '-q', '-t', tag, ctx]);
      if (r.status !== 0) throw new Error(`kiln build of ${tag} failed (${r.status}): ${r.stderr}`);
    },
    async cleanup() {
      // Containers left by a failed test: stop them so their files can go.
      const ps = await kiln(['ps', '-aq', '--no-trunc']);
      const ids = ps.stdout.split('\n').filter(Boolean);
      if (ids.length) await kiln(['rm', '-f', ...ids]);
      if (user) await kiln(['unshare', 'rm', '-rf', root]);
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}

/** Fails with the command's output when it did not exit 0; answers its stdout. */
export function ok(r: RunResult, what = 'kiln'): string {
  if (r.status !== 0) throw new Error(`${what} exited ${r.status}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}
