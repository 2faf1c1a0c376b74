/**
 * Retry policy: exponential backoff with jitter, bounded both by the number of attempts and by the
 * total time spent, so a flaky registry costs seconds, not an afternoon. A 429's `Retry-After` is
 * honoured when it fits in what is left of the budget.
 */

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  /** Delay before the first retry; doubles each time. */
  baseDelayMs: number;
  /** No single wait is longer than this (Retry-After excepted, up to the budget). */
  maxDelayMs: number;
  /** No retry starts after this much time since the first attempt. */
  budgetMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, baseDelayMs: 250, maxDelayMs: 8_000, budgetMs: 120_000 };

export class Backoff {
  private readonly started = Date.now();
  private tries = 1;

  constructor(readonly policy: RetryPolicy = DEFAULT_RETRY) {}

  get attempt(): number {
    return this.tries;
  }

  /** Time left in the budget. */
  get remainingMs(): number {
    return Math.max(0, this.policy.budgetMs - (Date.now() - this.started));
  }

  /**
   * The wait before the next attempt, or undefined when attempts or time are used up. A server's
   * `retryAfterMs` replaces the computed delay; one longer than the remaining budget ends retrying.
   */
  next(retryAfterMs?: number): number | undefined {
    if (this.tries >= this.policy.attempts) return undefined;
    let delay: number;
    if (retryAfterMs !== undefined) {
      delay = retryAfterMs;
    } else {
      const exp = Math.min(this.policy.maxDelayMs, this.policy.baseDelayMs * 2 ** (this.tries - 1));
      // Full jitter on the upper half keeps parallel downloads from retrying in lockstep.
      delay = exp / 2 + Math.random() * (exp / 2);
    }
    if (delay > this.remainingMs) return undefined;
    this.tries++;
    return delay;
  }
}

/** `Retry-After`: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Statuses worth another attempt: the server or something in front of it had a bad moment. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status === 500 || status === 502 || status === 503 || status === 504;
}
