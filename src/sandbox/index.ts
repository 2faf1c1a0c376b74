/** Rootless sandboxes: kiln's user namespace, RUN steps in fresh namespaces, their layers, and the host probe. */
export {
  RunAbortedError,
  RunFailedError,
  RunMountError,
  RunUserError,
  SandboxError,
  UserNamespaceError,
  displayCommand,
} from './errors.js';
export {
  USERNS_ENV,
  currentNamespace,
  ensureNamespace,
  planNamespace,
  runInNamespace,
  selfArgv,
  spawnInNamespace,
  userNamespaceBlocker,
  type EnsureNamespaceOptions,
  type NamespaceInfo,
  type NamespacePlan,
} from './userns.js';
export {
  DEFAULT_CAPABILITIES,
  DEFAULT_HOSTNAME,
  DEFAULT_PATH,
  abortOnSignals,
  killAllSandboxes,
  runStep,
  settleSandboxCleanup,
  type LowerLayers,
  type RunStepOptions,
  type RunStepResult,
} from './run.js';
export type { CommittedLayer } from './diff.js';
export type { RunMount, SecretSource } from './mounts.js';
export type { AppliedLimits, LimitMechanism, ResourceLimits } from './limits.js';
export type { OutputSink } from './output.js';
export { chooseSnapshotter, lowerDirsFor, probeOverlay, withLayerOnTop, type OverlaySupport, type SnapshotterKind } from './snapshotter.js';
export { OWNERS_SIDECAR, squashedLayerCodec } from './squash.js';
export { resolveUser, type ExecUser } from './users.js';
export { probeHost, type DoctorReport } from './doctor.js';
