/**
 * Sizes, durations and times printed the way the docker CLI prints them (its `go-units` package and
 * Go's `fmt`), so scripts and eyes used to `docker images` read kiln's output the same way.
 */

const DECIMAL_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];

/** Go's `%.<precision>g`: shortest form with that many significant digits, no trailing zeros. */
export function formatG(value: number, precision: number): string {
  if (value === 0) return '0';
  const rounded = Number(value.toPrecision(precision));
  const exp = Math.floor(Math.log10(Math.abs(rounded)));
  if (exp < -4 || exp >= precision) {
    const [mantissa, e] = value.toExponential(precision - 1).split('e') as [string, string];
    const n = Number(e);
    return `${stripZeros(mantissa)}e${n < 0 ? '-' : '+'}${String(Math.abs(n)).padStart(2, '0')}`;
  }
  return stripZeros(value.toFixed(Math.max(0, precision - 1 - exp)));
}

function stripZeros(s: string): string {
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

/**
 * go-units `HumanSizeWithPrecision`: decimal (1000-based) units. `docker images` and
 * `docker history` use precision 3 (`4.26MB`); `docker system df` and prune totals use 4 (`HumanSize`).
 */
export function humanSize(bytes: number, precision = 3): string {
  let size = bytes;
  let i = 0;
  while (size >= 1000 && i < DECIMAL_UNITS.length - 1) {
    size /= 1000;
    i++;
  }
  return `${formatG(size, precision)}${DECIMAL_UNITS[i]}`;
}

/** go-units `HumanDuration`: `Less than a second`, `About a minute`, `3 weeks`, `2 years`. */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.trunc(ms / 60_000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.trunc(ms / 3_600_000 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.trunc(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`;
  return `${Math.trunc(Math.trunc(ms / 3_600_000) / 24 / 365)} years`;
}

/** `2 months ago`, as docker's CREATED columns; `N/A` for an image that does not say when it was made. */
export function createdSince(created: Date | undefined, now = Date.now()): string {
  if (!created) return 'N/A';
  return `${humanDuration(now - created.getTime())} ago`;
}

/** Go's `time.Time.String()` in UTC (`2024-01-01 00:00:00 +0000 UTC`), docker's `CreatedAt` of images. */
export function goTimeString(created: Date | undefined): string {
  if (!created) return '';
  const iso = created.toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} +0000 UTC`;
}

/** RFC 3339 in UTC without fractions (`2024-01-01T00:00:00Z`), docker's `CreatedAt` of history rows. */
export function rfc3339(created: Date | undefined): string {
  if (!created) return '';
  return `${created.toISOString().slice(0, 19)}Z`;
}

/** An image config's `created`, when it is a valid time. */
export function parseCreated(value: string | undefined): Date | undefined {
  if (!value) return undefined;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** Docker's 12-hex-digit short image ID. */
export function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}

/** docker's `stringutils.Ellipsis`: at most `max` characters, the last one `…` when cut. */
export function ellipsis(s: string, max: number): string {
  const chars = [...s];
  if (chars.length <= max) return s;
  return `${chars.slice(0, max - 1).join('')}…`;
}
