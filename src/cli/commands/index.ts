import type { Command } from 'commander';
import { registerBuild } from './build.js';
import { registerCheck } from './check.js';
import { registerCommit, registerContainerMonitor, registerExec, registerKill, registerPs, registerRm, registerStart, registerStop } from './containers.js';
import { registerDoctor } from './doctor.js';
import { registerDu } from './du.js';
import { registerHistory } from './history.js';
import { registerImageGroup } from './image.js';
import { registerImages } from './images.js';
import { registerImport } from './import.js';
import { registerInspect } from './inspect.js';
import { registerLoad } from './load.js';
import { registerLogin } from './login.js';
import { registerLogout } from './logout.js';
import { registerLogs } from './logs.js';
import { registerPrune } from './prune.js';
import { registerPull } from './pull.js';
import { registerPush } from './push.js';
import { registerRmi } from './rmi.js';
import { registerCreate, registerRun } from './run.js';
import { registerSave } from './save.js';
import { registerTag } from './tag.js';
import { registerUnshare } from './unshare.js';
import { registerVolume } from './volume.js';

/** Every command kiln has, in the order `kiln --help` lists them. */
export const commands: Array<(program: Command) => void> = [
  registerBuild,
  registerCheck,
  registerRun,
  registerCreate,
  registerPs,
  registerStart,
  registerStop,
  registerKill,
  registerRm,
  registerLogs,
  registerExec,
  registerCommit,
  registerContainerMonitor,
  registerImages,
  registerInspect,
  registerHistory,
  registerTag,
  registerRmi,
  registerSave,
  registerLoad,
  registerImport,
  registerPull,
  registerPush,
  registerLogin,
  registerLogout,
  registerPrune,
  registerDu,
  registerImageGroup,
  registerVolume,
  registerUnshare,
  registerDoctor,
];

/**
 * Commands run often enough that `kiln <name> ...` registers only them (a fully cached build is
 * mostly process start-up). Anything else, and any invocation that could print the command list
 * (help, a mistyped command), registers every command.
 */
export const soloCommands: Readonly<Record<string, (program: Command) => void>> = {
  build: registerBuild,
};
