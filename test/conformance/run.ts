/** `npm run conformance`: one line per suite, non-zero exit if any case fails. */
import { loadSuites, runSuite } from './harness.js';

const verbose = process.argv.includes('-v') || process.argv.includes('--verbose');
let failures = 0;
for (const suite of await loadSuites()) {
  const o = await runSuite(suite);
  failures += o.failed.length;
  const extra = o.excepted.length ? `, ${o.excepted.length} excepted` : '';
  console.log(`${o.suite}: ${o.passed} passed, ${o.failed.length} failed${extra}`);
  for (const f of o.failed.slice(0, verbose ? Infinity : 5)) console.log(`  FAIL ${f.name}: ${f.detail ?? ''}`);
  if (!verbose && o.failed.length > 5) console.log(`  ... ${o.failed.length - 5} more (run with -v)`);
}
process.exitCode = failures ? 1 : 0;
