/**
 * BuildKit's instruction-level vectors (buildkit-instructions/instructions.json): conversion of parser
 * nodes into typed instructions (argument counts, flags, heredocs, ONBUILD rules, HEALTHCHECK), EXPOSE
 * port specs, RUN --device, and whole-Dockerfile planning (stages, targets, --from, cycles).
 * Also every real-world Dockerfile of the corpus, which must convert and plan.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DockerfileError } from '../../../src/errors.js';
import { newNode, parse as parseText, type ParseResult } from '../../../src/dockerfile/parser/index.js';
import { ShellLex } from '../../../src/dockerfile/shell/index.js';
import { BFlags } from '../../../src/dockerfile/instructions/bflags.js';
import { convert, handleJSONArgs, parseInstruction, parseOptInterval } from '../../../src/dockerfile/instructions/convert.js';
import { parseGoDuration } from '../../../src/dockerfile/instructions/duration.js';
import { parsePortSpec, parsePortSpecs } from '../../../src/dockerfile/instructions/expose.js';
import { healthcheckCreatedBy } from '../../../src/dockerfile/instructions/history.js';
import { parseDevice } from '../../../src/dockerfile/instructions/mounts.js';
import { baseChain, planBuild, type BuildPlan } from '../../../src/dockerfile/instructions/stages.js';
import type {
  ArgInstruction,
  CopyInstruction,
  Dockerfile,
  HealthcheckInstruction,
  RunInstruction,
} from '../../../src/dockerfile/instructions/types.js';
import { check, corpusPath, expectEqual, readCorpusJSON, type CaseResult, type Suite } from '../harness.js';

const FILE = 'Dockerfile';

type ParseFn = (text: string, options: { file: string }) => ParseResult;

const parse: ParseFn = parseText;

/** Runs `body`, which must throw a DockerfileError; checks its detail. */
function expectError(body: () => unknown, want: { exact?: string; contains?: string }): string | undefined {
  let value: unknown;
  try {
    value = body();
  } catch (err) {
    if (!(err instanceof DockerfileError)) {
      return `threw ${err instanceof Error ? err.name : typeof err} instead of DockerfileError: ${String(err)}`;
    }
    if (want.exact !== undefined && err.detail !== want.exact) return `error ${JSON.stringify(err.detail)}, want ${JSON.stringify(want.exact)}`;
    if (want.contains !== undefined && !err.detail.includes(want.contains)) {
      return `error ${JSON.stringify(err.detail)} lacks ${JSON.stringify(want.contains)}`;
    }
    return undefined;
  }
  return `expected an error, got ${JSON.stringify(value)}`;
}

function short(s: string): string {
  const one = JSON.stringify(s);
  return one.length > 60 ? one.slice(0, 57) + '..."' : one;
}

function firstInstruction(parse: ParseFn, text: string) {
  const res = parse(text, { file: FILE });
  const node = res.ast.children[0];
  if (!node) throw new Error('parser produced no instruction');
  return parseInstruction(node, { file: FILE });
}

function dockerfile(parse: ParseFn, text: string): Dockerfile {
  return convert(parse(text, { file: FILE }), { file: FILE });
}

function lexFor(df: Dockerfile): ShellLex {
  return new ShellLex(df.escapeToken);
}

/** Labels of the target image, from LABEL instructions along its base chain (no expansion needed here). */
function targetLabels(plan: BuildPlan): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const i of baseChain(plan, plan.target)) {
    for (const ins of plan.stages[i]!.stage.instructions) {
      if (ins.kind === 'LABEL') for (const kv of ins.labels) labels[kv.key] = kv.value;
    }
  }
  return labels;
}

interface Corpus {
  parseInstructionErrors: { dockerfile: string; error?: string; errorContains?: string }[];
  syntheticNodeErrors: { cases: { cmd: string; chain: string[]; error?: string; expect?: { 'Health.Test': string[] } }[] };
  healthcheckInterval: { cases: [string, string][] };
  copyHeredoc: {
    cases: {
      dockerfile: string;
      DestPath: string;
      SourcePaths: string[];
      SourceContents: { Path: string; Data: string; Expand: boolean }[];
    }[];
  };
  runHeredoc: {
    cases: {
      dockerfile: string;
      PrependShell: boolean;
      CmdLine: string[];
      Files: { Name: string; Data: string; Chomp: boolean }[] | null;
    }[];
  };
  runFlagsUsed: { dockerfile: string; FlagsUsed: string[] }[];
  commentsDetection: { dockerfile: string; expect: Record<string, unknown> };
  builderFlags: {
    cases: {
      decl: Record<string, ['string', string] | ['bool', boolean]>;
      args: string[];
      ok: boolean;
      values?: Record<string, string | boolean>;
      used?: string[];
    }[];
  };
  runDevice: { cases: { input: string; Name?: string; Required?: boolean; error?: string }[] };
  handleJSONArgs: { cases: { args: string[]; json: boolean; expected: string[] }[] };
  exposePorts: {
    parsePort: { spec: string; error?: string; expected?: string[] }[];
    parsePorts: { specs: string[]; error?: boolean; expected?: string[] }[];
  };
  dockerfileConversion: {
    cases: { dockerfile: string; target?: string; ok: boolean; error?: string; expect?: Record<string, string> }[];
  };
  healthcheckHistory: {
    config: {
      Test: string[];
      Interval: string;
      Timeout: string;
      StartPeriod: string;
      StartInterval: string;
      Retries: number;
    };
    createdBy: string;
  };
}

/** Cases that need only the instruction layer (hand-built nodes, flag words, specs). */
function standaloneCases(c: Corpus): CaseResult[] {
  const results: CaseResult[] = [];

  c.syntheticNodeErrors.cases.forEach((t, i) => {
    results.push(
      check(`syntheticNodeErrors/${i}: ${t.cmd} ${t.chain.join(' ')}`, () => {
        const node = newNode({
          value: t.cmd,
          next: t.chain.map((v) => newNode({ value: v })),
          original: `${t.cmd} ${t.chain.join(' ')}`,
          startLine: 1,
          endLine: 1,
        });
        if (t.error !== undefined) return expectError(() => parseInstruction(node, { file: FILE }), { exact: t.error });
        const hc = parseInstruction(node, { file: FILE }) as HealthcheckInstruction;
        return expectEqual(hc.health.test, t.expect!['Health.Test'], 'Health.Test');
      }),
    );
  });

  c.healthcheckInterval.cases.forEach(([value, outcome], i) => {
    results.push(
      check(`healthcheckInterval/${i}: ${value}`, () => {
        // parseOptInterval raises a located error only inside an instruction; here it is called bare.
        const run = () => {
          try {
            return parseOptInterval('interval', value);
          } catch (err) {
            throw err instanceof Error && !(err instanceof DockerfileError) ? new DockerfileError(err.message) : err;
          }
        };
        if (outcome === 'ok') {
          run();
          return undefined;
        }
        const m = /^errorContains: (.*)$/.exec(outcome);
        if (!m) return `unknown expectation ${outcome}`;
        return expectError(run, { contains: m[1]! });
      }),
    );
  });

  c.builderFlags.cases.forEach((t, i) => {
    results.push(
      check(`builderFlags/${i}: ${JSON.stringify(t.args)} ${JSON.stringify(t.decl)}`, () => {
        const bf = new BFlags(t.args);
        const flags = Object.entries(t.decl).map(([name, [type, def]]) =>
          type === 'bool' ? bf.addBool(name, def as boolean) : bf.addString(name, def as string),
        );
        let err: unknown;
        try {
          bf.parse();
        } catch (e) {
          err = e;
        }
        if (!t.ok) return err ? undefined : 'expected an error';
        if (err) return `unexpected error: ${String(err)}`;
        if (t.values) {
          for (const [name, want] of Object.entries(t.values)) {
            const f = flags.find((x) => x.name === name)!;
            const got = f.type === 'bool' ? f.value === 'true' : f.value;
            if (got !== want) return `${name}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`;
          }
        }
        if (t.used) return expectEqual(bf.usedNames().sort(), [...t.used].sort(), 'used');
        return undefined;
      }),
    );
  });

  c.runDevice.cases.forEach((t, i) => {
    results.push(
      check(`runDevice/${i}: ${t.input}`, () => {
        if (t.error !== undefined) {
          try {
            const d = parseDevice(t.input);
            return `expected an error, got ${JSON.stringify(d)}`;
          } catch (err) {
            return expectEqual((err as Error).message, t.error, 'error');
          }
        }
        return expectEqual(parseDevice(t.input), { name: t.Name, required: t.Required });
      }),
    );
  });

  c.handleJSONArgs.cases.forEach((t, i) => {
    results.push(
      check(`handleJSONArgs/${i}: ${JSON.stringify(t.args)} json=${t.json}`, () =>
        expectEqual(handleJSONArgs(t.args, t.json), t.expected),
      ),
    );
  });

  c.exposePorts.parsePort.forEach((t, i) => {
    results.push(
      check(`exposePorts/parsePort/${i}: ${t.spec}`, () => {
        if (t.error !== undefined) {
          try {
            return `expected an error, got ${JSON.stringify(parsePortSpec(t.spec))}`;
          } catch (err) {
            return expectEqual((err as Error).message, t.error, 'error');
          }
        }
        return expectEqual(parsePortSpec(t.spec), t.expected);
      }),
    );
  });
  c.exposePorts.parsePorts.forEach((t, i) => {
    results.push(
      check(`exposePorts/parsePorts/${i}: ${t.specs.join(' ')}`, () => {
        if (t.error) {
          try {
            return `expected an error, got ${JSON.stringify(parsePortSpecs(t.specs))}`;
          } catch {
            return undefined;
          }
        }
        return expectEqual(parsePortSpecs(t.specs), t.expected);
      }),
    );
  });

  {
    const h = c.healthcheckHistory.config;
    results.push(
      check('healthcheckHistory', () =>
        expectEqual(
          healthcheckCreatedBy({
            test: h.Test,
            interval: Number(parseGoDuration(h.Interval)),
            timeout: Number(parseGoDuration(h.Timeout)),
            startPeriod: Number(parseGoDuration(h.StartPeriod)),
            startInterval: Number(parseGoDuration(h.StartInterval)),
            retries: h.Retries,
          }),
          c.healthcheckHistory.createdBy,
        ),
      ),
    );
  }
  return results;
}

/** Cases that start from Dockerfile text. */
function parsedCases(c: Corpus, parse: ParseFn): CaseResult[] {
  const results: CaseResult[] = [];

  c.parseInstructionErrors.forEach((t, i) => {
    results.push(
      check(`parseInstructionErrors/${i}: ${short(t.dockerfile)}`, () =>
        expectError(() => firstInstruction(parse, t.dockerfile), { exact: t.error, contains: t.errorContains }),
      ),
    );
  });

  c.copyHeredoc.cases.forEach((t, i) => {
    results.push(
      check(`copyHeredoc/${i}: ${short(t.dockerfile)}`, () => {
        const ins = firstInstruction(parse, t.dockerfile) as CopyInstruction;
        if (ins.kind !== 'COPY') return `expected COPY, got ${ins.kind}`;
        return expectEqual(
          {
            DestPath: ins.destPath,
            SourcePaths: ins.sourcePaths,
            SourceContents: ins.sourceContents.map((s) => ({ Path: s.path, Data: s.data, Expand: s.expand })),
          },
          { DestPath: t.DestPath, SourcePaths: t.SourcePaths, SourceContents: t.SourceContents },
        );
      }),
    );
  });

  c.runHeredoc.cases.forEach((t, i) => {
    results.push(
      check(`runHeredoc/${i}: ${short(t.dockerfile)}`, () => {
        const ins = firstInstruction(parse, t.dockerfile) as RunInstruction;
        if (ins.kind !== 'RUN') return `expected RUN, got ${ins.kind}`;
        return expectEqual(
          {
            PrependShell: ins.prependShell,
            CmdLine: ins.cmdLine,
            Files: ins.files.length ? ins.files.map((f) => ({ Name: f.name, Data: f.data, Chomp: f.chomp })) : null,
          },
          { PrependShell: t.PrependShell, CmdLine: t.CmdLine, Files: t.Files },
        );
      }),
    );
  });

  c.runFlagsUsed.forEach((t, i) => {
    results.push(
      check(`runFlagsUsed/${i}: ${short(t.dockerfile)}`, () => {
        const ins = firstInstruction(parse, t.dockerfile) as RunInstruction;
        return expectEqual(ins.flagsUsed, t.FlagsUsed, 'FlagsUsed');
      }),
    );
  });

  {
    const t = c.commentsDetection;
    const df = (() => {
      try {
        return dockerfile(parse, t.dockerfile);
      } catch (err) {
        return err as Error;
      }
    })();
    for (const [key, want] of Object.entries(t.expect)) {
      results.push(
        check(`commentsDetection: ${key}`, () => {
          if (df instanceof Error) return `conversion failed: ${df.message}`;
          const stage0 = df.stages[0]!;
          const argOf = (cmd: number, arg: number) => {
            const a = (stage0.instructions[cmd] as ArgInstruction).args[arg]!;
            return [a.key, a.docComment];
          };
          const got: Record<string, unknown> = {
            'stages[0].DocComment': stage0.docComment,
            'metaArgs[0].Key': df.metaArgs[0]?.args[0]?.key,
            'metaArgs[0].DocComment': df.metaArgs[0]?.args[0]?.docComment,
            'stage0.cmd0.args[0]': argOf(0, 0),
            'stage0.cmd1.args[0]': argOf(1, 0),
            'stage0.cmd1.args[1]': argOf(1, 1),
          };
          if (!(key in got)) return `unknown expectation ${key}`;
          return expectEqual(got[key], want, key);
        }),
      );
    }
  }

  c.dockerfileConversion.cases.forEach((t, i) => {
    results.push(
      check(`dockerfileConversion/${i}: ${short(t.dockerfile)}${t.target ? ` target=${t.target}` : ''}`, () => {
        const run = () => {
          const df = dockerfile(parse, t.dockerfile);
          return planBuild(df, { lex: lexFor(df), target: t.target });
        };
        if (!t.ok) return expectError(run, { exact: t.error });
        const plan = run();
        for (const [key, want] of Object.entries(t.expect ?? {})) {
          const m = /^image\.config\.Labels\.(.+)$/.exec(key);
          if (!m) return `unknown expectation ${key}`;
          const problem = expectEqual(targetLabels(plan)[m[1]!], want, key);
          if (problem) return problem;
        }
        return undefined;
      }),
    );
  });
  return results;
}

const instructions: Suite = {
  name: 'buildkit-instructions/instructions',
  run() {
    const corpus = readCorpusJSON<Corpus>('buildkit-instructions', 'instructions.json');
    return [...standaloneCases(corpus), ...parsedCases(corpus, parse)];
  },
};

/** Every real-world Dockerfile converts and plans (default target, no build args). */
const realWorld: Suite = {
  name: 'real-world/instructions',
  run() {
    const dir = corpusPath('real-world');
    return readdirSync(dir)
      .sort()
      .map((name) =>
        check(name, () => {
          const text = readFileSync(join(dir, name, 'Dockerfile'), 'utf8');
          const df = dockerfile(parse, text);
          planBuild(df, { lex: lexFor(df), defaultArgs: PLATFORM_ARGS });
          return undefined;
        }),
      );
  },
};

/** What the automatic platform args are on a linux/amd64 builder. */
const PLATFORM_ARGS: [string, string][] = [
  ['BUILDPLATFORM', 'linux/amd64'],
  ['BUILDOS', 'linux'],
  ['BUILDOSVERSION', ''],
  ['BUILDARCH', 'amd64'],
  ['BUILDVARIANT', ''],
  ['TARGETPLATFORM', 'linux/amd64'],
  ['TARGETOS', 'linux'],
  ['TARGETOSVERSION', ''],
  ['TARGETARCH', 'amd64'],
  ['TARGETVARIANT', ''],
];

export const suites: Suite[] = [instructions, realWorld];
