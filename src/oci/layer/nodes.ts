/**
 * Creating device nodes, fifos and overlay whiteouts (char 0/0). Node has no mknod or mkfifo, and
 * spawning `mknod` costs about 3 ms per node (a layer that deletes a few thousand files would take
 * seconds), so nodes are collected and created in batches by one `tar -x` run: tar is an essential
 * package wherever kiln runs, and it makes nodes with the same mknod(2) call. The paths handed to it
 * are already resolved (no symlink in them), so tar's own path handling adds nothing to trust.
 *
 * Whether a node was made is judged by lstat afterwards, not by tar's exit status: tar goes on after a
 * refused mknod (EPERM for real devices in a user namespace) and only reports it at the end.
 */
import { spawn } from 'node:child_process';
import { lstatSync, type Stats } from 'node:fs';
import { relative } from 'node:path';
import { LayerExtractError } from './errors.js';
import { createPack, toPackHeader } from './tar.js';

export interface NodeRequest {
  /** Absolute, resolved path inside the target. */
  path: string;
  type: 'character-device' | 'block-device' | 'fifo';
  devmajor: number;
  devminor: number;
  /** The layer entry the node comes from (for messages). */
  entry: string;
  /** Called once the node exists; `created` false when the kernel refused it. */
  done: (created: boolean, detail: string) => void;
}

/** Batches of node creations beneath one root. */
export class NodeBatch {
  private readonly pending = new Map<string, NodeRequest>();

  constructor(
    private readonly root: string,
    private readonly limit = 2048,
  ) {}

  get size(): number {
    return this.pending.size;
  }

  has(path: string): boolean {
    return this.pending.has(path);
  }

  /** Queues a node; returns true when the batch is full and should be flushed. */
  add(request: NodeRequest): boolean {
    this.pending.set(request.path, request);
    return this.pending.size >= this.limit;
  }

  /** Creates every queued node, then reports each one through its `done`. */
  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = [...this.pending.values()];
    this.pending.clear();
    const stderr = await runTar(this.root, batch);
    for (const req of batch) {
      let st: Stats | undefined;
      try {
        st = lstatSync(req.path);
      } catch {
        st = undefined;
      }
      const ok =
        st !== undefined &&
        (req.type === 'fifo' ? st.isFIFO() : req.type === 'character-device' ? st.isCharacterDevice() : st.isBlockDevice());
      req.done(ok, ok ? '' : reasonFor(stderr, relative(this.root, req.path)));
    }
  }
}

function reasonFor(stderr: string, rel: string): string {
  const line = stderr.split('\n').find((l) => l.includes(rel));
  return line ? line.replace(/^tar: /, '').trim() : stderr.trim().split('\n')[0] ?? 'not created';
}

async function runTar(root: string, batch: NodeRequest[]): Promise<string> {
  const pack = createPack();
  for (const req of batch) {
    pack.entry(
      toPackHeader({
        name: relative(root, req.path),
        type: req.type,
        // Final modes, owners and times are applied by the caller once the node exists.
        mode: 0o600,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        devmajor: req.devmajor,
        devminor: req.devminor,
      }),
    );
  }
  pack.finalize();

  // -o: do not chown (the caller does, under its ownership policy); -m: do not set times.
  const child = spawn('tar', ['-x', '-o', '-m', '-f', '-', '-C', root], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    if (stderr.length < 64 * 1024) stderr += chunk;
  });
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (err) =>
      reject(
        new LayerExtractError(batch[0]!.entry, `cannot run tar to create device nodes and whiteouts: ${err.message}`, {
          hint: 'install GNU tar (Debian: apt-get install tar)',
          cause: err,
        }),
      ),
    );
    child.on('close', () => resolve());
  });
  child.stdin.on('error', () => undefined); // tar may exit early; its verdict comes from lstat.
  pack.on('data', (chunk: unknown) => {
    if (!child.stdin.write(chunk as Buffer)) pack.pause();
  });
  child.stdin.on('drain', () => pack.resume());
  pack.on('end', () => child.stdin.end());
  await exited;
  return stderr;
}
