/**
 * Bundles the compiled CLI (dist/cli/main.js, from tsc) for bin/kiln.js, which runs it with a V8
 * code cache. Start-up is most of what a cached `kiln build` costs: Node's ESM loader pays per module
 * (resolution, a read, a compile), and compiling the code again in every process is the rest. So:
 *
 * - dist/bundle/kiln.cjs: the whole CLI as one CommonJS script, its pure-JS packages included. The
 *   launcher compiles it with `vm.Script` and the code cache it keeps beside it (see bin/kiln.js).
 *   A script compiled that way cannot use import(), so none may run in it: the check below fails the
 *   build if one appears, except the terminal renderer's, which the launcher replaces.
 * - dist/bundle/tty.mjs: the terminal renderer (`--progress=tty`), an ES module because ink and React
 *   are ES modules only; the launcher imports it when a build draws to a terminal.
 *
 * Native addons (@napi-rs/*) and ink/React stay packages resolved from node_modules at run time.
 * bin/kiln.js falls back to dist/cli/main.js when the bundle is missing or older than it.
 */
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(REPO, 'dist/bundle');
const RUNTIME_PACKAGES = ['@napi-rs/*', 'ink', 'react'];

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
  external: RUNTIME_PACKAGES,
};

/** The renderer stays out of the CommonJS bundle: load-tty.js imports it, or the launcher does. */
const rendererApart = {
  name: 'renderer-apart',
  setup(b) {
    b.onResolve({ filter: /^\.\/tty\.js$/ }, (args) => (args.importer.endsWith('load-tty.js') ? { path: './tty.mjs', external: true } : undefined));
  },
};

rmSync(OUT, { recursive: true, force: true });
await build({
  ...common,
  entryPoints: { kiln: join(REPO, 'dist/cli/main.js') },
  outdir: OUT,
  outExtension: { '.js': '.cjs' },
  format: 'cjs',
  plugins: [rendererApart],
  // The few modules that need require() make it with createRequire(import.meta.url).
  define: { 'import.meta.url': '__kilnModuleUrl' },
  banner: { js: "var __kilnModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
});
await build({
  ...common,
  entryPoints: { tty: join(REPO, 'dist/ui/tty.js') },
  outdir: OUT,
  outExtension: { '.js': '.mjs' },
  format: 'esm',
});

const script = readFileSync(join(OUT, 'kiln.cjs'), 'utf8');
const dynamicImports = [...script.matchAll(/\bimport\s*\(.{0,40}/g)].map((m) => m[0]);
const unexpected = dynamicImports.filter((i) => !i.startsWith('import("./tty.mjs")'));
if (unexpected.length) {
  throw new Error(`dist/bundle/kiln.cjs may not use import() (bin/kiln.js runs it as a cached script): ${unexpected.join(' | ')}`);
}
