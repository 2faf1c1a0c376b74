/**
 * `kiln logs --build [ID] [STEP]`: the complete output of a build's steps, kept in the store. No id
 * (or `latest`) means the most recent build, as does an ID that names no build when no STEP follows
 * (`kiln logs --build 5` is step 5 of the last build); STEP is a vertex number (`#5` or `5`) or part
 * of a step's name; without STEP the build's steps are listed with the size of their logs.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import { KilnError, UsageError } from '../errors.js';
import { listBuildIds, logPath, readBuildRecord, type BuildRecord, type StepEntry } from '../build/history/record.js';
import { formatBytes } from '../ui/plain.js';

export async function showBuildLogs(storeRoot: string, id: string | undefined, step: string | undefined, opts: { follow?: boolean }): Promise<number> {
  if (id === '' || id === 'latest') id = undefined;
  if (id !== undefined && step === undefined && !(await matchingIds(storeRoot, id)).length) {
    step = id;
    id = undefined;
  }
  const record = await findBuild(storeRoot, id);
  if (step === undefined) {
    process.stdout.write(listSteps(record));
    return 0;
  }
  const entry = findStep(record, step);
  const path = logPath(storeRoot, record.id, entry.vertex);
  const size = await fsp.stat(path).then(
    (s) => s.size,
    () => -1,
  );
  if (size < 0 && !opts.follow) {
    process.stderr.write(`#${entry.vertex} ${entry.name}: no output\n`);
    return 0;
  }
  let offset = 0;
  if (size > 0) offset = await copyRange(path, 0);
  if (!opts.follow) return 0;
  // Follow while the build is running: print what is appended until its record says it ended.
  for (;;) {
    const now = await readBuildRecord(storeRoot, record.id);
    const more = await fsp.stat(path).then(
      (s) => s.size,
      () => 0,
    );
    if (more > offset) offset = await copyRange(path, offset);
    const ended = !now || now.outcome !== 'running' || (now.steps.find((s) => s.vertex === entry.vertex)?.status ?? 'running') !== 'running';
    if (ended && more <= offset) return 0;
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function findBuild(storeRoot: string, id: string | undefined): Promise<BuildRecord> {
  const ids = await listBuildIds(storeRoot);
  if (ids.length === 0) throw new KilnError('NO_BUILDS', 'no build records in this store', { hint: 'run kiln build first' });
  let chosen: string | undefined;
  if (id === undefined) chosen = ids[ids.length - 1];
  else {
    const matches = await matchingIds(storeRoot, id);
    if (matches.length > 1) throw new UsageError(`build id "${id}" is ambiguous: ${matches.slice(0, 5).join(', ')}`);
    chosen = matches[0];
  }
  const record = chosen ? await readBuildRecord(storeRoot, chosen) : undefined;
  if (!record) throw new KilnError('BUILD_NOT_FOUND', `no build ${id ?? ''} in this store`.replace('  ', ' '), { hint: 'kiln history --build lists the builds kept' });
  return record;
}

/** Build ids `id` names: the whole id, its start (the date) or its last part. */
async function matchingIds(storeRoot: string, id: string): Promise<string[]> {
  const ids = await listBuildIds(storeRoot);
  const exact = ids.filter((b) => b === id);
  return exact.length ? exact : ids.filter((b) => b.startsWith(id) || b.endsWith(`-${id}`));
}

function findStep(record: BuildRecord, step: string): StepEntry {
  const num = /^#?(\d+)$/.exec(step.trim());
  if (num) {
    const e = record.steps.find((s) => s.vertex === Number(num[1]));
    if (e) return e;
  }
  const needle = step.toLowerCase();
  const matches = record.steps.filter((s) => s.name.toLowerCase().includes(needle));
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1) {
    throw new UsageError(`step "${step}" matches ${matches.length} steps: ${matches.slice(0, 5).map((s) => `#${s.vertex}`).join(', ')}; give its number`);
  }
  throw new UsageError(`build ${record.id} has no step "${step}"`);
}

function listSteps(record: BuildRecord): string {
  const when = new Date(record.started).toISOString().replace('T', ' ').slice(0, 19);
  const lines = [`build ${record.id} (${when}, ${record.outcome})`];
  for (const s of record.steps) {
    const status = s.status === 'cached' ? 'CACHED' : s.status === 'error' ? 'ERROR' : s.status === 'running' ? 'canceled' : 'DONE';
    lines.push(`#${String(s.vertex).padEnd(3)} ${status.padEnd(8)} ${formatBytes(s.logBytes).padStart(9)}  ${s.name}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Copies the file from `start` to the end onto standard output; answers the new offset. */
async function copyRange(path: string, start: number): Promise<number> {
  let offset = start;
  await new Promise<void>((resolve, reject) => {
    const s = createReadStream(path, { start });
    s.on('data', (chunk) => {
      offset += chunk.length;
      if (!process.stdout.write(chunk)) {
        s.pause();
        process.stdout.once('drain', () => s.resume());
      }
    });
    s.once('end', resolve);
    s.once('error', reject);
  });
  return offset;
}
