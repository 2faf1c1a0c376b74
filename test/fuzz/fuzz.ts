/**
 * `npm run fuzz [-- COUNT] [--seed N]`: feeds random and mutated Dockerfiles (seeded from the
 * conformance corpus and fixtures) through everything that reads a Dockerfile — parser, instruction
 * conversion, build planning, per-instruction word expansion and the build checks — plus random
 * words straight into the shell lexer. Only kiln's typed errors may come out; anything else is
 * printed with the input that caused it (saved under test/fuzz/crashes/) and the run exits 1.
 */
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../../src/errors.js';
import { checkDockerfile } from '../../src/dockerfile/checks/index.js';
import { EnvList, expandInstruction, lexers, parseDockerfile, planBuild, triggerHooks } from '../../src/dockerfile/instructions/index.js';
import { ShellLex, envFromRecord } from '../../src/dockerfile/shell/index.js';
import { REPO_ROOT, conformanceDir } from '../conformance/harness.js';

const args = process.argv.slice(2);
const count = Number(args.find((a) => /^\d+$/.test(a)) ?? 100_000);
const seedArg = args.indexOf('--seed');
let seed = seedArg >= 0 ? Number(args[seedArg + 1]) : 0x6b696c6e;

/** Small deterministic PRNG (mulberry32) so a failure can be replayed with --seed. */
function random(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
const int = (n: number): number => Math.floor(random() * n);

function corpus(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name === 'Dockerfile' || name.endsWith('.Dockerfile') || name.startsWith('Dockerfile')) out.push(readFileSync(p, 'utf8'));
    }
  };
  walk(conformanceDir());
  walk(join(REPO_ROOT, 'fixtures'));
  return out;
}

const TOKENS = [
  '\n', '\\\n', '`\n', ' ', '\t', '#', '# escape=`\n', '# syntax=x\n', '# check=skip=all;error=true\n', '<<EOF\n', '<<-"EOF"\n',
  'EOF\n', '${', '}', '$', '${A:-', '${A:?', '${A#', '${A//', '"', "'", '[', ']', '[\"a\", ', '=', '--mount=', 'type=cache,target=/x',
  '--from=', '--chown=', '--chmod=', '--platform=', 'FROM ', 'RUN ', 'COPY ', 'ADD ', 'ENV ', 'ARG ', 'ONBUILD ', 'HEALTHCHECK ',
  'CMD ', 'SHELL ', 'EXPOSE ', 'LABEL ', 'WORKDIR ', 'USER ', 'VOLUME ', 'STOPSIGNAL ', 'MAINTAINER ', ' AS ', 'scratch', '\u00a0',
  '\ufeff', '\u0000', '\r\n', '\\', '*', '**', '..', '/', '0', '-1', '99999999999999999999', 'NONE', '--interval=', '1h2m', ';',
];

function mutate(text: string, corpusTexts: string[]): string {
  let s = text;
  const rounds = 1 + int(6);
  for (let r = 0; r < rounds; r++) {
    const at = int(s.length + 1);
    switch (int(7)) {
      case 0: // insert a token
        s = s.slice(0, at) + pick(TOKENS) + s.slice(at);
        break;
      case 1: // delete a range
        s = s.slice(0, at) + s.slice(at + int(40));
        break;
      case 2: // flip a character
        if (s.length) s = s.slice(0, at) + String.fromCharCode(int(0x80)) + s.slice(at + 1);
        break;
      case 3: { // duplicate a line
        const lines = s.split('\n');
        const i = int(lines.length);
        lines.splice(i, 0, lines[i] ?? '');
        s = lines.join('\n');
        break;
      }
      case 4: { // splice in part of another file
        const other = pick(corpusTexts);
        const from = int(other.length + 1);
        s = s.slice(0, at) + other.slice(from, from + int(200)) + s.slice(at);
        break;
      }
      case 5: // truncate
        s = s.slice(0, at);
        break;
      default: { // random bytes
        let junk = '';
        for (let i = int(20); i > 0; i--) junk += String.fromCharCode(int(0x250));
        s = s.slice(0, at) + junk + s.slice(at);
      }
    }
  }
  return s;
}

function randomInput(corpusTexts: string[]): string {
  const kind = random();
  if (kind < 0.8) return mutate(pick(corpusTexts), corpusTexts);
  let s = '';
  for (let i = int(30); i > 0; i--) s += pick(TOKENS) + (random() < 0.3 ? pick(TOKENS) : '');
  return s;
}

/** Everything a build does with a Dockerfile before running anything. */
function exercise(text: string): void {
  const df = parseDockerfile(text);
  const { lex, rawLex } = lexers(df);
  const plan = planBuild(df, { lex, buildArgs: { A: 'x' }, defaultArgs: [['TARGETPLATFORM', 'linux/amd64']] }, triggerHooks);
  const env = new EnvList([['A', 'a b'], ['PATH', '/bin']]);
  for (const i of plan.reachable) {
    for (const ins of plan.stages[i]!.stage.instructions) expandInstruction(ins, { file: df.file, lex, rawLex, env, unmatched: new Set() });
  }
  checkDockerfile(text);
}

const lexer = new ShellLex('\\');
const backtickLexer = new ShellLex('`');
const env = envFromRecord({ A: 'abc', B: '', PATH: '/usr/bin:/bin' });

const corpusTexts = corpus();
const crashes: Array<{ input: string; error: unknown }> = [];
let typed = 0;
const started = Date.now();
for (let n = 0; n < count; n++) {
  const input = n % 10 === 9 ? randomWord() : randomInput(corpusTexts);
  try {
    if (n % 10 === 9) {
      lexer.processWordWithMatches(input, env);
      lexer.processWords(input, env);
      backtickLexer.processWord(input, env);
    } else {
      exercise(input);
    }
  } catch (err) {
    if (err instanceof KilnError) typed++;
    else crashes.push({ input, error: err });
  }
}

function randomWord(): string {
  let s = '';
  for (let i = int(12); i > 0; i--) s += pick(['$', '${', '}', 'A', 'B', ':-', ':+', '?', '#', '##', '%', '/', '//', '"', "'", '\\', '`', '*', 'x', ' ']);
  return s;
}

const seconds = ((Date.now() - started) / 1000).toFixed(1);
console.log(`fuzz: ${count} inputs in ${seconds}s, ${typed} typed errors, ${crashes.length} untyped exceptions`);
if (crashes.length) {
  const dir = join(REPO_ROOT, 'test/fuzz/crashes');
  mkdirSync(dir, { recursive: true });
  crashes.slice(0, 20).forEach((c, i) => {
    writeFileSync(join(dir, `crash-${i}.Dockerfile`), c.input);
    console.log(`--- crash-${i}: ${c.error instanceof Error ? c.error.stack : String(c.error)}`);
  });
  process.exitCode = 1;
}
