/**
 * Bundles the compiled CLI (dist/cli/main.js, from tsc) into dist/bundle/: one module for what
 * every command needs, and a chunk for each lazily imported part (the engine, the sandbox, the
 * registry client...), so a process loads a handful of files instead of a few hundred. Node's ESM
 * loader pays per module (resolution, a file read, a compile), which is most of what a cached
 * `kiln build` would otherwise spend after node itself starts.
 *
 * Only the small pure-JS packages the CLI always uses are bundled; every other package (native
 * addons, the terminal UI's dependencies) stays an ordinary import, resolved from node_modules at
 * run time. bin/kiln.js falls back to dist/cli/main.js when the bundle is missing or older than it.
 */
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(REPO, 'dist/bundle');

/** Packages bundled when dist/ imports them (their own dependencies come along). */
const BUNDLED = new Set(['commander', 'p-limit', 'proper-lockfile']);

/** Name of the package a bare specifier names (`@scope/name/sub` -> `@scope/name`). */
function packageOf(spec) {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

const selectPackages = {
  name: 'select-packages',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith('node:')) return { path: args.path, external: true };
      // Inside a bundled package, its dependencies are bundled too; from kiln's own code, only the allowed ones.
      if (args.importer.includes('/node_modules/')) return packageOf(args.path).startsWith('@napi-rs/') ? { path: args.path, external: true } : undefined;
      return BUNDLED.has(packageOf(args.path)) ? undefined : { path: args.path, external: true };
    });
  },
};

rmSync(OUT, { recursive: true, force: true });
await build({
  entryPoints: { kiln: join(REPO, 'dist/cli/main.js') },
  outdir: OUT,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
  plugins: [selectPackages],
  // Bundled CommonJS packages call require() for node's own modules.
  banner: { js: "import { createRequire as __kilnCreateRequire } from 'node:module'; const require = __kilnCreateRequire(import.meta.url);" },
});
