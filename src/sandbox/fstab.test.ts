import { describe, expect, it } from 'vitest';
import { escapeField, escapeOverlayPath, formatFstab } from './fstab.js';

describe('fstab', () => {
  it('escapes whitespace, backslashes and # as libmount expects', () => {
    expect(escapeField('/a b\tc\\d#e')).toBe('/a\\040b\\011c\\134d\\043e');
    expect(escapeField('')).toBe('""');
  });

  it('formats one line per mount', () => {
    expect(
      formatFstab([
        { source: 'overlay', target: '/r/root', type: 'overlay', options: ['lowerdir=l/a:l/b', 'userxattr'] },
        { source: '/dev/null', target: '/r/root/dev/null', type: 'none', options: [] },
      ]),
    ).toBe('overlay /r/root overlay lowerdir=l/a:l/b,userxattr 0 0\n/dev/null /r/root/dev/null none defaults 0 0\n');
  });

  it('escapes overlay option separators in paths', () => {
    expect(escapeOverlayPath('/a:b,c\\d')).toBe('/a\\:b\\,c\\\\d');
  });
});
