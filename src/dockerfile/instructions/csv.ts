/**
 * One-line CSV as used for `--mount` and `--device` values: fields separated by `,`, optionally
 * double-quoted with `""` as an escaped quote. Error texts follow Go's encoding/csv ParseError,
 * which BuildKit shows to users (`parse error on line 1, column 7: bare " in non-quoted-field`).
 */

export class CsvError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CsvError';
  }
}

const BARE_QUOTE = 'bare " in non-quoted-field';
const BAD_QUOTE = 'extraneous or missing " in quoted-field';

function byteLength(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** Splits one CSV record. Column numbers in errors are 1-based byte offsets, as in Go. */
export function csvFields(input: string): string[] {
  let line = input;
  if (line.endsWith('\r\n')) line = line.slice(0, -2);
  else if (line.endsWith('\n')) line = line.slice(0, -1);
  // An empty value is Go's io.EOF.
  if (line.length === 0) throw new CsvError('EOF');
  const fail = (i: number, why: string) =>
    new CsvError(`parse error on line 1, column ${byteLength(line.slice(0, i)) + 1}: ${why}`);
  const out: string[] = [];
  let pos = 0;
  for (;;) {
    if (pos >= line.length || line[pos] !== '"') {
      const comma = line.indexOf(',', pos);
      const field = comma >= 0 ? line.slice(pos, comma) : line.slice(pos);
      const q = field.indexOf('"');
      if (q >= 0) throw fail(pos + q, BARE_QUOTE);
      out.push(field);
      if (comma < 0) return out;
      pos = comma + 1;
      continue;
    }
    // quoted field
    pos++;
    let field = '';
    for (;;) {
      const q = line.indexOf('"', pos);
      if (q < 0) throw fail(pos, BAD_QUOTE);
      field += line.slice(pos, q);
      pos = q + 1;
      const next = line[pos];
      if (next === '"') {
        field += '"';
        pos++;
        continue;
      }
      if (next === ',') {
        out.push(field);
        pos++;
        break;
      }
      if (pos >= line.length) {
        out.push(field);
        return out;
      }
      throw fail(pos - 1, BAD_QUOTE);
    }
  }
}
