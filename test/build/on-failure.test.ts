/**
 * `kiln build --on-failure=shell`, driven through a real terminal: the shell opens in the failed
 * RUN's sandbox as the step left it (its file, its working directory), and leaving it ends the build
 * with the step's own error. Without a terminal, a one-line warning and the usual failure.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../conformance/harness.js';
import { type BusyboxStore } from '../helpers/busybox.js';
import { kilnRun } from '../helpers/build.js';
import { useFixtureStore } from '../helpers/fixture-store.js';
import { KILN_BIN } from '../helpers/kiln.js';
import { Terminal, shellQuote } from '../ui/terminal.js';

let base: BusyboxStore;
let ctx: string;
useFixtureStore('progress', (s) => ({ base, ctx } = s));

const ERROR = /Dockerfile\.fail:4: process "\/bin\/sh -c echo \\"made by the failed step\\" > \/failed-step-file; .*" did not complete successfully: exit code: 7/;

describe('kiln build --on-failure=shell', () => {
  for (const progress of ['tty', 'plain']) {
    it(`opens a shell in the failed step's sandbox; leaving it fails the build with the step's error (--progress=${progress})`, { timeout: 120_000 }, async () => {
      const cmd = `cd ${shellQuote(REPO_ROOT)} && ${shellQuote(process.execPath)} ${shellQuote(KILN_BIN)} --root ${shellQuote(base.root)} build --progress ${progress} --on-failure=shell -f ${shellQuote(join(ctx, 'Dockerfile.fail'))} ${shellQuote(ctx)}`;
      const term = new Terminal(cmd);
      try {
        await term.waitFor((s) => /opening a shell in the failed step/.test(s) && /^\/work #\s*$/m.test(s), 60_000, true);
        term.type('ls /failed-step-file; cat /failed-step-file; echo "cwd=$(pwd)"');
        const screen = await term.waitFor((s) => /cwd=\/work/.test(s), 20_000, true);
        expect(screen).toMatch(/^\/failed-step-file$/m);
        expect(screen).toMatch(/^made by the failed step$/m);
        term.type('exit');
        expect(await term.exitStatus()).toBe(1);
        const end = term.screen(true).replace(/\n/g, '');
        expect(end).toMatch(ERROR);
      } finally {
        term.close();
      }
    });
  }

  it('without a terminal: one warning line, then the usual failure', async () => {
    const r = await kilnRun(base.root, ['build', '--progress', 'plain', '--on-failure=shell', '-f', join(ctx, 'Dockerfile.fail'), ctx]);
    expect(r.status).toBe(1);
    expect(r.stderr.split('\n').filter((l) => l.includes('--on-failure=shell'))).toEqual([
      'WARNING: --on-failure=shell: standard input is not a terminal, so no shell opens; the build fails as usual',
    ]);
    expect(r.stderr).toMatch(ERROR);
  });
});
