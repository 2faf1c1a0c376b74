/** `kiln run` and `kiln create`: docker's flags, registered cheaply; containers load when they run. */
import type { Command } from 'commander';
import { collectKeyValue, collectList } from '../options.js';
import { storeRoot } from './global.js';

/** The flags `run` and `create` share (docker's names). */
export function containerFlags(cmd: Command): Command {
  return cmd
    .argument('<image>', 'image name or ID')
    .argument('[command...]', 'command and arguments (default: the image\'s ENTRYPOINT and CMD)')
    .option('--name <name>', 'assign a name to the container')
    .option('--rm', 'automatically remove the container and its anonymous volumes when it exits')
    .option('-e, --env <var>', 'set an environment variable: NAME=value, or NAME to pass it on (repeatable)', collectList, [])
    .option('--env-file <file>', 'read environment variables from a file (repeatable)', collectList, [])
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <user>', 'username or UID, optionally with group: name|uid[:group|gid]')
    .option('--entrypoint <cmd>', "overwrite the image's ENTRYPOINT ('' removes it)")
    .option('-v, --volume <spec>', 'bind mount HOST:CTR[:ro], named volume NAME:CTR[:ro], or anonymous volume CTR (repeatable)', collectList, [])
    .option('--mount <spec>', 'mount: type=bind|volume|tmpfs,source=…,target=…[,readonly] (repeatable)', collectList, [])
    .option('--tmpfs <dir>', 'mount a tmpfs: /path[:size=64m,mode=1777] (repeatable)', collectList, [])
    .option('--read-only', "mount the container's root file system read-only")
    .option('--network <mode>', 'network: bridge (private, with outbound access), host or none (default: private where available, else host)')
    .option('-p, --publish <spec>', "publish a container's port: [IP:]HOST:CTR[/udp] (repeatable)", collectList, [])
    .option('-h, --hostname <name>', 'container host name (default: the short container ID)')
    .option('-i, --interactive', 'keep standard input open')
    .option('-t, --tty', 'allocate a pseudo-terminal')
    .option('--init', 'run an init (tini) as PID 1 that forwards signals and reaps processes')
    .option('--stop-signal <signal>', 'signal to stop the container (default: the image\'s STOPSIGNAL, else SIGTERM)')
    .option('--stop-timeout <seconds>', 'seconds to wait after the stop signal before SIGKILL (default 10)')
    .option('-l, --label <key=value>', 'set a container label (repeatable)', collectKeyValue('--label'), {})
    .option('--pull <policy>', 'pull the image before creating the container: missing (when not in the store), always, never', 'missing')
    .option('-q, --quiet', 'suppress the pull output')
    .helpOption('--help', 'display help for command')
    .passThroughOptions();
}

export function registerRun(program: Command): void {
  containerFlags(program.command('run').description('Create and run a new container from an image'))
    .option('-d, --detach', 'run the container in the background and print its ID')
    .action(async (image: string, command: string[], options, cmd: Command) => {
      const { runContainer } = await import('../run/run.js');
      process.exitCode = await runContainer(storeRoot(cmd), image, command, options);
    });
}

export function registerCreate(program: Command): void {
  containerFlags(program.command('create').description('Create a new container (start it with kiln start)')).action(async (image: string, command: string[], options, cmd: Command) => {
    const { createOnly } = await import('../run/run.js');
    await createOnly(storeRoot(cmd), image, command, options);
  });
}
