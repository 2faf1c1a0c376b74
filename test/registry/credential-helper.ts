/**
 * A fake `docker-credential-<name>` helper for tests: a small Node script on a temp PATH entry that
 * keeps credentials as JSON files in a directory and logs every call, speaking the helper protocol
 * (`get`/`erase` read the server URL on stdin, `store` reads {ServerURL, Username, Secret}).
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';

export interface FakeHelper {
  /** Directory to put first on PATH. */
  binDir: string;
  /** Where the helper keeps its secrets (one JSON file per server URL). */
  storeDir: string;
  /** Pre-loads a credential, as if `store` had been called. */
  put(serverURL: string, username: string, secret: string): Promise<void>;
  /** Every call made, as `action serverURL`. */
  calls(): Promise<string[]>;
  /** PATH with the helper first. */
  path: string;
}

const SCRIPT = `#!/usr/bin/env node
const fs = require('fs');
const path = require('path');
const dir = process.env.FAKE_HELPER_DIR;
const action = process.argv[2];
const input = fs.readFileSync(0, 'utf8');
const file = (url) => path.join(dir, Buffer.from(url.trim()).toString('hex') + '.json');
const log = (s) => fs.appendFileSync(path.join(dir, 'calls.log'), s + '\\n');
if (action === 'get') {
  log('get ' + input.trim());
  try { process.stdout.write(fs.readFileSync(file(input), 'utf8')); }
  catch { process.stdout.write('credentials not found in native keychain\\n'); process.exit(1); }
} else if (action === 'store') {
  const doc = JSON.parse(input);
  log('store ' + doc.ServerURL);
  fs.writeFileSync(file(doc.ServerURL), JSON.stringify(doc));
} else if (action === 'erase') {
  log('erase ' + input.trim());
  try { fs.unlinkSync(file(input)); }
  catch { process.stdout.write('credentials not found in native keychain\\n'); process.exit(1); }
} else { process.exit(2); }
`;

/** Installs `docker-credential-<name>` under `root`. */
export async function installFakeHelper(root: string, name = 'test'): Promise<FakeHelper> {
  const binDir = join(root, 'bin');
  const storeDir = join(root, 'helper-store');
  await fsp.mkdir(binDir, { recursive: true });
  await fsp.mkdir(storeDir, { recursive: true });
  await fsp.writeFile(join(binDir, `docker-credential-${name}`), SCRIPT, { mode: 0o755 });
  const file = (url: string) => join(storeDir, `${Buffer.from(url).toString('hex')}.json`);
  return {
    binDir,
    storeDir,
    path: `${binDir}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    put: async (serverURL, username, secret) => {
      await fsp.writeFile(file(serverURL), JSON.stringify({ ServerURL: serverURL, Username: username, Secret: secret }));
    },
    calls: async () => {
      try {
        return (await fsp.readFile(join(storeDir, 'calls.log'), 'utf8')).split('\n').filter(Boolean);
      } catch {
        return [];
      }
    },
  };
}
