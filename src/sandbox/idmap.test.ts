import { describe, expect, it } from 'vitest';
import { buildMap, isIdentityMap, isMapped, mapArgs, mappedCount, parseIdMap, parseSubIds } from './idmap.js';

describe('id maps', () => {
  it('parses /proc uid_map text', () => {
    const map = parseIdMap('         0       1001          1\n         1     100000      65536\n');
    expect(map).toEqual([
      { inside: 0, outside: 1001, count: 1 },
      { inside: 1, outside: 100000, count: 65536 },
    ]);
    expect(mappedCount(map)).toBe(65537);
    expect(isMapped(map, 65536)).toBe(true);
    expect(isMapped(map, 65537)).toBe(false);
    expect(isIdentityMap(map)).toBe(false);
    expect(isIdentityMap(parseIdMap('0 0 4294967295'))).toBe(true);
  });

  it('finds subordinate ranges by name or uid, ignoring comments and junk', () => {
    const text = '# ranges\nalice:100000:65536\nbob:165536:65536\n1001:300000:1000\nalice:bad:1\nalice:400000:10\n';
    expect(parseSubIds(text, { name: 'alice', id: 1000 })).toEqual([
      { start: 100000, count: 65536 },
      { start: 400000, count: 10 },
    ]);
    expect(parseSubIds(text, { name: 'carol', id: 1001 })).toEqual([{ start: 300000, count: 1000 }]);
    expect(parseSubIds(text, { name: 'dave', id: 1002 })).toEqual([]);
  });

  it('maps root to the user and 1.. to the ranges, skipping a range holding the user itself', () => {
    const map = buildMap(1000, [
      { start: 100000, count: 65536 },
      { start: 500, count: 1000 },
      { start: 200000, count: 5 },
    ]);
    expect(map).toEqual([
      { inside: 0, outside: 1000, count: 1 },
      { inside: 1, outside: 100000, count: 65536 },
      { inside: 65537, outside: 200000, count: 5 },
    ]);
    expect(mapArgs(map.slice(0, 2))).toEqual(['0', '1000', '1', '1', '100000', '65536']);
  });
});
