import { describe, expect, it } from 'vitest';
import { tabwrite } from './tabwriter.js';
import { goJson, parseTemplate, renderList } from './template.js';
import { createdSince, ellipsis, formatG, humanDuration, humanSize } from './units.js';

describe('docker units', () => {
  it('formats like Go %g', () => {
    expect(formatG(4.26155, 3)).toBe('4.26');
    expect(formatG(4.2, 3)).toBe('4.2');
    expect(formatG(100, 3)).toBe('100');
    expect(formatG(12.3456, 3)).toBe('12.3');
    expect(formatG(999.999, 3)).toBe('1e+03');
    expect(formatG(0, 3)).toBe('0');
  });

  it('prints sizes as go-units HumanSize does', () => {
    expect(humanSize(0)).toBe('0B');
    expect(humanSize(999)).toBe('999B');
    expect(humanSize(1000)).toBe('1kB');
    expect(humanSize(4_261_550)).toBe('4.26MB');
    expect(humanSize(4_261_550, 4)).toBe('4.262MB');
    expect(humanSize(2_048)).toBe('2.05kB');
    expect(humanSize(1_500_000_000)).toBe('1.5GB');
  });

  it('prints durations as go-units HumanDuration does', () => {
    expect(humanDuration(500)).toBe('Less than a second');
    expect(humanDuration(1_000)).toBe('1 second');
    expect(humanDuration(59_000)).toBe('59 seconds');
    expect(humanDuration(60_000)).toBe('About a minute');
    expect(humanDuration(45 * 60_000)).toBe('45 minutes');
    expect(humanDuration(3_600_000)).toBe('About an hour');
    expect(humanDuration(47 * 3_600_000)).toBe('47 hours');
    expect(humanDuration(3 * 86_400_000)).toBe('3 days');
    expect(humanDuration(20 * 86_400_000)).toBe('2 weeks');
    expect(humanDuration(90 * 86_400_000)).toBe('3 months');
    expect(humanDuration(3 * 365 * 86_400_000)).toBe('3 years');
    expect(createdSince(undefined)).toBe('N/A');
    expect(createdSince(new Date(0), 2 * 3_600_000)).toBe('2 hours ago');
  });

  it('cuts long text with an ellipsis', () => {
    expect(ellipsis('abcdef', 6)).toBe('abcdef');
    expect(ellipsis('abcdefg', 6)).toBe('abcde…');
  });
});

describe('tabwriter', () => {
  it('pads columns to the widest cell plus 3, at least 10, and leaves the last cell alone', () => {
    const out = tabwrite('REPOSITORY\tTAG\tIMAGE ID\tSIZE\nbusybox\tlatest\ta416a98b71e2\t4.26MB');
    expect(out.split('\n')).toEqual(['REPOSITORY   TAG       IMAGE ID       SIZE', 'busybox      latest    a416a98b71e2   4.26MB']);
  });

  it('pads a trailing empty cell as docker history does', () => {
    expect(tabwrite('A\tB\t\nx\ty\t')).toBe('A         B         \nx         y         ');
  });

  it('computes widths per column block', () => {
    expect(tabwrite('a\tb\nlonger-than-ten-cells\nc\td')).toBe('a         b\nlonger-than-ten-cells\nc         d');
  });
});

describe('templates', () => {
  const data = { Id: 'sha256:abc', RepoTags: ['a:1', 'b:2'], Config: { Env: ['X=1'], Labels: { k: 'v' } }, Empty: null };

  it('reads fields and calls docker functions', () => {
    expect(parseTemplate('{{.Id}}').execute(data)).toBe('sha256:abc');
    expect(parseTemplate('{{.RepoTags}}').execute(data)).toBe('[a:1 b:2]');
    expect(parseTemplate('{{json .Config}}').execute(data)).toBe('{"Env":["X=1"],"Labels":{"k":"v"}}');
    expect(parseTemplate('{{index .RepoTags 1}}').execute(data)).toBe('b:2');
    expect(parseTemplate('{{index .Config.Labels "k"}}').execute(data)).toBe('v');
    expect(parseTemplate('{{join .RepoTags ","}}').execute(data)).toBe('a:1,b:2');
    expect(parseTemplate('{{.Id | upper}}').execute(data)).toBe('SHA256:ABC');
    expect(parseTemplate('{{upper .Id}} {{len .RepoTags}}').execute(data)).toBe('SHA256:ABC 2');
    expect(parseTemplate('{{.Config.Labels}}').execute(data)).toBe('map[k:v]');
    expect(parseTemplate('{{.Missing}}').execute(data)).toBe('<no value>');
  });

  it('escapes HTML characters in JSON as Go does', () => {
    expect(goJson({ a: '<none>' })).toBe('{"a":"\\u003cnone\\u003e"}');
  });

  it('refuses what it does not support, as a usage error', () => {
    expect(() => parseTemplate('{{range .RepoTags}}{{.}}{{end}}')).toThrow(/not supported/);
    expect(() => parseTemplate('{{nosuch .Id}}')).toThrow(/function "nosuch" not defined/);
    expect(() => parseTemplate('{{.Id')).toThrow(/unclosed action/);
  });

  it('renders lists as docker does: table, table TEMPLATE, json, TEMPLATE', () => {
    const rows = [{ Repository: 'busybox', Tag: 'latest' }];
    const defaults = { table: 'table {{.Repository}}\t{{.Tag}}', headers: { Repository: 'REPOSITORY', Tag: 'TAG' } };
    expect(renderList(undefined, rows, defaults)).toBe('REPOSITORY   TAG\nbusybox      latest\n');
    expect(renderList('table {{.Tag}}\\t{{.Repository}}', rows, defaults)).toBe('TAG       REPOSITORY\nlatest    busybox\n');
    expect(renderList('json', rows, defaults)).toBe('{"Repository":"busybox","Tag":"latest"}\n');
    expect(renderList('{{.Repository}}:{{.Tag}}', rows, defaults)).toBe('busybox:latest\n');
  });
});
