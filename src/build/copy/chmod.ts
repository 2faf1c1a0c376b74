/**
 * `--chmod` values as BuildKit accepts them: an octal number up to 07777, or a symbolic mode as in
 * chmod(1) (`u+x`, `go-w`, `u=rw,g=r,o=`, `a+X`, `g=u-w`, ...) applied with a zero umask, as
 * buildkitd runs.
 *
 * Where it applies (fsutil's copier): every copied file and directory gets it (symlinks have no mode
 * of their own); directories the copy creates on the way get the octal value's permission bits, or
 * 0755 when the value is symbolic or absent.
 */
import { CopyError } from './errors.js';

type Who = number;

/** One primitive change, applied in order. */
type Step =
  | { op: 'set' | 'clear'; bits: number }
  /** Set `bits` only when the original mode has an execute bit or the node is a directory. */
  | { op: 'X'; bits: number }
  /** Copy one class's rwx bits onto the classes in `to` (`+` adds, `-` removes, `=` replaces). */
  | { op: 'copy'; from: 'u' | 'g' | 'o'; to: Who; how: '+' | '-' | '=' };

export type ChmodSpec = { kind: 'octal'; text: string; mode: number } | { kind: 'symbolic'; text: string; steps: Step[] };

const U = 0o4700;
const G = 0o2070;
const O = 0o0007;
/** `a`, or no class given: everything but the sticky bit, which only `t` touches. */
const ALL = 0o6777;
const SHIFT = { u: 6, g: 3, o: 0 } as const;

/**
 * Parses a --chmod value.
 * @throws CopyError with BuildKit's wording for values that look numeric but are not valid octal.
 */
export function parseChmod(text: string): ChmodSpec {
  const nonOctal = () =>
    new CopyError('INVALID_CHMOD', `invalid chmod parameter: '${text}'. it should be octal string and between 0 and 07777`);
  if (/^[0-9]/.test(text)) {
    if (!/^[0-7]+$/.test(text)) throw nonOctal();
    const mode = parseInt(text, 8);
    if (mode > 0o7777) throw nonOctal();
    return { kind: 'octal', text, mode };
  }
  const steps = parseSymbolic(text);
  if (!steps) {
    throw new CopyError('INVALID_CHMOD', `invalid chmod parameter: '${text}': invalid syntax`, {
      hint: 'use an octal mode (0755) or a symbolic one (u+x, go-w, u=rw,g=r,o=r)',
    });
  }
  return { kind: 'symbolic', text, steps };
}

/** The mode a copied node gets from `--chmod` (symlinks keep theirs: the caller skips them). */
export function applyChmod(spec: ChmodSpec, mode: number, isDir: boolean): number {
  if (spec.kind === 'octal') return spec.mode & 0o7777;
  const original = mode & 0o7777;
  let m = original;
  for (const step of spec.steps) {
    switch (step.op) {
      case 'set':
        m |= step.bits;
        break;
      case 'clear':
        m &= ~step.bits;
        break;
      case 'X':
        if (isDir || (original & 0o111) !== 0) m |= step.bits;
        break;
      case 'copy': {
        const value = (m >> SHIFT[step.from]) & 0o7;
        for (const cls of ['u', 'g', 'o'] as const) {
          if ((step.to & classMask(cls)) === 0) continue;
          const shift = SHIFT[cls];
          if (step.how === '=') m &= ~(0o7 << shift);
          if (step.how === '-') m &= ~(value << shift);
          else m |= value << shift;
        }
        break;
      }
    }
  }
  return m & 0o7777;
}

/** Mode of directories a copy creates on the way to its destination. */
export function createdDirMode(spec: ChmodSpec | undefined): number {
  return spec?.kind === 'octal' ? spec.mode & 0o777 : 0o755;
}

function classMask(cls: 'u' | 'g' | 'o'): number {
  return cls === 'u' ? U : cls === 'g' ? G : O;
}

/** chmod(1) symbolic syntax: clause {, clause}; clause = [ugoa]* (op [rwxXst]* | op [ugo])+. */
function parseSymbolic(text: string): Step[] | undefined {
  if (text === '') return undefined;
  const steps: Step[] = [];
  let i = 0;
  for (;;) {
    let who = 0;
    while (i < text.length && 'ugoa'.includes(text[i]!)) {
      const c = text[i++]!;
      who |= c === 'u' ? U : c === 'g' ? G : c === 'o' ? O : ALL;
    }
    // One or more operations follow the class letters.
    let ops = 0;
    while (i < text.length && '+-='.includes(text[i]!)) {
      const how = text[i++] as '+' | '-' | '=';
      ops++;
      const mask = who === 0 ? ALL : who;
      let perm = 0;
      let sticky = false;
      let xCond = false;
      // As BSD setmode: `=` clears the classes when it is flushed with permissions, or at the end
      // when nothing was flushed; `g=u` alone only replaces the group's rwx with the user's.
      let equalDone = false;
      const flush = () => {
        const bits = (perm & mask) | (sticky ? 0o1000 : 0);
        if (how === '=') {
          steps.push({ op: 'clear', bits: mask | (sticky ? 0o1000 : 0) });
          if (bits) steps.push({ op: 'set', bits });
          equalDone = true;
        } else if (bits) {
          steps.push({ op: how === '+' ? 'set' : 'clear', bits });
        }
        perm = 0;
        sticky = false;
      };
      while (i < text.length && 'rwxXstugo'.includes(text[i]!)) {
        const c = text[i++]!;
        switch (c) {
          case 'r':
            perm |= 0o444;
            break;
          case 'w':
            perm |= 0o222;
            break;
          case 'x':
            perm |= 0o111;
            break;
          case 'X':
            if (how === '-') perm |= 0o111;
            else xCond = true;
            break;
          case 's':
            // Set-id bits belong to the user and group classes; `o+s` does nothing.
            if (who === 0 || (who & (U | G)) !== 0) perm |= 0o6000;
            break;
          case 't':
            if (who === 0 || (who & (U | G)) !== 0) sticky = true;
            break;
          default:
            if (perm || sticky) flush();
            if (how === '=') equalDone = true;
            if (xCond) {
              steps.push({ op: 'X', bits: 0o111 & mask });
              xCond = false;
            }
            steps.push({ op: 'copy', from: c as 'u' | 'g' | 'o', to: who === 0 ? U | G | O : who, how });
        }
      }
      if (perm || sticky || (how === '=' && !equalDone)) flush();
      if (xCond) steps.push({ op: 'X', bits: 0o111 & mask });
    }
    if (ops === 0) return undefined;
    if (i === text.length) return steps;
    if (text[i] !== ',') return undefined;
    i++;
    if (i === text.length) return undefined;
  }
}
