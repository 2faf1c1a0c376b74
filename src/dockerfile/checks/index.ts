export { checkDockerfile, type BaseImageInfo, type CheckOptions, type CheckReport, type CheckWarning } from './lint.js';
export { parseCheckConfig, type CheckConfig } from './config.js';
export { Rules, ruleURL, type Rule, type RuleName } from './rules.js';
