/**
 * Loads the terminal renderer (and with it ink and React) for a build whose progress goes to a terminal.
 *
 * ink decides once, when it is first evaluated, that a process with `CI` or `CONTINUOUS_INTEGRATION`
 * set draws no live frames, only the last one. kiln already chose the renderer as buildx does (`auto`
 * is plain in CI), so reaching here means the user asked for a live terminal (`--progress=tty`), and
 * ink must draw it: the variables are hidden while ink loads and put back as soon as it has.
 */
import type { TtyRenderer } from './tty.js';

const CI_VARIABLES = ['CI', 'CONTINUOUS_INTEGRATION'];

/**
 * How the launcher loads the renderer when it runs the CLI bundle (bin/kiln.js): the bundle runs as
 * a script compiled with a code cache, where import() is not available, so the renderer is a module
 * of its own beside it that the launcher imports.
 */
const LAUNCHER_HOOK = Symbol.for('kiln.loadTtyModule');

export async function loadTtyRenderer(): Promise<(out?: NodeJS.WriteStream, env?: NodeJS.ProcessEnv) => TtyRenderer> {
  const hidden = CI_VARIABLES.filter((k) => k in process.env).map((k) => [k, process.env[k]] as const);
  for (const [k] of hidden) delete process.env[k];
  try {
    const fromLauncher = (globalThis as Record<symbol, unknown>)[LAUNCHER_HOOK] as (() => Promise<typeof import('./tty.js')>) | undefined;
    return (await (fromLauncher ? fromLauncher() : import('./tty.js'))).ttyRenderer;
  } finally {
    for (const [k, v] of hidden) process.env[k] = v;
  }
}
