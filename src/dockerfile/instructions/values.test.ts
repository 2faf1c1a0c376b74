import { describe, expect, it } from 'vitest';
import { BFlags } from './bflags.js';
import { csvFields } from './csv.js';
import { formatGoDuration, parseGoDuration } from './duration.js';
import { parsePortSpec } from './expose.js';
import { parseDevice, parseMount, ramInBytes } from './mounts.js';
import { levenshtein, suggest } from './suggest.js';

const id = (w: string) => w;

describe('Go durations', () => {
  it.each([
    ['0', 0n], ['1ns', 1n], ['1.5s', 1_500_000_000n], ['1h30m', 5_400_000_000_000n], ['-2ms', -2_000_000n],
    ['+3us', 3000n], ['1\u00b5s', 1000n], ['1\u03bcs', 1000n], ['.5m', 30_000_000_000n], ['1.s', 1_000_000_000n],
    ['2562047h47m16.854775807s', 9223372036854775807n], ['1h1m1s1ms1us1ns', 3_661_001_001_001n],
  ])('parses %s', (s, ns) => {
    expect(parseGoDuration(s)).toBe(ns);
  });
  it.each([
    ['', 'time: invalid duration ""'],
    ['1', 'time: missing unit in duration "1"'],
    ['1x', 'time: unknown unit "x" in duration "1x"'],
    ['.s', 'time: invalid duration ".s"'],
    ['-', 'time: invalid duration "-"'],
    ['s', 'time: invalid duration "s"'],
    ['9223372036854775808ns', 'time: invalid duration "9223372036854775808ns"'],
    ['1é', 'time: unknown unit "\\xc3\\xa9" in duration "1\\xc3\\xa9"'],
  ])('rejects %j', (s, msg) => {
    expect(() => parseGoDuration(s)).toThrow(msg);
  });
  it.each([
    [0, '0s'], [1, '1ns'], [1500, '1.5µs'], [100_000_000, '100ms'], [1e9, '1s'], [90e9, '1m30s'],
    [3_600_000_000_000, '1h0m0s'], [1_500_000_000, '1.5s'], [-2_000_000, '-2ms'],
  ])('formats %d as %s', (ns, s) => {
    expect(formatGoDuration(ns)).toBe(s);
  });
  it('formats the largest duration', () => {
    expect(formatGoDuration(9223372036854775807n)).toBe('2562047h47m16.854775807s');
  });
});

describe('BFlags', () => {
  it('stops at --', () => {
    const f = new BFlags(['--a', '--', '--b']);
    const a = f.addBool('a', false);
    f.parse();
    expect(a.value).toBe('true');
  });
  it('collects repeated string flags', () => {
    const f = new BFlags(['--x=1', '--x=2']);
    const x = f.addStrings('x');
    f.parse();
    expect(x.values).toEqual(['1', '2']);
  });
  it('words BuildKit errors', () => {
    const f = new BFlags(['-x']);
    expect(() => f.parse()).toThrow('arg should start with -- : -x');
    const g = new BFlags([]);
    g.addBool('a', false);
    g.addString('a', '');
    expect(() => g.parse()).toThrow('error setting up flags: Duplicate flag defined: a');
    const h = new BFlags(['--Link']);
    h.addBool('link', false);
    expect(() => h.parse()).toThrow('unknown flag: --Link (did you mean link?)');
    const b = new BFlags(['--b=TRUE']);
    const bb = b.addBool('b', false);
    b.parse();
    expect(bb.value).toBe('true');
  });
});

describe('csv', () => {
  it.each([
    ['a,b', ['a', 'b']], ['"a,b",c', ['a,b', 'c']], ['"a""b"', ['a"b']], ['a,', ['a', '']], ['"a",', ['a', '']],
    ['a\n', ['a']], [',', ['', '']],
  ])('%j', (s, want) => {
    expect(csvFields(s)).toEqual(want);
  });
  it.each([
    ['"a', 'parse error on line 1, column 2: extraneous or missing " in quoted-field'],
    ['"a"b', 'parse error on line 1, column 3: extraneous or missing " in quoted-field'],
    ['ab"c', 'parse error on line 1, column 3: bare " in non-quoted-field'],
    ['', 'EOF'],
  ])('%j fails', (s, msg) => {
    expect(() => csvFields(s)).toThrow(msg);
  });
});

describe('mounts', () => {
  const base = { from: '', source: '', target: '', sizeLimit: 0, cacheId: '', cacheSharing: '', required: false };
  it('defaults: bind, read-only', () => {
    expect(parseMount('target=/x', id)).toEqual({ ...base, type: 'bind', target: '/x', readOnly: true });
  });
  it('reads every option', () => {
    expect(parseMount('type=cache,id=c,target=/c,sharing=locked,mode=0700,uid=1,gid=2,from=img,source=/s', id)).toEqual({
      ...base, type: 'cache', cacheId: 'c', target: '/c', cacheSharing: 'locked', mode: 0o700, uid: 1, gid: 2,
      from: 'img', source: '/s', readOnly: false,
    });
    expect(parseMount('type=tmpfs,dst=/t,size=64m', id)).toMatchObject({ type: 'tmpfs', target: '/t', sizeLimit: 64 * 1024 * 1024, readOnly: false });
    expect(parseMount('type=secret,id=tok,env=TOKEN,required', id)).toMatchObject({ type: 'secret', cacheId: 'tok', env: 'TOKEN', required: true, readOnly: true });
    expect(parseMount('type=ssh,required=false,destination=/s', id)).toMatchObject({ type: 'ssh', required: false, target: '/s' });
    expect(parseMount('type=bind,src=.,target=/w,rw', id)).toMatchObject({ source: '.', readOnly: false });
    expect(parseMount('type=bind,target=/w,readwrite=true', id)).toMatchObject({ readOnly: false });
    expect(parseMount('type=cache,target=/w,ro', id)).toMatchObject({ readOnly: true });
    expect(parseMount('TYPE=CACHE,Target=/w,readonly=1', id)).toMatchObject({ type: 'cache', readOnly: true });
  });
  it.each([
    ['type=foo', 'unsupported mount type "foo"'],
    ['type=cahce', 'unsupported mount type "cahce" (did you mean cache?)'],
    ['type=cache,sharing=x', 'unsupported sharing value "x"'],
    ['type=cache,sharing=shraed', 'unsupported sharing value "shraed" (did you mean shared?)'],
    ['foo', "invalid field 'foo' must be a key=value pair"],
    ['targte=/x', "unexpected key 'targte' in 'targte=/x' (did you mean target?)"],
    ['type=bind,required', "unexpected key 'required' for mount type 'bind'"],
    ['type=cache,size=1m', "unexpected key 'size' for mount type 'cache'"],
    ['type=tmpfs,size=lots', 'invalid value for size: lots'],
    ['ro=maybe', 'invalid value for ro: maybe'],
    ['type=cache,mode=9', 'invalid value 9 for mode'],
    ['type=cache,uid=-1', 'invalid value -1 for uid'],
    ['type=tmpfs,gid=1', 'gid not allowed for "tmpfs" type mounts'],
    ['type=secret,id=a,from=x', 'secret mount should not have a from'],
    ['type=secret,id=a,sharing=shared', 'secret mount should not define sharing'],
    ['type=secret', 'invalid secret mount. one of source, target required'],
    ['type=secret,id=a,source=b', "both source and id can't be set"],
    ['type=bind,sharing=shared', 'invalid cache sharing set for bind mount'],
  ])('%s → %s', (spec, msg) => {
    expect(() => parseMount(spec, id)).toThrow(msg);
  });
  it('expands values, not keys', () => {
    expect(parseMount('target=$T', (w) => w.replace('$T', '/t'))).toMatchObject({ target: '/t' });
  });
  it.each([
    ['1024', 1024], ['1k', 1024], ['1KiB', 1024], ['1kb', 1024], ['1.5m', 1.5 * 1024 * 1024], ['2 g', 2 * 1024 ** 3],
    ['10b', 10], ['1e3', 1000], ['x', undefined], ['1x', undefined], ['1kib2', undefined], ['-1', undefined], ['1mb b', undefined],
  ])('ramInBytes(%s)', (s, n) => {
    expect(ramInBytes(s)).toBe(n);
  });
  it('devices', () => {
    expect(parseDevice('a,required=true')).toEqual({ name: 'a', required: true });
    expect(() => parseDevice('a,b')).toThrow("invalid field 'b' must be a key=value pair");
    expect(() => parseDevice('a,nme=b')).toThrow("unexpected key 'nme' in 'nme=b' (did you mean name?)");
    expect(() => parseDevice('a,required=x')).toThrow('invalid value for required: x');
  });
});

describe('port specs', () => {
  it.each([
    ['80', ['80/tcp']], ['80/UDP', ['80/udp']], ['1-2/sctp', ['1/sctp', '2/sctp']], ['8080:80', ['80/tcp']],
    ['1000-1001:80', ['80/tcp']], ['+80', ['80/tcp']], ['80-80', ['80/tcp']],
  ])('%s', (s, want) => {
    expect(parsePortSpec(s)).toEqual(want);
  });
  it.each([
    ['80/http', 'invalid port: "80/http": invalid proto: http'],
    ['x', 'invalid containerPort: x'],
    ['70000', 'invalid containerPort: 70000'],
    ['2-1', 'invalid containerPort: 2-1'],
    ['x:80', 'invalid hostPort: x'],
    ['1-3:1-2', 'invalid ranges specified for container and host Ports: 1-2 and 1-3'],
    ['localhost:1:1', 'invalid IP address: localhost'],
    ['[::1:80:80', "invalid IP address [::1: address [::1:: missing ']' in address"],
    ['fe80::1%eth0:1:1', 'invalid IP address: fe80::1%eth0'],
  ])('%s fails', (s, msg) => {
    expect(() => parsePortSpec(s)).toThrow(msg);
  });
});

describe('helpers', () => {
  it('levenshtein and suggest', () => {
    expect(levenshtein('kitten', 'sitting')).toBe(3);
    expect(levenshtein('', 'ab')).toBe(2);
    expect(suggest('Coyp', ['copy', 'cmd'], false)).toBe('copy');
    expect(suggest('COYP', ['copy', 'cmd'], false)).toBe('COPY');
    expect(suggest('COPY', ['copy'], false)).toBeUndefined();
    expect(suggest('zzzz', ['copy'], true)).toBeUndefined();
  });
});
