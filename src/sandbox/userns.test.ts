import { describe, expect, it } from 'vitest';
import { currentNamespace, planNamespace, singleMappingWarning } from './userns.js';

describe('namespace planning', () => {
  it('knows real root needs no user namespace', () => {
    const ns = currentNamespace();
    if (process.getuid?.() === 0) expect(ns).toMatchObject({ mode: 'root', mapping: 'host', squashed: false });
    else expect(ns).toBeUndefined();
  });

  it('falls back to a single mapping without newuidmap on PATH, naming the fix', () => {
    const plan = planNamespace({ PATH: '/nonexistent' });
    expect(plan.mapping).toBe('single');
    expect(plan.reason).toBe('newuidmap and newgidmap are not on PATH');
    expect(plan.fix?.[0]).toMatch(/^apt-get install uidmap/);
    expect(plan.uidMap).toEqual([{ inside: 0, outside: process.getuid?.() ?? 0, count: 1 }]);
    expect(singleMappingWarning(plan)).toMatch(/^kiln: warning: running with a single-uid user namespace because newuidmap and newgidmap are not on PATH/);
  });
});
