/** The container commands besides run and create: ps, start, stop, kill, rm, exec, commit. */
import type { Command } from 'commander';
import { collectList } from '../options.js';
import { storeRoot } from './global.js';

export function registerPs(program: Command): void {
  program
    .command('ps')
    .description('List containers (running ones; -a: all)')
    .option('-a, --all', 'show all containers (default shows just running)')
    .option('-q, --quiet', 'only display container IDs')
    .option('--no-trunc', "don't truncate output")
    .action(async (options, cmd: Command) => {
      const { runPs } = await import('../run/manage.js');
      await runPs(storeRoot(cmd), options);
    });
}

export function registerStart(program: Command): void {
  program
    .command('start')
    .description('Start one or more stopped containers')
    .argument('<container...>', 'container names or IDs')
    .option('-a, --attach', "attach to the container's output and signals, and exit with its status")
    .option('-i, --interactive', "attach the container's standard input (a terminal for a -t container)")
    .action(async (refs: string[], options, cmd: Command) => {
      const { runStart } = await import('../run/manage.js');
      process.exitCode = await runStart(storeRoot(cmd), refs, options);
    });
}

export function registerStop(program: Command): void {
  program
    .command('stop')
    .description('Stop one or more running containers (stop signal, then SIGKILL after the timeout)')
    .argument('<container...>', 'container names or IDs')
    .option('-t, --time <seconds>', 'seconds to wait before killing the container (default: its stop timeout, 10)')
    .option('-s, --signal <signal>', 'signal to send (default: its stop signal)')
    .action(async (refs: string[], options, cmd: Command) => {
      const { runStop } = await import('../run/manage.js');
      await runStop(storeRoot(cmd), refs, options);
    });
}

export function registerKill(program: Command): void {
  program
    .command('kill')
    .description('Kill one or more running containers')
    .argument('<container...>', 'container names or IDs')
    .option('-s, --signal <signal>', 'signal to send', 'KILL')
    .action(async (refs: string[], options, cmd: Command) => {
      const { runKill } = await import('../run/manage.js');
      await runKill(storeRoot(cmd), refs, options);
    });
}

export function registerRm(program: Command): void {
  program
    .command('rm')
    .description('Remove one or more containers')
    .argument('<container...>', 'container names or IDs')
    .option('-f, --force', 'force the removal of a running container (uses SIGKILL)')
    .option('-v, --volumes', 'remove the anonymous volumes associated with the container')
    .action(async (refs: string[], options, cmd: Command) => {
      const { runRm } = await import('../run/manage.js');
      await runRm(storeRoot(cmd), refs, options);
    });
}

export function registerExec(program: Command): void {
  program
    .command('exec')
    .description('Run a command in a running container')
    .argument('<container>', 'container name or ID')
    .argument('<command...>', 'command and arguments')
    .option('-i, --interactive', 'keep standard input open')
    .option('-t, --tty', 'allocate a pseudo-terminal')
    .option('-e, --env <var>', 'set an environment variable (repeatable)', collectList, [])
    .option('-u, --user <user>', 'username or UID, optionally with group')
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .passThroughOptions()
    .action(async (ref: string, command: string[], options, cmd: Command) => {
      const { runExec } = await import('../run/exec.js');
      process.exitCode = await runExec(storeRoot(cmd), ref, command, options);
    });
}

export function registerCommit(program: Command): void {
  program
    .command('commit')
    .description("Create a new image from a container's changes")
    .argument('<container>', 'container name or ID')
    .argument('[repository[:tag]]', 'name for the new image')
    .option('-a, --author <author>', 'author (e.g. "Jane Doe <jane@example.com>")')
    .option('-m, --message <message>', 'commit message')
    .option('-c, --change <instruction>', 'apply a Dockerfile instruction to the image config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL (repeatable)', collectList, [])
    .action(async (ref: string, name: string | undefined, options, cmd: Command) => {
      const { runCommit } = await import('../run/commit.js');
      await runCommit(storeRoot(cmd), ref, name, options);
    });
}

/** The detached monitor of a container (started by run -d and start; not for users). */
export function registerContainerMonitor(program: Command): void {
  program
    .command('container-monitor', { hidden: true })
    .argument('<store>')
    .argument('<id>')
    .action(async (store: string, id: string) => {
      const { runMonitor } = await import('../../run/monitor-main.js');
      process.exitCode = await runMonitor(store, id);
    });
}
