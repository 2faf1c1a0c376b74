/**
 * BuildKit's build-check rules that can be decided from the Dockerfile alone, with BuildKit's names,
 * descriptions and message wording, so `kiln check` output reads like `docker build --check`.
 */

export interface Rule {
  name: string;
  description: string;
  /** Experimental rules run only when `# check=experimental=Name` (or `all`) enables them. */
  experimental?: boolean;
}

function rule(name: string, description: string, experimental = false): Rule {
  return experimental ? { name, description, experimental } : { name, description };
}

export const Rules = {
  StageNameCasing: rule('StageNameCasing', 'Stage names should be lowercase'),
  FromAsCasing: rule('FromAsCasing', "The 'as' keyword should match the case of the 'from' keyword"),
  NoEmptyContinuation: rule('NoEmptyContinuation', 'Empty continuation lines will become errors in a future release'),
  ConsistentInstructionCasing: rule(
    'ConsistentInstructionCasing',
    'All commands within the Dockerfile should use the same casing (either upper or lower)',
  ),
  DuplicateStageName: rule('DuplicateStageName', 'Stage names should be unique'),
  ReservedStageName: rule('ReservedStageName', 'Reserved words should not be used as stage names'),
  JSONArgsRecommended: rule(
    'JSONArgsRecommended',
    'JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals',
  ),
  MaintainerDeprecated: rule(
    'MaintainerDeprecated',
    'The MAINTAINER instruction is deprecated, use a label instead to define an image author',
  ),
  UndefinedArgInFrom: rule('UndefinedArgInFrom', 'FROM command must use declared ARGs'),
  WorkdirRelativePath: rule(
    'WorkdirRelativePath',
    'Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes',
  ),
  UndefinedVar: rule('UndefinedVar', 'Variables should be defined before their use'),
  MultipleInstructionsDisallowed: rule(
    'MultipleInstructionsDisallowed',
    'Multiple instructions of the same type should not be used in the same stage',
  ),
  LegacyKeyValueFormat: rule('LegacyKeyValueFormat', 'Legacy key/value format with whitespace separator should not be used'),
  RedundantTargetPlatform: rule(
    'RedundantTargetPlatform',
    'Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior',
  ),
  SecretsUsedInArgOrEnv: rule('SecretsUsedInArgOrEnv', 'Sensitive data should not be used in the ARG or ENV commands'),
  InvalidDefaultArgInFrom: rule(
    'InvalidDefaultArgInFrom',
    'Default value for global ARG results in an empty or invalid base image name',
  ),
  FromPlatformFlagConstDisallowed: rule('FromPlatformFlagConstDisallowed', 'FROM --platform flag should not use a constant value'),
  CopyIgnoredFile: rule('CopyIgnoredFile', 'Attempting to Copy file that is excluded by .dockerignore', true),
  InvalidDefinitionDescription: rule(
    'InvalidDefinitionDescription',
    'Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.',
    true,
  ),
  ExposeProtoCasing: rule('ExposeProtoCasing', 'Protocol in EXPOSE instruction should be lowercase'),
  ExposeInvalidFormat: rule(
    'ExposeInvalidFormat',
    'IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release',
  ),
} satisfies Record<string, Rule>;

export type RuleName = keyof typeof Rules;

/** Docker's documentation page for a rule: `FromAsCasing` → `.../rule/from-as-casing/`. */
export function ruleURL(name: string): string {
  const kebab = name
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1-$2')
    .toLowerCase();
  return `https://docs.docker.com/go/dockerfile/rule/${kebab}/`;
}
