/** `kiln pull`: docker's lines, driven by the pull's events. */
import { openStoreForCommand } from '../store.js';
import { familiarString, repositoryName } from '../../oci/reference.js';
import { pullImage, type PullEvent } from '../../registry/index.js';
import type { PullCommandOptions } from '../commands/pull.js';
import { registryOptions, shortId } from './options.js';

export async function runPull(root: string, name: string, options: PullCommandOptions): Promise<void> {
  const out = (line: string) => {
    if (!options.quiet) process.stdout.write(`${line}\n`);
  };
  const store = await openStoreForCommand(root);
  const onEvent = (e: PullEvent): void => {
    switch (e.type) {
      case 'resolving': {
        const r = e.reference;
        if (!/[:@][^/]*$/.test(name)) out(`Using default tag: ${r.tag ?? 'latest'}`);
        const repo = familiarString({ domain: r.domain, path: r.path });
        out(`${r.digest ?? r.tag ?? 'latest'}: Pulling from ${repo}`);
        break;
      }
      case 'blob':
        if (e.kind !== 'layer') break;
        if (e.status === 'exists') out(`${shortId(e.digest)}: Already exists`);
        else if (e.status === 'downloading') out(`${shortId(e.digest)}: Pulling fs layer`);
        else if (e.status === 'resumed') out(`${shortId(e.digest)}: Retrying`);
        else if (e.status === 'done') out(`${shortId(e.digest)}: Pull complete`);
        break;
      default:
        break;
    }
  };
  const result = await pullImage(name, store, {
    ...registryOptions(options),
    ...(options.platform ? { platform: options.platform } : {}),
    onEvent,
  });
  const shown = familiarString(result.reference);
  out(`Digest: ${result.digest}`);
  out(result.upToDate ? `Status: Image is up to date for ${shown}` : `Status: Downloaded newer image for ${shown}`);
  const full = result.reference.digest ? `${repositoryName(result.reference)}@${result.reference.digest}` : `${repositoryName(result.reference)}:${result.reference.tag ?? 'latest'}`;
  process.stdout.write(`${full}\n`);
}
