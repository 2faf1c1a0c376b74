import { describe, expect, it } from 'vitest';
import { DockerfileError } from '../../errors.js';
import { checkDockerfile, type CheckOptions } from './lint.js';

/** `line: Rule: message` for each warning, the way a user reads them. */
function check(text: string, options: CheckOptions = {}): string[] {
  return checkDockerfile(text, options).warnings.map((w) => `${w.location.line}: ${w.rule}: ${w.message}`);
}

describe('build checks', () => {
  it('a clean Dockerfile has no warnings', () => {
    expect(check('FROM busybox AS build\nWORKDIR /app\nRUN true\nCMD ["sh"]\n')).toEqual([]);
  });

  it('reports FROM/AS casing and stage-name casing on the FROM line', () => {
    expect(check('FROM busybox as Build\nRUN true\n')).toEqual([
      "1: StageNameCasing: Stage name 'Build' should be lowercase",
      "1: FromAsCasing: 'as' and 'FROM' keywords' casing do not match",
    ]);
  });

  it('reports a relative first WORKDIR only', () => {
    expect(check('FROM busybox\nWORKDIR app\nWORKDIR sub\n')).toEqual([
      '2: WorkdirRelativePath: Relative workdir "app" can have unexpected results if the base image changes',
    ]);
    expect(check('FROM busybox\nWORKDIR /app\nWORKDIR sub\n')).toEqual([]);
  });

  it('an absolute WORKDIR in a base stage carries into stages built on it', () => {
    expect(check('FROM busybox AS base\nWORKDIR /app\nFROM base\nWORKDIR sub\n')).toEqual([]);
  });

  it('reports shell-form CMD/ENTRYPOINT unless a SHELL is set', () => {
    expect(check('FROM busybox\nENTRYPOINT run.sh\n')).toEqual([
      '2: JSONArgsRecommended: JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals',
    ]);
    expect(check('FROM busybox\nSHELL ["/bin/sh", "-c"]\nCMD run.sh\n')).toEqual([]);
  });

  it('points MultipleInstructionsDisallowed at the instruction that has no effect', () => {
    expect(check('FROM busybox\nCMD ["a"]\nCMD ["b"]\nHEALTHCHECK NONE\nHEALTHCHECK NONE\n')).toEqual([
      '2: MultipleInstructionsDisallowed: Multiple CMD instructions should not be used in the same stage because only the last one will be used',
      '4: MultipleInstructionsDisallowed: Multiple HEALTHCHECK instructions should not be used in the same stage because only the last one will be used',
    ]);
  });

  it('reports instruction casing against the majority', () => {
    expect(check('FROM busybox\nrun true\nRUN true\n')).toEqual([
      "2: ConsistentInstructionCasing: Command 'run' should match the case of the command majority (uppercase)",
    ]);
    expect(check('from busybox\nrun true\nRuN true\n')).toEqual([
      "3: ConsistentInstructionCasing: Command 'RuN' should match the case of the command majority (lowercase)",
    ]);
  });

  it('reports duplicate and reserved stage names', () => {
    expect(check('FROM busybox AS a\nFROM busybox AS a\nFROM busybox AS context\n')).toEqual([
      '2: DuplicateStageName: Duplicate stage name "a", stage names should be unique',
      '3: ReservedStageName: Stage name should not use the same name as reserved stage "context"',
    ]);
  });

  it('reports undefined variables where the whole scope is known', () => {
    expect(check('FROM scratch\nENV FOO=1\nCOPY $FOOO /x\nARG BAR\nCOPY $BAR /y\n')).toEqual([
      "3: UndefinedVar: Usage of undefined variable '$FOOO' (did you mean $FOO?)",
    ]);
  });

  it('takes a base image environment from the lookup, and stays quiet when it is unknown', () => {
    const text = 'FROM busybox\nENV PATH=$GOPATH/bin:$PATH\n';
    expect(check(text)).toEqual([]);
    expect(check(text, { baseImage: () => ({ env: ['PATH=/bin', 'GOPATH=/go'] }) })).toEqual([]);
    expect(check(text, { baseImage: () => ({ env: ['PATH=/bin'] }) })).toEqual([
      "2: UndefinedVar: Usage of undefined variable '$GOPATH' (did you mean $PATH?)",
    ]);
  });

  it('reports undeclared and invalid ARGs in FROM', () => {
    expect(check('ARG VERSION=1\nFROM busybox:$VERSIN\n')).toEqual([
      '2: InvalidDefaultArgInFrom: Default value for ARG busybox:$VERSIN results in empty or invalid base image name',
      "2: UndefinedArgInFrom: FROM argument 'VERSIN' is not declared (did you mean VERSION?)",
    ]);
    expect(check('ARG TAG\nFROM busybox:${TAG}\n')).toEqual([
      '2: InvalidDefaultArgInFrom: Default value for ARG busybox:${TAG} results in empty or invalid base image name',
    ]);
  });

  it('reports MAINTAINER, legacy key/value and secrets in ARG/ENV', () => {
    expect(check('FROM busybox\nMAINTAINER me\nLABEL a b\nARG API_TOKEN\nENV DB_PASSWORD=x\nARG PUBLIC_KEY\n')).toEqual([
      '2: MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label',
      '3: LegacyKeyValueFormat: "LABEL key=value" should be used instead of legacy "LABEL key value" format',
      '4: SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG "API_TOKEN")',
      '5: SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV "DB_PASSWORD")',
    ]);
  });

  it('reports EXPOSE protocol casing and host mappings', () => {
    expect(check('FROM busybox\nEXPOSE 80/TCP 127.0.0.1:8080:80\n')).toEqual([
      // BuildKit sorts the port specs before reading them.
      "2: ExposeInvalidFormat: EXPOSE instruction should not define an IP address or host-port mapping, found '127.0.0.1:8080:80'",
      "2: ExposeProtoCasing: Defined protocol '80/TCP' in EXPOSE instruction should be lowercase",
    ]);
  });

  it('reports platform constants and redundant TARGETPLATFORM', () => {
    expect(check('FROM --platform=linux/amd64 busybox\n')).toEqual([
      '1: FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value "linux/amd64"',
    ]);
    expect(check('FROM --platform=linux/amd64 busybox AS build-amd64\n')).toEqual([]);
    expect(check('FROM --platform=$TARGETPLATFORM busybox\n')).toEqual([
      '1: RedundantTargetPlatform: Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior',
    ]);
  });

  it('reports empty continuation lines', () => {
    expect(check('FROM busybox\nRUN echo a \\\n\n  b\n')).toEqual(['4: NoEmptyContinuation: Empty continuation line']);
  });

  it('honours # check=skip=... and skip=all', () => {
    const text = 'FROM busybox as Build\nWORKDIR app\n';
    expect(check(`# check=skip=FromAsCasing,StageNameCasing\n${text}`)).toEqual([
      '3: WorkdirRelativePath: Relative workdir "app" can have unexpected results if the base image changes',
    ]);
    expect(check(`# check=skip=all\n${text}`)).toEqual([]);
  });

  it('# check=error=true makes warnings fail the check', () => {
    const report = checkDockerfile('# check=error=true\nFROM busybox\nWORKDIR app\n');
    expect(report.failed).toBe(true);
    expect(checkDockerfile('# check=error=true\nFROM busybox\nWORKDIR /app\n').failed).toBe(false);
  });

  it('a check comment above one instruction applies to it alone', () => {
    expect(check('FROM busybox\n# check=skip=JSONArgsRecommended\nCMD a\nFROM busybox\nCMD b\n')).toEqual([
      '5: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals',
    ]);
  });

  it('experimental rules run only when enabled', () => {
    const text = 'FROM busybox\n# the version to install\nARG VERSION=1\n';
    expect(check(text)).toEqual([]);
    expect(check(`# check=experimental=InvalidDefinitionDescription\n${text}`)).toEqual([
      '4: InvalidDefinitionDescription: Comment for ARG should follow the format: `# VERSION <description>`',
    ]);
  });

  it('with --target, stage instructions outside the target are not dispatched', () => {
    const text = 'FROM busybox AS a\nWORKDIR rel\nFROM busybox AS b\nRUN true\n';
    expect(check(text, { target: 'b' })).toEqual([]);
    expect(check(text)).toHaveLength(1);
  });

  it('a malformed Dockerfile is an error with its line, not a warning', () => {
    expect(() => checkDockerfile('FROM busybox\nFROM\n')).toThrow(DockerfileError);
    expect(() => checkDockerfile('FROM busybox\nFROM\n')).toThrow(/^Dockerfile:2: FROM requires either one or three arguments$/);
    expect(() => checkDockerfile('# check=bogus\nFROM busybox\n')).toThrow(/invalid check option/);
  });
});
