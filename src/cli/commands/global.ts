/**
 * Options every command shares. `--root` is accepted before the command (`kiln --root DIR images`,
 * or `$KILN_ROOT`) and after it (`kiln images --root DIR`). Options are positional, as docker's
 * are: a flag belongs to the command it follows, so `kiln system df -v` means verbose while
 * `kiln -v` still prints the version.
 */
import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import { defaultStoreRoot } from '../../store/root.js';

const ROOT_HELP = 'image store directory (default: $KILN_ROOT, else /var/lib/kiln as root, else ~/.local/share/kiln)';

/**
 * Declares the shared options on the program; call before the commands are registered (commands
 * that pass their options through, like `unshare`, need positional options on the program first).
 */
export function registerGlobalOptions(program: Command): void {
  program.enablePositionalOptions();
  program.addOption(new Option('--root <dir>', ROOT_HELP).env('KILN_ROOT'));
}

/** Lets every registered command take the shared options after its name too; call after registering them. */
export function addGlobalOptionsToCommands(program: Command): void {
  const visit = (cmd: Command): void => {
    for (const sub of cmd.commands) {
      if (sub.commands.length) visit(sub);
      else if (!sub.options.some((o) => o.long === '--root')) sub.option('--root <dir>', ROOT_HELP);
    }
  };
  visit(program);
}

/** The store directory a command works on: `--root` (after or before the command), `$KILN_ROOT`, the default. */
export function storeRoot(cmd: Command): string {
  // The flag nearest the command wins; a value from $KILN_ROOT only when no flag was given.
  let fromEnv: string | undefined;
  for (let c: Command | null = cmd; c; c = c.parent) {
    const value = c.getOptionValue('root') as string | undefined;
    if (value === undefined) continue;
    if (c.getOptionValueSource('root') === 'cli') return resolve(value);
    fromEnv ??= value;
  }
  return fromEnv ? resolve(fromEnv) : defaultStoreRoot();
}
