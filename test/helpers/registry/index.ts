/**
 * Real-registry test infrastructure: a distribution registry in three auth modes, its token
 * server, a fault-injecting proxy, and a tiny OCI image to push. See README.md beside this file.
 */
export {
  startRegistry,
  DEFAULT_USERNAME,
  DEFAULT_PASSWORD,
  TOKEN_SERVICE,
  TOKEN_ISSUER,
  type AuthMode,
  type RegistryServer,
  type StartRegistryOptions,
} from './registry.js';
export {
  defaultAccessPolicy,
  parseScope,
  type AccessPolicy,
  type IssuedToken,
  type ResourceActions,
  type TokenServer,
} from './token-server.js';
export { startFaultProxy, type Fault, type FaultProxy, type ProxiedRequest } from './fault-proxy.js';
export { requireDebianPackage } from './debian.js';
export { writeTinyOciImage, type TinyImage, type Descriptor } from './fixture.js';
