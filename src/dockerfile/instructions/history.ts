/** Image-history text that depends on how instructions are represented. */
import { formatGoDuration } from './duration.js';
import type { HealthConfig } from './types.js';

/**
 * `created_by` of a HEALTHCHECK step: Go's `%+v` of the health config, e.g.
 * `HEALTHCHECK {Test:[CMD-SHELL curl -f localhost] Interval:30s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}`.
 */
export function healthcheckCreatedBy(h: HealthConfig): string {
  return (
    `HEALTHCHECK {Test:[${h.test.join(' ')}] Interval:${formatGoDuration(h.interval)} ` +
    `Timeout:${formatGoDuration(h.timeout)} StartPeriod:${formatGoDuration(h.startPeriod)} ` +
    `StartInterval:${formatGoDuration(h.startInterval)} Retries:${h.retries}}`
  );
}
