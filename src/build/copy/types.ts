/** What a COPY or ADD step is given, and the plan of the layer it produces. */
import type { SourceContent } from '../../dockerfile/instructions/types.js';
import type { TarEntrySpec } from '../../oci/layer/index.js';
import type { ReadOnlyFS } from '../fsview/index.js';
import type { Download } from './http.js';

export interface CopyOptions {
  /** `--chown`: numeric ids, or the flag's value resolved against the destination's /etc/passwd and /etc/group. */
  chown?: { uid: number; gid: number } | string;
  /** `--chmod`: octal (up to 07777) or symbolic (u+x, go-w, ...). */
  chmod?: string;
  /** `--link`: the layer does not depend on the destination; nothing of the rootfs is looked at. */
  link?: boolean;
  /** `--exclude` patterns (.dockerignore syntax), matched below each copied source. */
  exclude?: readonly string[];
  /** `--parents` (COPY): keep each source's path below the source root, or below a `/./` pivot. */
  parents?: boolean;
  /** ADD `--unpack`: undefined means the default (local archives yes, downloads no). */
  unpack?: boolean;
  /** ADD `--checksum`: `sha256:<hex>` for URLs, a commit (prefix) for git. */
  checksum?: string;
  /** ADD `--keep-git-dir`. */
  keepGitDir?: boolean;
  /** SOURCE_DATE_EPOCH: later times are clamped to it; created entries get it. */
  sourceDateEpoch?: number;
}

export interface CopyWarning {
  code: 'archive-entry-skipped' | 'socket-skipped';
  message: string;
}

export interface CopyRequest {
  instruction?: 'COPY' | 'ADD';
  /**
   * Where local source paths are looked up: the build context (a DirFS with its ignore rules) or a
   * stage or image (`--from`, a LayeredFS).
   */
  source?: ReadOnlyFS;
  /** Names the source in "not found" errors, like BuildKit's ref id (default "context"). */
  sourceRef?: string;
  /** Source paths, URLs and git references as written, after variable expansion. */
  sources: readonly string[];
  /** Heredoc sources (`COPY <<EOF /dest`). */
  contents?: readonly SourceContent[];
  /** The destination as written (after expansion); relative to `workdir`. */
  dest: string;
  /** The stage's WORKDIR (default `/`). */
  workdir?: string;
  /** The stage's rootfs the layer goes on; undefined for scratch. Ignored for lookups under `--link`. */
  destination?: ReadOnlyFS;
  options?: CopyOptions;
  /** Where downloads, clones and unpacked archives are kept until the layer is written (default: the OS temp dir). */
  tempDir?: string;
  /** The git program (default `git`). */
  gitCommand?: string;
  /** URLs already downloaded for this step (to key it), used instead of downloading them again. */
  downloaded?: ReadonlyMap<string, Download>;
  /** Git sources whose commit keyed the step: the clone must be that commit. */
  gitCommits?: ReadonlyMap<string, string>;
  signal?: AbortSignal;
  onWarning?: (warning: CopyWarning) => void;
}

export interface CopyPlan {
  /** The layer's entries, sorted by path; feed them to writeTarEntries. */
  entries: TarEntrySpec[];
  /** The destination path as BuildKit normalizes it (absolute, trailing `/` kept). */
  destination: string;
  /** Removes temporary files (downloads, clones, unpacked archives). Call once the layer is written. */
  dispose(): Promise<void>;
}
