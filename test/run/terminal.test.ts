/**
 * `kiln run -it` in a real terminal (tmux): the shell shows its prompt, runs what is typed, sees a
 * terminal that follows the window's size, and its exit status is kiln's; `start -ai` gives a created -it container the terminal
 * again; SIGTERM to a foreground `kiln run` reaches the container's main process. As root and as
 * an unprivileged user.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../conformance/harness.js';
import { KILN_BIN } from '../helpers/kiln.js';
import { ok, runContext, type Mode, type RunContext } from './context.js';

function tmux(...args: string[]): string {
  return execFileSync('tmux', args, { encoding: 'utf8' });
}

/** The pane's text once `pattern` shows up in it. */
async function screenShows(session: string, pattern: RegExp): Promise<string> {
  let screen = '';
  for (let i = 0; i < 300; i++) {
    screen = tmux('capture-pane', '-p', '-t', session);
    if (pattern.test(screen)) return screen;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the terminal never showed ${pattern}; it shows:\n${screen}`);
}

/** The line the tmux session's shell writes to `file` once kiln exits. */
async function statusIn(file: string): Promise<string> {
  for (let i = 0; i < 300; i++) {
    const r = spawnSync('cat', [file], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.includes('exited')) return r.stdout.trim();
    await new Promise((res) => setTimeout(res, 100));
  }
  return 'kiln did not exit';
}

describe.each<Mode>(['root', 'rootless'])('kiln run in a terminal (%s)', (mode) => {
  let c: RunContext;

  beforeAll(async () => {
    if (spawnSync('tmux', ['-V']).status !== 0) throw new Error('tmux is not installed; the terminal tests need it: apt-get install -y tmux');
    c = await runContext(mode);
  }, 180_000);

  afterAll(async () => {
    await c?.cleanup();
  }, 60_000);

  /** The shell command that runs kiln as the test's user. */
  const kilnCommand = (args: string[]) => {
    const quoted = [process.execPath, KILN_BIN, '--root', c.root, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    // setpriv execs kiln itself as the user, so signals reach kiln and nothing in between.
    return c.user ? `setpriv --reuid=${c.user} --regid=${c.user} --init-groups -- env HOME=/ ${quoted}` : quoted;
  };

  it('-it gives the shell a terminal: prompt, commands, tty, window size, exit status', async () => {
    const session = `kiln-run-${mode}-${process.pid}`;
    const done = join(c.dir, 'status');
    tmux('new-session', '-d', '-s', session, '-x', '100', '-y', '30', '-c', REPO_ROOT, `${kilnCommand(['run', '--rm', '-it', c.image, 'sh'])}; echo "kiln exited $?" > ${done}; sleep 600`);
    try {
      await screenShows(session, /^\/ #/m);
      tmux('send-keys', '-t', session, 'echo "answer $((6 * 7))"; [ -t 0 ] && echo "stdin is a terminal"; tty; stty size', 'Enter');
      const screen = await screenShows(session, /^30 100$/m);
      expect(screen).toMatch(/^answer 42$/m);
      expect(screen).toMatch(/^stdin is a terminal$/m);
      // ttyname() finds the terminal (programs such as tty, ssh or gpg ask for it).
      expect(screen).toMatch(/^\/dev\/console$/m);
      // The terminal resized: the container's follows.
      tmux('resize-window', '-t', session, '-x', '80', '-y', '20');
      tmux('send-keys', '-t', session, 'clear; stty size', 'Enter');
      await screenShows(session, /^20 80$/m);
      tmux('send-keys', '-t', session, 'exit 5', 'Enter');
      expect(await statusIn(done)).toBe('kiln exited 5');
    } finally {
      spawnSync('tmux', ['kill-session', '-t', session]);
    }
  }, 90_000);

  it('start -ai gives a -it container the terminal again; its files persist across starts', async () => {
    ok(await c.kiln(['create', '-it', '--name', 'console', c.image, 'sh']));
    const session = `kiln-start-${mode}-${process.pid}`;
    for (const [round, expected] of [[1, 'visits 1'], [2, 'visits 2']] as const) {
      const done = join(c.dir, `start-status-${round}`);
      tmux('new-session', '-d', '-s', session, '-x', '90', '-y', '25', '-c', REPO_ROOT, `${kilnCommand(['start', '-ai', 'console'])}; echo "kiln exited $?" > ${done}; sleep 600`);
      try {
        await screenShows(session, /^\/ #/m);
        tmux('send-keys', '-t', session, 'echo x >> /visits; echo "visits $(wc -l < /visits)"; stty size', 'Enter');
        const screen = await screenShows(session, /^25 90$/m);
        expect(screen).toMatch(new RegExp(`^${expected}$`, 'm'));
        tmux('send-keys', '-t', session, `exit ${round + 10}`, 'Enter');
        expect(await statusIn(done)).toBe(`kiln exited ${round + 10}`);
      } finally {
        spawnSync('tmux', ['kill-session', '-t', session]);
      }
    }
    ok(await c.kiln(['rm', 'console']));
  }, 90_000);

  it("SIGTERM to a foreground kiln run reaches the container's main process", async () => {
    const argv = ['run', '--rm', c.image, 'sh', '-c', 'trap "echo got TERM; exit 0" TERM; echo ready; while true; do sleep 0.1; done'];
    const child = spawn('sh', ['-c', `exec ${kilnCommand(argv)}`], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready')) resolve();
      });
      child.once('close', () => resolve());
    });
    child.kill('SIGTERM');
    const status = await new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    expect(err).toBe('');
    expect(out).toBe('ready\ngot TERM\n');
    expect(status).toBe(0);
  });
});
