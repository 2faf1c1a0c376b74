/**
 * A real terminal for tests: a detached tmux session (on its own server socket, so tests never see
 * each other's sessions) running one command; the screen is read with capture-pane.
 */
import { execFileSync, spawnSync } from 'node:child_process';

export class Terminal {
  private readonly socket = `kiln-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  private readonly session = 'kiln';

  /**
   * Starts `command` (a shell command line) in a 120x40 terminal, in a clean environment (PATH, HOME,
   * TERM and `env`): no CI variable of the machine running the tests reaches it.
   */
  constructor(command: string, env: Record<string, string> = {}) {
    const vars = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', TERM: 'xterm-256color', LANG: 'C.UTF-8', ...env };
    const clean = ['env', '-i', ...Object.entries(vars).map(([k, v]) => `${k}=${v}`)].map(shellQuote).join(' ');
    this.tmux('new-session', '-d', '-s', this.session, '-x', '120', '-y', '40', `${clean} sh -c ${shellQuote(command)}; echo "[exited $?]"; sleep 600`);
  }

  private tmux(...args: string[]): string {
    return execFileSync('tmux', ['-L', this.socket, ...args], { encoding: 'utf8' });
  }

  /** The screen as text (with `history`, the scrolled-off lines too). */
  screen(history = false): string {
    return this.tmux('capture-pane', '-p', '-t', this.session, ...(history ? ['-S', '-2000'] : []));
  }

  /** The screen with its colour escapes. */
  screenWithColours(): string {
    return this.tmux('capture-pane', '-p', '-e', '-t', this.session, '-S', '-2000');
  }

  type(text: string): void {
    this.tmux('send-keys', '-t', this.session, '-l', text);
    this.tmux('send-keys', '-t', this.session, 'Enter');
  }

  /** Polls the screen until `test` passes (returns that screen) or the command exited. */
  async waitFor(test: (screen: string) => boolean, timeoutMs = 60_000, history = false): Promise<string> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const s = this.screen(history);
      if (test(s)) return s;
      if (Date.now() > end) throw new Error(`the terminal never showed what was expected; it shows:\n${s}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Waits for the command to end; answers its exit status. */
  async exitStatus(timeoutMs = 120_000): Promise<number> {
    const s = await this.waitFor((t) => /\[exited \d+\]/.test(t), timeoutMs, true);
    return Number(/\[exited (\d+)\]/.exec(s)![1]);
  }

  close(): void {
    spawnSync('tmux', ['-L', this.socket, 'kill-server']);
  }
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
