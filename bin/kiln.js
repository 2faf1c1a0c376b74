#!/usr/bin/env node
// Thin launcher. The CLI is compiled to dist/ by tsc and bundled into dist/bundle/ (both by
// `npm run build`, run by `npm ci` through `prepare`); the bundle loads far fewer files, so it is
// used unless it is missing or older than the compiled modules (a tsc run without the bundle step).
import { statSync } from 'node:fs';

const bundle = new URL('../dist/bundle/kiln.js', import.meta.url);
const compiled = new URL('../dist/cli/main.js', import.meta.url);
const mtime = (url) => statSync(url, { throwIfNoEntry: false })?.mtimeMs ?? -1;
const { main } = await import(mtime(bundle) >= mtime(compiled) ? bundle.href : compiled.href);

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    // main() reports every expected failure itself; anything reaching here is a defect.
    process.stderr.write(`kiln: internal error: ${err && err.stack ? err.stack : String(err)}\n`);
    process.exitCode = 70;
  },
);
