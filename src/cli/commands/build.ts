/** `kiln build`: docker buildx build's flags, registered cheaply; the engine loads when it runs. */
import { Option, type Command } from 'commander';
import { collectKeyValue, collectList } from '../options.js';
import type { CheckOptions } from './check.js';
import { storeRoot } from './global.js';

export interface BuildCommandOptions extends CheckOptions {
  check?: boolean;
  tag: string[];
  output: string[];
  push?: boolean;
  load?: boolean;
  noCache?: boolean;
  cache?: boolean;
  /** `--no-cache-filter` (commander files `--no-*` options under the name without `no-`). */
  cacheFilter: string[];
  pull?: boolean;
  platform?: string;
  iidfile?: string;
  metadataFile?: string;
  quiet?: boolean;
  label: Record<string, string>;
  secret: string[];
  network?: string;
  progress: string;
  jobs?: string;
  memory?: string;
  cpuQuota?: string;
  pidsLimit?: string;
  insecureRegistry: string[];
  cacheTo: string[];
  cacheFrom: string[];
  explain?: boolean;
  onFailure?: string;
}

export function registerBuild(program: Command): void {
  program
    .command('build')
    .description('Build an image from a Dockerfile (as docker buildx build)')
    .argument('[context]', 'build context directory', '.')
    .option('-f, --file <path>', "Dockerfile path ('-' reads standard input)")
    .option('-t, --tag <name>', 'name the image (repeatable)', collectList, [])
    .option('--build-arg <key=value>', 'set a build-time variable (repeatable)', collectKeyValue('--build-arg'), {})
    .option('--target <stage>', 'set the target stage to build')
    .option('-o, --output <spec>', 'output: type=image|registry|oci|docker|local|tar[,dest=PATH][,...] (repeatable)', collectList, [])
    .option('--push', 'push the image to its registry (shorthand for --output=type=registry)')
    .option('--load', 'load the image into the local store (the default)')
    .option('--no-cache', 'do not use the build cache')
    .option('--no-cache-filter <stage>', 'do not use the cache for this stage (repeatable)', collectList, [])
    .option('--pull', 'always check the registry for newer base images')
    .option('--platform <platform>', 'target platform (the host platform; others cannot run RUN steps here)')
    .option('--iidfile <file>', 'write the image ID to the file')
    .option('--metadata-file <file>', 'write build result metadata to the file')
    .option('-q, --quiet', 'print only the image ID')
    .option('--label <key=value>', 'set an image label (repeatable)', collectKeyValue('--label'), {})
    .option('--secret <spec>', 'secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR (repeatable)', collectList, [])
    .option('--network <mode>', 'networking mode for RUN steps: default, none or host')
    .addOption(new Option('--progress <type>', 'progress output').choices(['auto', 'plain', 'tty', 'quiet', 'rawjson', 'json']).default('auto'))
    .option('--jobs <n>', 'steps run at once (default: number of cores)')
    .option('--memory <bytes>', 'memory limit for RUN steps (e.g. 512m)')
    .option('--cpu-quota <us>', 'CPU quota per 100ms period for RUN steps, in microseconds')
    .option('--pids-limit <n>', 'process limit for RUN steps')
    .option('--cache-to <spec>', 'export the build cache: type=registry,ref=REF[,mode=min|max][,mounts=true], type=local,dest=DIR, type=inline (repeatable)', collectList, [])
    .option('--cache-from <spec>', 'import a build cache: type=registry,ref=REF (or just REF), type=local,src=DIR (repeatable)', collectList, [])
    .option('--insecure-registry <host>', 'allow plain HTTP to this registry (repeatable)', collectList, [])
    .option('--check', "run the Dockerfile's build checks instead of building")
    .option('--explain', 'say why each step that was not cached missed the cache')
    .addOption(new Option('--on-failure <action>', 'when a RUN step fails: fail, or open a shell in its sandbox').choices(['fail', 'shell']).default('fail'))
    .action(async (context: string, options: BuildCommandOptions, cmd: Command) => {
      if (options.check) {
        const { runCheck } = await import('../check.js');
        process.exitCode = await runCheck(context, options);
        return;
      }
      const { runBuild } = await import('../build.js');
      process.exitCode = await runBuild(context, options, storeRoot(cmd));
    });
}
