import { describe, expect, it } from 'vitest';
import { Redactor, TailBuffer } from './output.js';

function through(r: Redactor, chunks: string[]): string {
  return Buffer.concat([...chunks.map((c) => r.push(Buffer.from(c))), r.flush()]).toString();
}

describe('Redactor', () => {
  it('masks values inside one chunk and across chunk boundaries', () => {
    const values = [Buffer.from('hunter2'), Buffer.from('topsecret')];
    expect(through(new Redactor(values), ['pw=hunter2 and topsecret!'])).toBe('pw=**** and ****!');
    expect(through(new Redactor(values), ['pw=hun', 'ter2 top', 's', 'ecret', '\n'])).toBe('pw=**** ****\n');
    expect(through(new Redactor(values), ['nothing here'])).toBe('nothing here');
  });

  it('leaves output alone without secrets and ignores values too short to mask safely', () => {
    expect(through(new Redactor([]), ['a', 'b'])).toBe('ab');
    expect(through(new Redactor([Buffer.from('ab')]), ['abc'])).toBe('abc');
  });
});

describe('TailBuffer', () => {
  it('keeps the last lines, the partial one included', () => {
    const t = new TailBuffer(3);
    t.push(Buffer.from('1\n2\n3'));
    t.push(Buffer.from('\n4\n5'));
    expect(t.get()).toEqual(['3', '4', '5']);
  });
});
