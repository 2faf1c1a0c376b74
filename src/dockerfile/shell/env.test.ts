import { describe, expect, it } from 'vitest';
import { emptyEnv, envFromList, envFromRecord } from './env.js';

describe('envFromList', () => {
  it('reads NAME=VALUE entries like BuildKit: first "=" splits, bare NAME is empty, later wins', () => {
    const env = envFromList(['A=1=2', 'B', 'C=', 'A=3', 'a=lower']);
    expect(env.get('A')).toBe('3');
    expect(env.get('a')).toBe('lower');
    expect(env.get('B')).toBe('');
    expect(env.get('C')).toBe('');
    expect(env.get('D')).toBeUndefined();
    expect([...env.keys()]).toEqual(['A', 'B', 'C', 'a']);
  });
});

describe('envFromRecord', () => {
  it('accepts records and maps; undefined values are unset', () => {
    const env = envFromRecord({ A: '1', B: undefined, E: '' });
    expect(env.get('A')).toBe('1');
    expect(env.get('B')).toBeUndefined();
    expect(env.get('E')).toBe('');
    expect([...env.keys()]).toEqual(['A', 'E']);
    expect(envFromRecord(new Map([['M', 'v']])).get('M')).toBe('v');
    expect(envFromRecord({}).get('toString')).toBeUndefined();
  });

  it('emptyEnv has nothing', () => {
    expect(emptyEnv.get('PATH')).toBeUndefined();
    expect([...emptyEnv.keys()]).toEqual([]);
  });
});
