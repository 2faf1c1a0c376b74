/**
 * Starting sandbox helpers without forking kiln.
 *
 * Node starts a child with fork() + exec(), and fork() copies the page tables of the whole kiln
 * process: measured here, 5 ms for a fresh 50 MB Node and 20-40 ms at 150-350 MB, the size of an
 * engine holding a build graph. That would be most of a RUN step's budget. So a RUN is started by a
 * long-lived `/bin/sh` (a process of about a megabyte) that kiln launches once: kiln writes the
 * step's scaffolding directory to its stdin, the spawner forks a subshell that sources the
 * directory's `run.sh` (written by kiln: redirections onto FIFOs, then one exec of the helper's argv,
 * every word single-quoted) and reports `pid ID PID` and `exit ID STATUS` on its stdout.
 *
 * Output travels through FIFOs in a tmpfs. kiln holds a read end and a spare write end of each, so a
 * read never sees end-of-file before the helper has opened its end, and closes the spare once the
 * helper has exited: the stream then ends after the last byte. FIFO sets ("slots") are made once
 * (mkfifo) and reused.
 *
 * Lifetime: the spawner runs in its own session (Ctrl-C on kiln's terminal does not reach it). When
 * kiln exits or dies, the spawner's stdin reaches end-of-file and it SIGKILLs its process group, which
 * holds every helper it started; each helper's `--kill-child` then takes its sandbox's PID namespace
 * down. Steps with secrets do not come here: their values travel through pipes of a directly spawned
 * helper and never touch a file (see run.ts).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, constants as fsc, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { tempName } from '../oci/layout/fs.js';
import { ownerTag } from '../store/owner.js';

/** A started helper, however it was started. */
export interface HelperHandle {
  stdout: Readable;
  stderr: Readable;
  /** fd 3 of the helper: setup errors and the `ok` line (script.ts). */
  status: Readable;
  /** Resolves with the helper's exit status once it and its output are done. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILLs the helper; its sandbox dies with it. */
  kill(): void;
}

const SPAWNER_SCRIPT = `while IFS=' ' read -r id dir; do
  (
    ( read -r p _ </proc/self/stat; echo "pid $id $p"; . "$dir/run.sh" )
    echo "exit $id $?"
  ) &
done
kill -KILL 0
`;

interface Slot {
  dir: string;
}

interface Pending {
  onPid: (pid: number) => void;
  onExit: (code: number) => void;
}

class Spawner {
  private readonly child: ChildProcess;
  private readonly pending = new Map<string, Pending>();
  private readonly free: Slot[] = [];
  private buffer = '';
  private next = 0;
  dead = false;

  constructor(private readonly base: string) {
    this.child = spawn('/bin/sh', ['-c', SPAWNER_SCRIPT], {
      // The helper finds cat/chmod/chown on this PATH (script.ts); nothing else of kiln's environment passes.
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
      stdio: ['pipe', 'pipe', 'ignore'],
      detached: true,
    });
    this.child.unref();
    (this.child.stdin as unknown as Socket).unref?.();
    (this.child.stdout as unknown as Socket).unref?.();
    this.child.stdout!.on('data', (d: Buffer) => this.onData(d.toString('utf8')));
    this.child.once('exit', () => {
      this.dead = true;
      for (const p of this.pending.values()) p.onExit(137);
      this.pending.clear();
      if (spawner === this) spawner = undefined;
    });
    this.child.stdin!.on('error', () => undefined);
  }

  private onData(text: string): void {
    this.buffer += text;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const [kind, id, value] = this.buffer.slice(0, nl).split(' ');
      this.buffer = this.buffer.slice(nl + 1);
      const p = this.pending.get(id ?? '');
      if (!p) continue;
      if (kind === 'pid') p.onPid(Number(value));
      else if (kind === 'exit') {
        this.pending.delete(id!);
        p.onExit(Number(value));
      }
    }
  }

  private slot(): Slot {
    const reused = this.free.pop();
    if (reused) return reused;
    const dir = join(this.base, `${tempName(ownerTag())}.slot`);
    mkdirSync(dir, { mode: 0o700 });
    const r = spawnSync('mkfifo', ['-m', '0600', join(dir, 'out'), join(dir, 'err'), join(dir, 'status')]);
    if (r.status !== 0) throw new Error(`mkfifo failed: ${String(r.stderr)}`);
    return { dir };
  }

  launch(argv: string[]): HelperHandle {
    const slot = this.slot();
    const id = String(++this.next);
    const open = (name: string) => {
      const path = join(slot.dir, name);
      // Read end first (so opening a write end cannot fail), then kiln's spare write end.
      const rfd = openSync(path, fsc.O_RDONLY | fsc.O_NONBLOCK);
      const wfd = openSync(path, fsc.O_WRONLY | fsc.O_NONBLOCK);
      const stream = new Socket({ fd: rfd, readable: true, writable: false });
      return { stream, wfd };
    };
    const out = open('out');
    const err = open('err');
    const status = open('status');
    writeFileSync(
      join(slot.dir, 'run.sh'),
      `exec </dev/null >${q(join(slot.dir, 'out'))} 2>${q(join(slot.dir, 'err'))} 3>${q(join(slot.dir, 'status'))}\nexec ${argv.map(q).join(' ')}\n`,
    );
    let pid: number | undefined;
    let killed = false;
    let reaped = false;
    const kill = () => {
      killed = true;
      // After the exit report the pid may already belong to another process.
      if (pid !== undefined && !reaped) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    };
    const code = new Promise<number>((resolve) => {
      this.pending.set(id, {
        onPid: (p) => {
          pid = p;
          if (killed) kill();
        },
        onExit: (c) => {
          reaped = true;
          resolve(c);
        },
      });
    });
    const streams = [out.stream, err.stream, status.stream];
    const ended = Promise.all(streams.map((s) => new Promise<void>((r) => (s.readableEnded || s.destroyed ? r() : s.once('close', () => r())))));
    const exited = code.then(async (c) => {
      // The helper is gone: drop kiln's spare writers so each stream ends after its last byte.
      for (const w of [out.wfd, err.wfd, status.wfd]) closeSync(w);
      await ended;
      this.free.push(slot);
      return { code: c, signal: null };
    });
    this.child.stdin!.write(`${id} ${slot.dir}\n`);
    return { stdout: out.stream, stderr: err.stream, status: status.stream, exited, kill };
  }
}

/** Single-quotes a word for sh: every byte literal. */
function q(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

let spawner: Spawner | undefined;

/** Starts `argv` through the process's spawner, creating it (under `base`, a tmpfs directory) on first use. */
export function launchViaSpawner(base: string, argv: string[]): HelperHandle {
  if (!spawner || spawner.dead) spawner = new Spawner(base);
  return spawner.launch(argv);
}
