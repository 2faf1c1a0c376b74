import { describe, expect, it } from 'vitest';
import { loadSuites, runSuite } from './conformance/harness.js';

const suites = await loadSuites();

describe('conformance against ../shared/conformance', () => {
  it('has suites', () => {
    expect(suites.length).toBeGreaterThan(0);
  });
  for (const suite of suites) {
    it(suite.name, async () => {
      const o = await runSuite(suite);
      const report = o.failed.map((f) => `${f.name}: ${f.detail ?? ''}`);
      expect(report).toEqual([]);
      expect(o.passed).toBeGreaterThan(0);
    });
  }
});
