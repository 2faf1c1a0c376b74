/**
 * `kiln image SUBCOMMAND` and `kiln system df`: docker's management-command spellings of the image
 * commands (`kiln image ls`, `kiln image rm`, ...), sharing their flags and implementations.
 */
import type { Command } from 'commander';
import { configureDu } from './du.js';
import { configureHistory } from './history.js';
import { configureImages } from './images.js';
import { configureImport } from './import.js';
import { configureInspect } from './inspect.js';
import { configureLoad } from './load.js';
import { configurePrune } from './prune.js';
import { configureRmi } from './rmi.js';
import { configureSave } from './save.js';
import { configureTag } from './tag.js';

export function registerImageGroup(program: Command): void {
  const image = program.command('image').description('Manage images (docker-style subcommands)');
  configureImages(image.command('ls').alias('list'));
  configureInspect(image.command('inspect'));
  configureHistory(image.command('history'));
  configureTag(image.command('tag'));
  configureRmi(image.command('rm').alias('remove'));
  configureSave(image.command('save'));
  configureLoad(image.command('load'));
  configureImport(image.command('import'));
  configurePrune(image.command('prune'));
  const system = program.command('system').description('Manage kiln (docker-style subcommands)');
  configureDu(system.command('df'));
}
