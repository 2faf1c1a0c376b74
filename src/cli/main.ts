/**
 * kiln's command line. Each command registers its flags here cheaply and loads its implementation
 * only when it runs, so `kiln --help` or a fully cached build pays for no module it does not use.
 */
import { Command, CommanderError } from 'commander';
import { DockerfileError, KilnError, UsageError } from '../errors.js';
import { addGlobalOptionsToCommands, registerGlobalOptions } from './commands/global.js';
import { commands, soloCommands } from './commands/index.js';

export const VERSION = '0.1.0';

/**
 * The command `argv` runs when it is one of the solo commands, found the way commander finds it:
 * the first word after the program's own options (only `--root DIR` qualifies; any other option
 * first, like `--help`, needs every command).
 */
export function soloCommandOf(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--root') {
      i++;
      continue;
    }
    if (arg.startsWith('--root=')) continue;
    if (arg.startsWith('-')) return undefined;
    return Object.hasOwn(soloCommands, arg) ? arg : undefined;
  }
  return undefined;
}

/** The program with every command, or, given `only`, with just that one (see `soloCommands`). */
export function buildProgram(only?: string): Command {
  const program = new Command('kiln')
    .description('Rootless, daemonless container image builder')
    .version(VERSION, '-v, --version')
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({
      // Commander's own usage errors become a UsageError so they print like every other error.
      outputError: () => undefined,
    });
  registerGlobalOptions(program);
  const solo = only !== undefined ? soloCommands[only] : undefined;
  if (solo) solo(program);
  else for (const register of commands) register(program);
  addGlobalOptionsToCommands(program);
  return program;
}

/** Runs kiln with the given arguments and returns the exit status; never throws for user errors. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram(soloCommandOf(argv));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    return report(err);
  }
}

function report(err: unknown): number {
  if (err instanceof CommanderError) {
    // --help and --version end through exitOverride too; they are not failures.
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') {
      return 0;
    }
    return report(new UsageError(err.message.replace(/^error: /, '')));
  }
  const fsError = filesystemError(err);
  if (fsError) return report(fsError);
  if (err instanceof KilnError && err.context.length) process.stderr.write(`${err.context.join('\n')}\n`);
  if (err instanceof DockerfileError) {
    process.stderr.write(`${err.describe()}\n`);
    return err.exitCode;
  }
  if (err instanceof KilnError) {
    process.stderr.write(`kiln: ${err.describe()}\n`);
    return err.exitCode;
  }
  throw err;
}

/** Errno codes that mean the file system refused, not that kiln is broken: worth one line, not a stack. */
const FILESYSTEM_CODES: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
};

/**
 * A Node file-system error that escaped a command (a store directory another user owns, a full
 * disk), as a KilnError naming the operation and the path, or undefined for anything else.
 */
function filesystemError(err: unknown): KilnError | undefined {
  if (!(err instanceof Error) || err instanceof KilnError) return undefined;
  const e = err as NodeJS.ErrnoException;
  const what = e.code ? FILESYSTEM_CODES[e.code] : undefined;
  if (!what || !e.path) return undefined;
  const hint =
    e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'EROFS'
      ? 'the store (--root or KILN_ROOT) must be writable by this user; give each user a store of their own'
      : 'free some space, for example with `kiln prune`';
  return new KilnError('FILESYSTEM', `${what}: ${e.syscall ?? 'access'} ${e.path}`, { hint, cause: err });
}
