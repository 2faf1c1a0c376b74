/** Which renderer `--progress` means, as buildx decides it: `auto` is tty in a terminal outside CI. */
export type RendererKind = 'tty' | 'plain' | 'json' | 'rawjson' | 'quiet';

export function chooseRenderer(mode: string, env: NodeJS.ProcessEnv, stderrIsTTY: boolean): RendererKind {
  switch (mode) {
    case 'tty':
    case 'plain':
    case 'json':
    case 'rawjson':
    case 'quiet':
      return mode;
    default:
      return stderrIsTTY && !env.CI ? 'tty' : 'plain';
  }
}
