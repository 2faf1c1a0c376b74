import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kiln } from '../helpers/kiln.js';

describe('kiln check', () => {
  it('reports a malformed Dockerfile on stdin as one line with its line number and exits 1', () => {
    const r = kiln(['check', '-f', '-'], { input: 'FROM\n' });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('Dockerfile:1: FROM requires either one or three arguments\n');
    expect(r.stdout).toBe('');
  });

  it('reports lowercase `as` and a relative WORKDIR with their lines', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-check-'));
    writeFileSync(join(dir, 'Dockerfile'), 'FROM busybox as build\nWORKDIR app\nRUN true\n');
    const r = kiln(['check', dir]);
    expect(r.status).toBe(0);
    const file = join(dir, 'Dockerfile');
    expect(r.stdout.split('\n')).toEqual([
      `${file}:1: FromAsCasing: 'as' and 'FROM' keywords' casing do not match`,
      `${file}:2: WorkdirRelativePath: Relative workdir "app" can have unexpected results if the base image changes`,
      'Check complete, 2 warnings have been found!',
      '',
    ]);
  });

  it('`kiln build --check` runs the same checks; # check=error=true fails them', () => {
    const r = kiln(['build', '--check', '-f', '-', '.'], { input: '# check=error=true\nFROM busybox\nWORKDIR app\n' });
    expect(r.stdout).toContain('Dockerfile:3: WorkdirRelativePath');
    expect(r.stderr).toBe('kiln: lint violation found for rules: WorkdirRelativePath\n');
    expect(r.status).toBe(1);
  });

  it('names a missing Dockerfile in one line', () => {
    const r = kiln(['check', '-f', '/nonexistent/Dockerfile']);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('kiln: /nonexistent/Dockerfile: failed to read Dockerfile: no such file or directory\n');
  });

  it('refuses an unknown flag in one line', () => {
    const r = kiln(['check', '--bogus']);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe("kiln: unknown option '--bogus'\n");
  });

  it('checks the quick-start example cleanly', () => {
    const r = kiln(['check', 'fixtures/hello']);
    expect(r.stdout).toBe('Check complete, no warnings found.\n');
    expect(r.status).toBe(0);
  });

  it('lists its commands in --help', () => {
    const r = kiln(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/build \[options\] \[context\]/);
    expect(r.stdout).toMatch(/check \[options\] \[context\]/);
  });
});
