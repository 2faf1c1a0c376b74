/**
 * `kiln build` registers only itself (start-up time); everything a user sees must be as if every
 * command were registered: its help, its options after the global ones, a mistyped command's hint.
 */
import { describe, expect, it } from 'vitest';
import { buildProgram, soloCommandOf } from '../../src/cli/main.js';
import { kiln } from '../helpers/kiln.js';

describe('command registration', () => {
  it('finds the command after the program options, and only when nothing else could be asked', () => {
    expect(soloCommandOf(['build', '.'])).toBe('build');
    expect(soloCommandOf(['--root', '/s', 'build', '-t', 'x', '.'])).toBe('build');
    expect(soloCommandOf(['--root=/s', 'build'])).toBe('build');
    // --root's value is never the command.
    expect(soloCommandOf(['--root', 'build', 'images'])).toBeUndefined();
    expect(soloCommandOf(['--help', 'build'])).toBeUndefined();
    expect(soloCommandOf(['images'])).toBeUndefined();
    expect(soloCommandOf(['bulid'])).toBeUndefined();
    expect(soloCommandOf([])).toBeUndefined();
  });

  it('registers `build` alone exactly as among all commands', () => {
    const alone = buildProgram('build').commands.find((c) => c.name() === 'build')!;
    const among = buildProgram().commands.find((c) => c.name() === 'build')!;
    expect(alone.helpInformation()).toBe(among.helpInformation());
  });

  it('`kiln build --help`, `kiln --root DIR build --help` and a mistyped command behave as before', () => {
    const help = kiln(['build', '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: kiln build \[options\] \[context\]/);
    expect(help.stdout).toContain('--no-cache');
    expect(kiln(['--root', '/nonexistent', 'build', '--help']).stdout).toBe(help.stdout);
    const typo = kiln(['buidl']);
    expect(typo.status).not.toBe(0);
    expect(typo.stderr).toContain('(Did you mean build?)');
  });
});
