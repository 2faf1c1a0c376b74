/**
 * Parser nodes → typed instructions, with BuildKit's argument checks, flag declarations and error
 * wording (`frontend/dockerfile/instructions/parse.go`). Nothing is expanded here: variables get
 * their values per build step (see expand.ts).
 */
import { DockerfileError, type SourceLocation } from '../../errors.js';
import type { Node, ParseResult } from '../parser/ast.js';
import { goQuote, goToLower, goToUpper, trimSpace } from '../parser/gostr.js';
import { BFlags, FlagError } from './bflags.js';
import { DurationError, parseGoDuration } from './duration.js';
import { chompHeredocContent, parseHeredocWord } from './heredoc.js';
import {
  MountError,
  NETWORK_MODES,
  SECURITY_MODES,
  mountSourceAtParse,
  parseDevice,
  type NetworkMode,
  type SecurityMode,
} from './mounts.js';
import { withSuggestion } from './suggest.js';
import type {
  AddInstruction,
  ArgDefinition,
  ArgInstruction,
  CmdInstruction,
  CommandLine,
  CopyInstruction,
  Dockerfile,
  EntrypointInstruction,
  EnvInstruction,
  ExposeInstruction,
  FromInstruction,
  HealthConfig,
  HealthcheckInstruction,
  InstructionBase,
  KeyValuePair,
  LabelInstruction,
  MaintainerInstruction,
  OnbuildInstruction,
  ParsedInstruction,
  RunInstruction,
  ShellInlineFile,
  ShellInstruction,
  SourceContent,
  SourcesAndDest,
  Stage,
  StopsignalInstruction,
  UserInstruction,
  VolumeInstruction,
  WorkdirInstruction,
} from './types.js';

/** Instruction keywords, lower case (BuildKit's `command.Commands`). */
export const INSTRUCTION_NAMES = [
  'add', 'arg', 'cmd', 'copy', 'entrypoint', 'env', 'expose', 'from', 'healthcheck', 'label',
  'maintainer', 'onbuild', 'run', 'shell', 'stopsignal', 'user', 'volume', 'workdir',
] as const;

export interface ConvertOptions {
  /** File name used in error locations. */
  file: string;
}

/** Thrown inside a converter; turned into a DockerfileError at the node's location. */
class ConvertError extends Error {}

function fail(message: string): never {
  throw new ConvertError(message);
}

/** Go's strings.TrimSpace: Unicode white space, not U+FEFF. */
export const goTrimSpace = trimSpace;

/** Argument values of a node; for ONBUILD the trigger keyword followed by its own arguments. */
export function nodeArgs(node: Node): string[] {
  const out: string[] = [];
  // Iterative walk so that deeply nested ONBUILD chains cannot exhaust the stack.
  const stack: { nodes: Node[]; i: number }[] = [{ nodes: node.next, i: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (top.i >= top.nodes.length) {
      stack.pop();
      continue;
    }
    const arg = top.nodes[top.i++]!;
    if (arg.children.length === 0) out.push(arg.value);
    else if (arg.children.length === 1) {
      const sub = arg.children[0]!;
      out.push(sub.value);
      stack.push({ nodes: sub.next, i: 0 });
    }
  }
  return out;
}

/** Exec form keeps the array; shell form becomes one string. */
export function handleJSONArgs(args: readonly string[], json: boolean): string[] {
  if (args.length === 0) return [];
  if (json) return [...args];
  return [args.join(' ')];
}

/** The doc comment for `name`: the first comment line starting with `name `, minus that prefix. */
export function docComment(comments: readonly string[], name: string): string {
  if (name === '') return '';
  for (const line of comments) {
    if (line.startsWith(name + ' ')) return line.slice(name.length + 1);
  }
  return '';
}

interface Request {
  node: Node;
  command: string;
  args: string[];
  json: boolean;
  flags: BFlags;
}

function base(req: Request): InstructionBase {
  return {
    keyword: req.command,
    original: goTrimSpace(req.node.original),
    startLine: req.node.startLine,
    endLine: req.node.endLine,
    comments: [...req.node.prevComment],
  };
}

const errAtLeastOne = (cmd: string) => fail(`${cmd} requires at least one argument`);
const errExactlyOne = (cmd: string) => fail(`${cmd} requires exactly one argument`);
const errNoDestination = (cmd: string) =>
  fail(`${cmd} requires at least two arguments, but only one was provided. Destination could not be determined`);

function parseKvps(args: readonly string[], cmd: string): KeyValuePair[] {
  if (args.length === 0) errAtLeastOne(cmd);
  if (args.length % 3 !== 0) fail(`Bad input to ${cmd}, too many arguments`);
  const out: KeyValuePair[] = [];
  for (let j = 0; j < args.length; j += 3) {
    if (args[j]!.length === 0) fail(`${cmd} names can not be blank`);
    out.push({ key: args[j]!, value: args[j + 1]!, noDelim: args[j + 2] === '' });
  }
  return out;
}

function parseEnv(req: Request): EnvInstruction {
  req.flags.parse();
  return { kind: 'ENV', ...base(req), env: parseKvps(req.args, 'ENV') };
}

function parseMaintainer(req: Request): MaintainerInstruction {
  if (req.args.length !== 1) errExactlyOne('MAINTAINER');
  req.flags.parse();
  return { kind: 'MAINTAINER', ...base(req), maintainer: req.args[0]! };
}

function parseLabel(req: Request): LabelInstruction {
  req.flags.parse();
  return { kind: 'LABEL', ...base(req), labels: parseKvps(req.args, 'LABEL') };
}

function parseSourcesAndDest(req: Request, cmd: string): SourcesAndDest {
  const srcs = req.args.slice(0, -1);
  const dest = req.args[req.args.length - 1]!;
  if (parseHeredocWord(dest)) fail(`${cmd} cannot accept a heredoc as a destination`);
  const bodies = new Map<string, string>();
  for (const h of req.node.heredocs) bodies.set(h.name, h.content);
  const sourcePaths: string[] = [];
  const sourceContents: SourceContent[] = [];
  for (const src of srcs) {
    const h = parseHeredocWord(src);
    if (h) {
      let data = bodies.get(h.name) ?? '';
      if (h.chomp) data = chompHeredocContent(data);
      sourceContents.push({ path: h.name, data, expand: h.expand });
    } else sourcePaths.push(src);
  }
  return { destPath: dest, sourcePaths, sourceContents };
}

function parseAdd(req: Request): AddInstruction {
  if (req.args.length < 2) errNoDestination('ADD');
  const f = req.flags;
  const chown = f.addString('chown', '');
  const chmod = f.addString('chmod', '');
  const link = f.addBool('link', false);
  const keepGitDir = f.addBool('keep-git-dir', false);
  const checksum = f.addString('checksum', '');
  const unpack = f.addBool('unpack', false);
  const exclude = f.addStrings('exclude');
  f.parse();
  const sd = parseSourcesAndDest(req, 'ADD');
  return {
    kind: 'ADD',
    ...base(req),
    ...sd,
    chown: chown.value,
    chmod: chmod.value,
    link: link.value === 'true',
    excludePatterns: [...exclude.values],
    keepGitDir: f.isUsed('keep-git-dir') ? keepGitDir.value === 'true' : undefined,
    checksum: checksum.value,
    unpack: f.isUsed('unpack') ? unpack.value === 'true' : undefined,
  };
}

function parseCopy(req: Request): CopyInstruction {
  if (req.args.length < 2) errNoDestination('COPY');
  const f = req.flags;
  const chown = f.addString('chown', '');
  const from = f.addString('from', '');
  const chmod = f.addString('chmod', '');
  const link = f.addBool('link', false);
  const exclude = f.addStrings('exclude');
  const parents = f.addBool('parents', false);
  f.parse();
  const sd = parseSourcesAndDest(req, 'COPY');
  return {
    kind: 'COPY',
    ...base(req),
    ...sd,
    from: from.value,
    chown: chown.value,
    chmod: chmod.value,
    link: link.value === 'true',
    excludePatterns: [...exclude.values],
    parents: parents.value === 'true',
  };
}

const VALID_STAGE_NAME = /^[a-z][a-z0-9\-_.]*$/;

/** `AS name` of a FROM (lower-cased), '' when absent; BuildKit's argument-count rule. */
export function parseBuildStageName(args: readonly string[]): string {
  if (args.length === 3 && /^[aA][sS\u017f]$/.test(args[1]!)) {
    const name = goToLower(args[2]!);
    if (!VALID_STAGE_NAME.test(name)) {
      fail(`invalid name for build stage: ${goQuote(args[2]!)}, name can't start with a number or contain symbols`);
    }
    return name;
  }
  if (args.length !== 1) fail('FROM requires either one or three arguments');
  return '';
}

function parseFrom(req: Request): FromInstruction {
  const stageName = parseBuildStageName(req.args);
  const platform = req.flags.addString('platform', '');
  req.flags.parse();
  return {
    kind: 'FROM',
    ...base(req),
    baseName: req.args[0]!,
    stageName,
    asWord: req.args.length === 3 ? req.args[1]! : '',
    platform: platform.value,
    docComment: docComment(req.node.prevComment, stageName),
  };
}

function parseOnbuild(req: Request): OnbuildInstruction {
  if (req.args.length === 0) errAtLeastOne('ONBUILD');
  req.flags.parse();
  const trigger = goToUpper(goTrimSpace(req.args[0]!));
  if (trigger === 'ONBUILD') fail('Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
  if (trigger === 'MAINTAINER' || trigger === 'FROM') fail(`${trigger} isn't allowed as an ONBUILD trigger`);
  let expression = req.node.original.replace(/^[\t\n\f\r ]*onbuild[\t\n\f\r ]*/i, '');
  for (const h of req.node.heredocs) expression += '\n' + h.content + h.name;
  return { kind: 'ONBUILD', ...base(req), expression };
}

function parseWorkdir(req: Request): WorkdirInstruction {
  if (req.args.length !== 1) errExactlyOne('WORKDIR');
  req.flags.parse();
  return { kind: 'WORKDIR', ...base(req), path: req.args[0]! };
}

function commandLine(req: Request): CommandLine {
  const files: ShellInlineFile[] = req.node.heredocs.map((h) => ({ name: h.name, data: h.content, chomp: h.chomp }));
  return { cmdLine: handleJSONArgs(req.args, req.json), files, prependShell: !req.json };
}

function parseRun(req: Request): RunInstruction {
  const f = req.flags;
  const device = f.addStrings('device');
  const mount = f.addStrings('mount');
  const network = f.addString('network', 'default');
  const security = f.addString('security', 'sandbox');
  f.parse();
  const flagsUsed = f.usedNames();
  const cl = commandLine(req);
  const devices = device.values.map((v) => parseDevice(v));
  const mountSpecs = [...mount.values];
  const mountSources = mountSpecs.map((m) => mountSourceAtParse(m));
  if (!(NETWORK_MODES as readonly string[]).includes(network.value)) fail(`invalid network mode ${goQuote(network.value)}`);
  if (!(SECURITY_MODES as readonly string[]).includes(security.value)) fail(`security ${goQuote(security.value)} is not valid`);
  return {
    kind: 'RUN',
    ...base(req),
    ...cl,
    mountSpecs,
    mountSources,
    network: network.value as NetworkMode,
    security: security.value as SecurityMode,
    devices,
    flagsUsed,
  };
}

function parseCmd(req: Request): CmdInstruction {
  req.flags.parse();
  return { kind: 'CMD', ...base(req), ...commandLine(req) };
}

function parseEntrypoint(req: Request): EntrypointInstruction {
  req.flags.parse();
  const cl = commandLine(req);
  return { kind: 'ENTRYPOINT', ...base(req), ...cl, cmdLine: cl.cmdLine.length === 0 ? null : cl.cmdLine };
}

/** A HEALTHCHECK duration option: 0 when empty; otherwise a Go duration of at least 1ms (or 0). */
export function parseOptInterval(name: string, value: string): number {
  if (value === '') return 0;
  let d: bigint;
  try {
    d = parseGoDuration(value);
  } catch (err) {
    if (err instanceof DurationError) fail(err.message);
    throw err;
  }
  if (d === 0n) return 0;
  if (d < 1_000_000n) fail(`Interval ${goQuote(name)} cannot be less than 1ms`);
  return Number(d);
}

/** Go strconv.ParseInt(s, 10, 32) with its error text. */
function parseInt32(s: string): number {
  if (!/^[+-]?[0-9]+$/.test(s)) fail(`strconv.ParseInt: parsing ${goQuote(s)}: invalid syntax`);
  const v = Number(s);
  if (v > 2147483647 || v < -2147483648) fail(`strconv.ParseInt: parsing ${goQuote(s)}: value out of range`);
  return v;
}

function parseHealthcheck(req: Request): HealthcheckInstruction {
  if (req.args.length === 0) errAtLeastOne('HEALTHCHECK');
  const typ = goToUpper(req.args[0]!);
  const args = req.args.slice(1);
  if (typ === 'NONE') {
    if (args.length !== 0) fail('HEALTHCHECK NONE takes no arguments');
    const health: HealthConfig = { test: ['NONE'], interval: 0, timeout: 0, startPeriod: 0, startInterval: 0, retries: 0 };
    return { kind: 'HEALTHCHECK', ...base(req), health };
  }
  const f = req.flags;
  const interval = f.addString('interval', '');
  const timeout = f.addString('timeout', '');
  const startPeriod = f.addString('start-period', '');
  const startInterval = f.addString('start-interval', '');
  const retries = f.addString('retries', '');
  f.parse();
  if (typ !== 'CMD') fail(`Unknown type ${goQuote(typ)} in HEALTHCHECK (try CMD)`);
  const cmd = handleJSONArgs(args, req.json);
  if (cmd.length === 0) fail('Missing command after HEALTHCHECK CMD');
  const health: HealthConfig = {
    test: [req.json ? 'CMD' : 'CMD-SHELL', ...cmd],
    interval: parseOptInterval('interval', interval.value),
    timeout: parseOptInterval('timeout', timeout.value),
    startPeriod: parseOptInterval('start-period', startPeriod.value),
    startInterval: parseOptInterval('start-interval', startInterval.value),
    retries: 0,
  };
  if (retries.value !== '') {
    const n = parseInt32(retries.value);
    if (n < 0) fail(`--retries cannot be negative (${n})`);
    health.retries = n;
  }
  return { kind: 'HEALTHCHECK', ...base(req), health };
}

/** Go's sort of strings: by UTF-8 bytes (the same as by code points). */
function compareGoStrings(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function parseExpose(req: Request): ExposeInstruction {
  if (req.args.length === 0) errAtLeastOne('EXPOSE');
  req.flags.parse();
  return { kind: 'EXPOSE', ...base(req), ports: [...req.args].sort(compareGoStrings) };
}

function parseUser(req: Request): UserInstruction {
  if (req.args.length !== 1) errExactlyOne('USER');
  req.flags.parse();
  return { kind: 'USER', ...base(req), user: req.args[0]! };
}

function parseVolume(req: Request): VolumeInstruction {
  if (req.args.length === 0) errAtLeastOne('VOLUME');
  req.flags.parse();
  const volumes: string[] = [];
  for (const v of req.args) {
    const t = goTrimSpace(v);
    if (t === '') fail('VOLUME specified can not be an empty string');
    volumes.push(t);
  }
  return { kind: 'VOLUME', ...base(req), volumes };
}

function parseStopsignal(req: Request): StopsignalInstruction {
  // BuildKit does not read STOPSIGNAL's flags at all.
  if (req.args.length !== 1) errExactlyOne('STOPSIGNAL');
  return { kind: 'STOPSIGNAL', ...base(req), signal: req.args[0]! };
}

function parseArg(req: Request): ArgInstruction {
  // Nor ARG's flags.
  if (req.args.length < 1) errAtLeastOne('ARG');
  const args: ArgDefinition[] = req.args.map((arg) => {
    const eq = arg.indexOf('=');
    let key = arg;
    let value: string | undefined;
    if (eq >= 0) {
      key = arg.slice(0, eq);
      value = arg.slice(eq + 1);
      if (key.length === 0) fail('ARG names can not be blank');
    }
    return { key, value, docComment: docComment(req.node.prevComment, key) };
  });
  return { kind: 'ARG', ...base(req), args };
}

function parseShell(req: Request): ShellInstruction {
  req.flags.parse();
  const shell = handleJSONArgs(req.args, req.json);
  if (shell.length === 0) errAtLeastOne('SHELL');
  if (!req.json) fail('SHELL requires the arguments to be in JSON form');
  return { kind: 'SHELL', ...base(req), shell };
}

/** Where a node is, for errors. */
export function nodeLocation(node: Node, file: string): SourceLocation {
  return { file, line: node.startLine, endLine: node.endLine };
}

function toDockerfileError(err: unknown, loc: SourceLocation): unknown {
  if (err instanceof DockerfileError) return err.location ? err : err.at(loc);
  if (err instanceof ConvertError || err instanceof FlagError || err instanceof MountError || err instanceof DurationError) {
    return new DockerfileError(err.message, loc);
  }
  return err;
}

/**
 * One parser node (a child of the root) → its typed instruction. Throws DockerfileError located at
 * the node, worded as BuildKit words it.
 */
export function parseInstruction(node: Node, options: ConvertOptions): ParsedInstruction {
  const req: Request = {
    node,
    command: node.value,
    args: nodeArgs(node),
    json: node.attributes.json === true,
    flags: new BFlags(node.flags),
  };
  try {
    switch (goToLower(node.value)) {
      case 'env': return parseEnv(req);
      case 'maintainer': return parseMaintainer(req);
      case 'label': return parseLabel(req);
      case 'add': return parseAdd(req);
      case 'copy': return parseCopy(req);
      case 'from': return parseFrom(req);
      case 'onbuild': return parseOnbuild(req);
      case 'workdir': return parseWorkdir(req);
      case 'run': return parseRun(req);
      case 'cmd': return parseCmd(req);
      case 'healthcheck': return parseHealthcheck(req);
      case 'entrypoint': return parseEntrypoint(req);
      case 'expose': return parseExpose(req);
      case 'user': return parseUser(req);
      case 'volume': return parseVolume(req);
      case 'stopsignal': return parseStopsignal(req);
      case 'arg': return parseArg(req);
      case 'shell': return parseShell(req);
    }
    fail(
      withSuggestion(
        `unknown instruction: ${node.value}`,
        node.value,
        INSTRUCTION_NAMES.map((n) => n.toUpperCase()),
        false,
      ),
    );
  } catch (err) {
    throw toDockerfileError(err, nodeLocation(node, options.file));
  }
}

/**
 * The whole AST → stages and meta-args (BuildKit's `instructions.Parse`). Every instruction is
 * converted, so any malformed one is reported even in a stage that will not be built.
 */
export function convert(result: ParseResult, options: ConvertOptions): Dockerfile {
  const stages: Stage[] = [];
  const metaArgs: ArgInstruction[] = [];
  for (const node of result.ast.children) {
    const ins = parseInstruction(node, options);
    if (stages.length === 0 && ins.kind === 'ARG') {
      metaArgs.push(ins);
      continue;
    }
    if (ins.kind === 'FROM') {
      stages.push({
        index: stages.length,
        name: ins.stageName,
        baseName: ins.baseName,
        platform: ins.platform,
        docComment: ins.docComment,
        from: ins,
        startLine: ins.startLine,
        endLine: ins.endLine,
        instructions: [],
      });
      continue;
    }
    const current = stages[stages.length - 1];
    if (!current) throw new DockerfileError('no build stage in current context', nodeLocation(node, options.file));
    current.instructions.push(ins);
  }
  return {
    file: options.file,
    stages,
    metaArgs,
    directives: result.directives,
    escapeToken: result.directives.escapeToken,
    warnings: result.warnings,
  };
}
