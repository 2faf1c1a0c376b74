/**
 * `kiln login` with a wrong password, against a basic-auth registry and a token server: one line
 * that says the credentials were refused and that nothing was saved, without suggesting the
 * `kiln login` that just failed, exit status 1, and no docker config written.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type AuthMode, type RegistryServer } from '../helpers/registry/index.js';
import { isolatedEnv, kilnAsync, tempDir } from './util.js';

describe.each<AuthMode>(['basic', 'token'])('kiln login with %s auth', (mode) => {
  let reg: RegistryServer;
  let work: string;

  beforeAll(async () => {
    reg = await startRegistry({ mode });
    work = await tempDir();
  });
  afterAll(async () => {
    await reg?.stop();
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  it('refuses a wrong password in one line that does not send the user back to kiln login', async () => {
    const env = isolatedEnv(work);
    const r = await kilnAsync(['login', '-u', reg.username!, '--password-stdin', reg.host], { env, input: 'not-the-password\n' });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^kiln: ${reg.host.replace(/\./g, '\\.')}: the username or password was not accepted`));
    expect(lines[0]).toContain(`(hint: nothing was saved; check the username and password for ${reg.host})`);
    expect(lines[0]).not.toContain('kiln login');
    expect(r.stderr).not.toContain('not-the-password');
    await expect(fsp.access(join(work, 'docker', 'config.json'))).rejects.toThrow();

    const ok = await kilnAsync(['login', '-u', reg.username!, '--password-stdin', reg.host], { env, input: `${reg.password}\n` });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('Login Succeeded\n');
  });
});
