/** Typed failures of the sandbox: each one is a single line the CLI can print, with a fix where one exists. */
import { KilnError, type KilnErrorOptions } from '../errors.js';
import { goQuote } from '../dockerfile/parser/gostr.js';

/** The host cannot give kiln what a sandbox needs (namespaces, overlay, a tool), or setting one up failed. */
export class SandboxError extends KilnError {
  constructor(message: string, options: KilnErrorOptions = {}) {
    super('SANDBOX', message, options);
  }
}

/** Entering (or creating) kiln's user namespace failed. */
export class UserNamespaceError extends KilnError {
  constructor(message: string, options: KilnErrorOptions = {}) {
    super('USERNS', message, options);
  }
}

/** A `RUN --mount` that cannot be honoured: missing secret, target that is not a directory, unknown type. */
export class RunMountError extends KilnError {
  constructor(message: string, options: KilnErrorOptions = {}) {
    super('RUN_MOUNT', message, options);
  }
}

/** `USER` names a user or group the image does not have, or one the id mapping cannot represent. */
export class RunUserError extends KilnError {
  constructor(message: string, options: KilnErrorOptions = {}) {
    super('RUN_USER', message, options);
  }
}

/**
 * The command of a RUN step exited non-zero or was killed. The message is BuildKit's wording; `tail`
 * holds the last lines the command printed (secrets redacted) for the build log to show under it.
 */
export class RunFailedError extends KilnError {
  constructor(
    readonly command: string[],
    /** The command's exit status (128 + n when killed by signal n). */
    readonly status: number,
    readonly signal: NodeJS.Signals | undefined,
    readonly tail: string[],
    options: KilnErrorOptions = {},
  ) {
    const how = signal ? `${signal === 'SIGKILL' ? 'killed' : 'terminated by ' + signal}, exit code: ${status}` : `exit code: ${status}`;
    // Go's %q, as BuildKit words it: quotes and newlines in the command are escaped.
    super('RUN_FAILED', `process ${goQuote(displayCommand(command))} did not complete successfully: ${how}`, options);
  }

  /** The message followed by the last output lines, for renderers that show more than one line. */
  details(): string {
    return this.tail.length ? `${this.describe()}\n${this.tail.map((l) => `  > ${l}`).join('\n')}` : this.describe();
  }
}

/** The step was cancelled (Ctrl-C, SIGTERM, an AbortSignal); every sandbox process is gone when this is thrown. */
export class RunAbortedError extends KilnError {
  constructor(readonly command: string[], options: KilnErrorOptions = {}) {
    super('ABORTED', `process ${goQuote(displayCommand(command))} was cancelled`, { exitCode: 130, ...options });
  }
}

/** A command line as BuildKit prints it in its errors: the argv joined by spaces. */
export function displayCommand(command: string[]): string {
  const text = command.join(' ');
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}
