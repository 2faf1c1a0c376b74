/** `kiln check` / `kiln build --check`: read the Dockerfile, run the checks, print them. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InputFileError } from '../errors.js';
import type { CheckOptions } from './commands/check.js';

export interface DockerfileSource {
  /** The name errors and warnings show (`Dockerfile` for standard input). */
  name: string;
  text: string;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The Dockerfile a build or check uses: `-f PATH`, `-f -` (standard input) or CONTEXT/Dockerfile. */
export async function readDockerfile(context: string, file: string | undefined): Promise<DockerfileSource> {
  if (file === '-') return { name: 'Dockerfile', text: await readStdin() };
  const path = file ?? join(context, 'Dockerfile');
  try {
    return { name: path, text: await readFile(path, 'utf8') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file or directory' : code === 'EISDIR' ? 'is a directory' : String(code ?? err);
    throw new InputFileError(path, `failed to read Dockerfile: ${reason}`, {
      hint: file ? undefined : 'name the Dockerfile with -f PATH, or - to read it from standard input',
    });
  }
}

/** Runs the checks and prints one line per warning; returns the exit status. */
export async function runCheck(context: string, options: CheckOptions): Promise<number> {
  const source = await readDockerfile(context, options.file);
  // Loaded here, not at the top: `kiln build` reads the Dockerfile through this module too.
  const { checkDockerfile } = await import('../dockerfile/checks/index.js');
  const report = checkDockerfile(source.text, {
    file: source.name,
    buildArgs: options.buildArg,
    ...(options.target ? { target: options.target } : {}),
  });
  const out: string[] = [];
  for (const w of report.warnings) out.push(`${w.location.file}:${w.location.line}: ${w.rule}: ${w.message}`);
  const n = report.warnings.length;
  out.push(n === 0 ? 'Check complete, no warnings found.' : `Check complete, ${n} warning${n === 1 ? ' has' : 's have'} been found!`);
  process.stdout.write(`${out.join('\n')}\n`);
  if (report.failed) {
    const rules = [...new Set(report.warnings.map((w) => w.rule))].join(', ');
    process.stderr.write(`kiln: lint violation found for rules: ${rules}\n`);
    return 1;
  }
  return 0;
}
