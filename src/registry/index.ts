/**
 * kiln's registry client (OCI distribution spec): auth, pull into the store, push from any Image,
 * and lazy remote images.
 */
export { Authenticator, repositoryScope, type AuthScheme, type TokenResponse } from './auth/authenticator.js';
export { challengeScopes, findChallenge, parseChallenges, type Challenge } from './auth/challenge.js';
export {
  DOCKER_HUB_LEGACY_KEY,
  authFilePath,
  credentialKey,
  dockerConfigPath,
  eraseCredentials,
  loginFilePath,
  readAuthFile,
  resolveCredentials,
  runCredentialHelper,
  storeCredentials,
  type Credential,
  type CredentialOptions,
  type CredentialSource,
} from './auth/credentials.js';
export { BlobRecord } from './blob-record.js';
export { blobExists, downloadBlob, uploadBlob, type UploadOptions, type UploadOutcome, type UploadSource } from './blobs.js';
export { Registries, RegistryClient, type RegistryOptions, type RegistryRequest } from './client.js';
export {
  AuthConfigError,
  AuthError,
  CredentialHelperError,
  DeniedError,
  DigestMismatchError,
  ManifestInvalidError,
  NotFoundError,
  RateLimitedError,
  RegistryError,
  RegistryProtocolError,
  RegistryUnavailableError,
  TlsError,
  parseErrorBody,
} from './errors.js';
export { isInsecureAllowed, isLoopbackHost } from './hosts.js';
export { login, loginHost, logout, type LoginResult } from './login.js';
export { MANIFEST_ACCEPT, fetchManifest, headManifest, parseManifest, putManifest, type FetchedManifest } from './manifest.js';
export { pullImage, type PullEvent, type PullOptions, type PullResult } from './pull.js';
export { pushImage, type PushEvent, type PushOptions, type PushResult } from './push.js';
export { RemoteImage, RemoteIndex, RemoteLayer, fetchRemote, resolveRemoteImage } from './remote.js';
export { DEFAULT_RETRY, type RetryPolicy } from './transport/retry.js';

import type { Reference } from '../oci/reference.js';
import type { Platform } from '../oci/types.js';
import { Registries as Pool, type RegistryOptions as Options } from './client.js';
import { referenceOf, resolveRemoteImage as resolve, type RemoteImage as Remote } from './remote.js';

/**
 * The image `ref` names in its registry, for reading without storing (an index resolves to
 * `platform`, default this host). Pass `registries` to share connections; it is the caller's to close.
 */
export async function remoteImage(ref: string | Reference, opts: Options & { platform?: Platform; registries: Pool }): Promise<Remote> {
  const r = referenceOf(ref);
  const { image } = await resolve(opts.registries.get(r.domain), r.path, r.digest ?? r.tag ?? 'latest', opts.platform);
  return image;
}
