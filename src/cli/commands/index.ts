import type { Command } from 'commander';
import { registerBuild } from './build.js';
import { registerCheck } from './check.js';

/** Every command kiln has, in the order `kiln --help` lists them. */
export const commands: Array<(program: Command) => void> = [registerBuild, registerCheck];
