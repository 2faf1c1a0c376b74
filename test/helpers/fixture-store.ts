/**
 * The setup most `kiln build` test files share: a fresh busybox store for the file's tests, with
 * one build fixture copied beside it, made before the first test and removed after the last.
 */
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { busyboxStore, type BusyboxStore } from './busybox.js';
import { copyFixture } from './build.js';

export interface FixtureStore {
  base: BusyboxStore;
  /** The fixture's copy: the build context. */
  ctx: string;
}

/** Registers the file's setup and teardown; `ready` receives the store and context once they exist. */
export function useFixtureStore(fixture: string, ready: (s: FixtureStore) => void): void {
  let base: BusyboxStore | undefined;
  beforeAll(async () => {
    base = await busyboxStore();
    ready({ base, ctx: await copyFixture(fixture, join(base.dir, fixture)) });
  }, 120_000);
  afterAll(async () => {
    await base?.cleanup();
  });
}
