/** `kiln login` / `kiln logout`: prompts and messages as docker words them. */
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { UsageError } from '../../errors.js';
import { login, loginHost, logout } from '../../registry/index.js';
import type { LoginCommandOptions } from '../commands/login.js';
import type { LogoutCommandOptions } from '../commands/logout.js';
import { registryOptions } from './options.js';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Asks on the terminal; `secret` keeps the answer from being echoed. */
async function prompt(question: string, secret: boolean): Promise<string> {
  let muted = false;
  const output = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (!muted) process.stderr.write(chunk);
      done();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  try {
    const answer = new Promise<string>((resolve) => rl.question(question, resolve));
    muted = secret;
    return await answer;
  } finally {
    rl.close();
    if (secret) process.stderr.write('\n');
  }
}

export async function runLogin(server: string | undefined, options: LoginCommandOptions): Promise<void> {
  if (options.password !== undefined && options.passwordStdin) throw new UsageError('--password and --password-stdin are mutually exclusive');
  let username = options.username;
  let password = options.password;
  if (options.passwordStdin) {
    if (!username) throw new UsageError('must provide --username with --password-stdin');
    password = (await readStdin()).replace(/\r?\n$/, '');
  } else if (password !== undefined) {
    process.stderr.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
  }
  const interactive = Boolean(process.stdin.isTTY);
  if (!username) {
    if (!interactive) throw new UsageError('no username given: use --username (and --password-stdin) when standard input is not a terminal');
    username = (await prompt('Username: ', false)).trim();
  }
  if (password === undefined) {
    if (!interactive) throw new UsageError('no password given: use --password-stdin when standard input is not a terminal');
    password = await prompt('Password: ', true);
  }
  if (!username || !password) throw new UsageError('username and password must not be empty');
  const result = await login(server, username, password, registryOptions(options));
  if (result.where.endsWith('.json')) {
    process.stderr.write(`WARNING! Your credentials are stored unencrypted in '${result.where}'.\nConfigure a credential helper to remove this warning. See\nhttps://docs.docker.com/go/credential-store/\n\n`);
  }
  process.stdout.write('Login Succeeded\n');
}

export async function runLogout(server: string | undefined, options: LogoutCommandOptions): Promise<void> {
  const host = loginHost(server);
  const removed = await logout(server, options.authfile ? { authFile: options.authfile } : {});
  process.stdout.write(removed ? `Removing login credentials for ${host}\n` : `Not logged in to ${host}\n`);
}
