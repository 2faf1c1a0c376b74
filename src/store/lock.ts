/**
 * The store's cross-process lock, around every change of shared metadata (index.json, leases) and
 * around garbage collection. proper-lockfile uses an atomic mkdir plus a heartbeat on the lock's
 * mtime, so a holder killed with SIGKILL stops refreshing it and the lock goes stale after
 * `staleMs` instead of blocking the store forever. An in-process queue comes first, so callers in
 * one process take turns without polling the filesystem.
 */
import lockfile from 'proper-lockfile';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StoreLockError } from './errors.js';

export interface StoreLockOptions {
  /** A lock whose heartbeat is older than this is taken over (proper-lockfile minimum: 5000). */
  staleMs?: number;
  /** How long to wait for the lock before failing with StoreLockError. */
  timeoutMs?: number;
}

export class StoreLock {
  readonly path: string;
  private readonly staleMs: number;
  private readonly timeoutMs: number;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly root: string,
    opts: StoreLockOptions = {},
  ) {
    this.path = join(root, 'store.lock');
    this.staleMs = Math.max(5000, opts.staleMs ?? 15_000);
    this.timeoutMs = opts.timeoutMs ?? 10 * 60_000;
  }

  /** Runs `fn` while holding the lock. Not re-entrant: `fn` must not call `run` again. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(() => this.runLocked(fn));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async runLocked<T>(fn: () => Promise<T>): Promise<T> {
    let compromised: Error | undefined;
    const release = await this.acquire((err) => {
      compromised = err;
    });
    let result: T;
    try {
      result = await fn();
    } finally {
      await release().catch(() => undefined);
    }
    if (compromised) {
      throw new StoreLockError(this.root, 'the store lock was lost while in use (the process stalled longer than the stale time)', {
        cause: compromised,
      });
    }
    return result;
  }

  private async acquire(onCompromised: (err: Error) => void): Promise<() => Promise<void>> {
    const deadline = Date.now() + this.timeoutMs;
    let delay = 5;
    for (;;) {
      try {
        return await lockfile.lock(this.root, {
          lockfilePath: this.path,
          realpath: false,
          stale: this.staleMs,
          retries: 0,
          onCompromised,
        });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
        if (Date.now() >= deadline) {
          throw new StoreLockError(this.root, `timed out after ${Math.round(this.timeoutMs / 1000)}s waiting for the store lock`, { cause: err });
        }
        await sleep(delay + Math.floor(Math.random() * delay));
        delay = Math.min(delay * 2, 200);
      }
    }
  }
}
