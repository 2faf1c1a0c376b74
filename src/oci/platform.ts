/**
 * Platforms (`linux/amd64`, `linux/arm/v7`): the host's, parsing and formatting as containerd's
 * `platforms` package normalises them, and choosing a manifest from an index.
 */
import { KilnError } from '../errors.js';
import type { Descriptor, Platform } from './types.js';

export class InvalidPlatformError extends KilnError {
  constructor(value: string, reason: string) {
    super('INVALID_PLATFORM', `invalid platform "${value}": ${reason}`, {
      hint: 'platforms look like os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8',
    });
  }
}

const NODE_ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
  mips: 'mips',
  mipsel: 'mipsle',
};

/** Normalises architecture aliases (`x86_64` → `amd64`, `aarch64` → `arm64`) and their variants. */
export function normalizeArch(arch: string, variant = ''): { architecture: string; variant: string } {
  const a = arch.toLowerCase();
  const v = variant.toLowerCase();
  switch (a) {
    case 'i386':
    case '386':
      return { architecture: '386', variant: '' };
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      return { architecture: 'amd64', variant: v === 'v1' ? '' : v };
    case 'aarch64':
    case 'arm64':
      return { architecture: 'arm64', variant: v === '8' || v === 'v8' ? '' : v };
    case 'armhf':
      return { architecture: 'arm', variant: 'v7' };
    case 'armel':
      return { architecture: 'arm', variant: 'v6' };
    case 'arm':
      if (v === '' || v === '7') return { architecture: 'arm', variant: 'v7' };
      if (v === '5' || v === '6' || v === '8') return { architecture: 'arm', variant: `v${v}` };
      return { architecture: 'arm', variant: v };
    default:
      return { architecture: a, variant: v };
  }
}

/** The platform kiln runs on (what RUN steps can execute and what pulls select by default). */
export function hostPlatform(): Platform {
  const { architecture, variant } = normalizeArch(NODE_ARCH[process.arch] ?? process.arch);
  const p: Platform = { os: process.platform === 'win32' ? 'windows' : process.platform, architecture };
  if (variant) p.variant = variant;
  return p;
}

const COMPONENT = /^[A-Za-z0-9_-]+$/;

/** Parses `os[/arch[/variant]]` (or a bare arch, meaning linux), normalised. */
export function parsePlatform(value: string): Platform {
  const parts = value.split('/');
  if (parts.length > 3 || parts.some((p) => !COMPONENT.test(p))) {
    throw new InvalidPlatformError(value, 'expected os/arch[/variant]');
  }
  let os: string;
  let arch: string;
  let variant = '';
  if (parts.length === 1) {
    // A single component is an OS if it names one we know, else an architecture on linux.
    const known = ['linux', 'windows', 'darwin', 'freebsd'];
    if (known.includes(parts[0]!.toLowerCase())) {
      os = parts[0]!.toLowerCase();
      arch = hostPlatform().architecture;
    } else {
      os = 'linux';
      arch = parts[0]!;
    }
  } else {
    os = parts[0]!.toLowerCase();
    arch = parts[1]!;
    variant = parts[2] ?? '';
  }
  const n = normalizeArch(arch, variant);
  const p: Platform = { os, architecture: n.architecture };
  if (n.variant) p.variant = n.variant;
  return p;
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** Whether an image for `candidate` runs as `wanted` (normalised comparison; empty variant matches any). */
export function platformMatches(wanted: Platform, candidate: Platform): boolean {
  const w = normalizeArch(wanted.architecture, wanted.variant);
  const c = normalizeArch(candidate.architecture, candidate.variant);
  if (wanted.os !== candidate.os || w.architecture !== c.architecture) return false;
  return !w.variant || !c.variant || w.variant === c.variant;
}

/** Picks the manifest for `wanted` from an index's descriptors (an exact variant beats a loose match). */
export function selectManifest(manifests: readonly Descriptor[], wanted: Platform): Descriptor | undefined {
  const candidates = manifests.filter((d) => d.platform && platformMatches(wanted, d.platform));
  const exact = candidates.find((d) => (d.platform!.variant ?? '') === (normalizeArch(wanted.architecture, wanted.variant).variant ?? ''));
  return exact ?? candidates[0];
}

/** Index entries that are not runnable images: BuildKit's attestation manifests (platform unknown/unknown). */
export function isAttestation(d: Descriptor): boolean {
  return d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' || d.platform?.os === 'unknown';
}

/**
 * The entry of an index to take for `wanted`, attestations aside: the one for that platform, else
 * the only entry when it names no platform at all.
 */
export function chooseIndexEntry(manifests: readonly Descriptor[], wanted: Platform): Descriptor | undefined {
  const candidates = manifests.filter((d) => !isAttestation(d));
  return selectManifest(candidates, wanted) ?? (candidates.length === 1 && !candidates[0]!.platform ? candidates[0] : undefined);
}

/** The platforms an index offers (attestations aside), for the message when none fits. */
export function offeredPlatforms(manifests: readonly Descriptor[]): string {
  return (
    manifests
      .filter((d) => !isAttestation(d))
      .map((d) => (d.platform ? formatPlatform(d.platform) : '?'))
      .join(', ') || 'nothing'
  );
}

/** The build-time platform args BuildKit predefines, in its order. */
export function platformArgs(build: Platform, target: Platform): Array<[string, string]> {
  return [
    ['BUILDPLATFORM', formatPlatform(build)],
    ['BUILDOS', build.os],
    ['BUILDOSVERSION', build['os.version'] ?? ''],
    ['BUILDARCH', build.architecture],
    ['BUILDVARIANT', build.variant ?? ''],
    ['TARGETPLATFORM', formatPlatform(target)],
    ['TARGETOS', target.os],
    ['TARGETOSVERSION', target['os.version'] ?? ''],
    ['TARGETARCH', target.architecture],
    ['TARGETVARIANT', target.variant ?? ''],
  ];
}
