/**
 * Typed errors. Every failure a user can cause (bad Dockerfile, bad flag, missing file, registry
 * refusal) is a KilnError: the CLI prints its one-line `describe()` and exits non-zero. Anything else
 * that escapes is a defect in kiln, reported as an internal error.
 */

export interface KilnErrorOptions {
  /** What the user can do about it, shown after the message. */
  hint?: string;
  cause?: unknown;
  /** Process exit status the CLI uses for this error (default 1). */
  exitCode?: number;
  /**
   * Lines printed above the one-line message (a failed RUN's last output lines), so the error
   * itself stays one line while the user still sees why.
   */
  context?: string[];
}

export class KilnError extends Error {
  readonly code: string;
  readonly hint: string | undefined;
  readonly exitCode: number;
  readonly context: string[];

  constructor(code: string, message: string, options: KilnErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? 1;
    this.context = options.context ?? [];
  }

  /** The single line the CLI prints. */
  describe(): string {
    const line = this.message.replace(/\s*\n\s*/g, ' ');
    return this.hint ? `${line} (hint: ${this.hint})` : line;
  }
}

/** Where in a Dockerfile something happened; lines are 1-based. */
export interface SourceLocation {
  file: string;
  line: number;
  endLine?: number;
}

/** A Dockerfile that cannot be parsed or converted; printed as `Dockerfile:LINE: message`. */
export class DockerfileError extends KilnError {
  readonly location: SourceLocation | undefined;
  /** The message without the location prefix. */
  readonly detail: string;

  constructor(detail: string, location?: SourceLocation, options: KilnErrorOptions = {}) {
    super('DOCKERFILE', location ? `${location.file}:${location.line}: ${detail}` : detail, options);
    this.detail = detail;
    this.location = location;
  }

  /** The same error placed at a location (used when a lower layer did not know the file or line). */
  at(location: SourceLocation): DockerfileError {
    return new DockerfileError(this.detail, location, { hint: this.hint, cause: this.cause, exitCode: this.exitCode, context: this.context });
  }
}

/** A command line that kiln cannot act on: unknown flag, missing argument, malformed value. */
export class UsageError extends KilnError {
  constructor(message: string, options: KilnErrorOptions = {}) {
    super('USAGE', message, { exitCode: 1, ...options });
  }
}

/** A file the user named (context, Dockerfile, ignore file) that cannot be read. */
export class InputFileError extends KilnError {
  constructor(readonly path: string, message: string, options: KilnErrorOptions = {}) {
    super('INPUT', `${path}: ${message}`, options);
  }
}

export function isKilnError(err: unknown): err is KilnError {
  return err instanceof KilnError;
}
