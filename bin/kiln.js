#!/usr/bin/env node
// The launcher. The CLI is compiled to dist/ by tsc and bundled into dist/bundle/ (both by
// `npm run build`, run by `npm ci` through `prepare`; see scripts/bundle.mjs).
//
// Most of a cached build's time would be Node starting kiln: reading and compiling the CLI's code.
// So the bundle, one CommonJS script, is compiled with a V8 code cache kept beside it
// (`kiln.cjs.<command>-<bundle time>.cache`, one per command, since each compiles different code). A cache V8
// rejects (another Node, a rebuilt bundle) is made again after the command succeeds; where the
// directory is read-only kiln simply runs without one. The compiled modules in dist/cli are used when
// the bundle is missing or older than them (a tsc run without the bundle step).
import { readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';

const bundleUrl = new URL('../dist/bundle/kiln.cjs', import.meta.url);
const compiledUrl = new URL('../dist/cli/main.js', import.meta.url);
const mtime = (url) => statSync(url, { throwIfNoEntry: false })?.mtimeMs ?? -1;

/** The first word that is not an option: the command, which names the cache. */
function commandOf(args) {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--root') i++;
    else if (!args[i].startsWith('-')) return /^[a-z-]+$/.test(args[i]) ? args[i] : 'other';
  }
  return 'none';
}

function loadBundle(args, bundleTime) {
  const file = fileURLToPath(bundleUrl);
  // V8 checks a cache against the length of the source, not its content: the bundle's time is in
  // the name, so a rebuilt bundle never meets the cache of the one before.
  const cacheFile = `${file}.${commandOf(args)}-${Math.floor(bundleTime)}.cache`;
  let cachedData;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    // no cache yet
  }
  const script = new Script(Module.wrap(readFileSync(file, 'utf8')), { filename: file, ...(cachedData ? { cachedData } : {}) });
  const module = { exports: {} };
  script.runInThisContext().call(module.exports, module.exports, createRequire(file), module, file, fileURLToPath(new URL('.', bundleUrl)));
  // The terminal renderer is an ES module apart (ink is one); the bundle asks for it through this.
  globalThis[Symbol.for('kiln.loadTtyModule')] = () => import(new URL('../dist/bundle/tty.mjs', import.meta.url).href);
  const saveCache = () => {
    if (cachedData && !script.cachedDataRejected) return;
    // After the command ran, the cache holds the functions it compiled, not only the top level.
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    try {
      writeFileSync(tmp, script.createCachedData());
      renameSync(tmp, cacheFile);
    } catch {
      try {
        unlinkSync(tmp);
      } catch {
        // nothing was written
      }
    }
  };
  return { main: module.exports.main, saveCache };
}

const args = process.argv.slice(2);
const bundleTime = mtime(bundleUrl);
const { main, saveCache } =
  bundleTime >= mtime(compiledUrl) ? loadBundle(args, bundleTime) : { ...(await import(compiledUrl.href)), saveCache: () => undefined };

main(args).then(
  (code) => {
    process.exitCode = code;
    // Help (and `kiln -v`, which names no command) compiles little: the cache waits for a real run.
    if (code === 0 && commandOf(args) !== 'none' && !args.some((a) => a === '-h' || a === '--help')) saveCache();
  },
  (err) => {
    // main() reports every expected failure itself; anything reaching here is a defect.
    process.stderr.write(`kiln: internal error: ${err && err.stack ? err.stack : String(err)}\n`);
    process.exitCode = 70;
  },
);
