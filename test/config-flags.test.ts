// Flags → Config: defaults, bounds, bad values named by flag, durations.
import test from 'ava';
import { ConfigError, DEFAULTS, parseConfig, parseDuration } from '../src/config/config.js';

test('no flags give the frozen defaults', (t) => {
  const config = parseConfig([]);
  t.deepEqual(config, DEFAULTS);
  t.true(Object.isFrozen(config));
});

test('--listen is repeatable and --tcp adds loopback addresses after the unix ones', (t) => {
  const config = parseConfig(['--tcp', '50051', '--listen', 'unix:///run/a.sock', '--listen', 'unix:///run/b.sock', '--tcp', '127.0.0.1:7', '--tcp', '[::1]:8', '--tcp', '127.0.0.2:9']);
  t.deepEqual(config.listen, ['unix:///run/a.sock', 'unix:///run/b.sock', '127.0.0.1:50051', '127.0.0.1:7', '[::1]:8', '127.0.0.2:9']);
  t.deepEqual(parseConfig(['--tcp', '1']).listen, ['127.0.0.1:1'], '--tcp alone replaces the default socket');
});

test('bad flag values throw ConfigError naming the flag', (t) => {
  const cases: [string[], string][] = [
    [['--tcp', '0.0.0.0:80'], '--tcp'],
    [['--tcp', '10.1.2.3:80'], '--tcp'],
    [['--tcp', 'localhost'], '--tcp'],
    [['--tcp', 'localhost:80'], '--tcp'],
    [['--tcp', '[::ffff:10.0.0.1]:80'], '--tcp'],
    [['--tcp', '::1:80'], '--tcp'],
    [['--tcp', '10.0.0.1:80', '--tls-cert', '/c', '--tls-key', '/k'], '--tls-cert'],
    [['--tcp', '10.0.0.1:80', '--tls-cert', '/c', '--tls-key', '/k', '--tls-client-ca', '/ca'], '--policy'],
    [['--tls-cert', '/c', '--tls-key', '/k', '--tls-client-ca', '/ca', '--policy', '/p'], '--tls-cert'],
    [['--policy', 'p.yaml'], '--policy'],
    [['--listen', 'localhost:80'], '--listen'],
    [['--listen', 'unix://relative.sock'], '--listen'],
    [['--retention-max=-1'], '--retention-max'],
    [['--retention-max', '1.5'], '--retention-max'],
    [['--event-ring', '15'], '--event-ring'],
    [['--event-ring', 'many'], '--event-ring'],
    [['--watch-backlog', '0'], '--watch-backlog'],
    [['--max-watchers', '0'], '--max-watchers'],
    [['--max-processes', 'lots'], '--max-processes'],
    [['--state-dir', 'var/lib/x'], '--state-dir'],
    [['--ephemeral', '--recover'], '--recover'],
    [['--state-dir', '/var/lib/x', '--ephemeral'], '--state-dir'],
    [['--state-dir', `/${'d'.repeat(93)}`], '--state-dir'],
    [['--ephemeral', '--takeover', 'required'], '--takeover'],
    [['--takeover'], '--takeover'],
    [['--takeover', '--quiet'], '--takeover'],
    [['--takeover', 'always'], '--takeover'],
    [['--takeover='], '--takeover'],
    [['--after-handover', 'stay'], '--after-handover'],
    [['--ready-file', 'serving'], '--ready-file'],
    [['--health-listen', '127.0.0.1:8081'], '--health-listen'],
    [['--health-listen', 'unix://health.sock'], '--health-listen'],
    [['--listen', 'unix:///run/a.sock', '--health-listen', 'unix:///run/a.sock'], '--health-listen'],
    [['--health-listen', 'unix:///run/pidfd-agent/agent.sock'], '--health-listen'],
    [['--max-connections', '0'], '--max-connections'],
    [['--handshake-timeout', '0s'], '--handshake-timeout'],
    [['--handshake-timeout', 'soon'], '--handshake-timeout'],
    [['--store-timeout', '0ms'], '--store-timeout'],
    [['--store-timeout', '50ms'], '--store-timeout'],
    [['--store-timeout', 'never'], '--store-timeout'],
    [['--ephemeral', '--store-timeout', '5s'], '--store-timeout'],
  ];
  for (const [argv, flag] of cases) {
    const e = t.throws(() => parseConfig(argv), { instanceOf: ConfigError }, argv.join(' '));
    t.true(e?.message.startsWith(`${flag}:`), `${argv.join(' ')} → ${e?.message}`);
  }
});

test('numeric flags take their lower bounds and the watch backlog stays below the event ring', (t) => {
  const config = parseConfig(['--retention-max', '0', '--event-ring', '16', '--max-watchers', '1', '--max-processes', '1', '--retention-ttl', '90s', '--quiet']);
  t.is(config.retentionMax, 0);
  t.is(config.eventRing, 16);
  t.is(config.watchBacklog, 15, 'the default backlog is capped at eventRing - 1');
  t.is(config.maxWatchers, 1);
  t.is(config.maxProcesses, 1);
  t.is(config.retentionTtlMs, parseDuration('90s'));
  t.is(config.logLevel, 'quiet');
  t.is(parseConfig(['--watch-backlog', '100']).watchBacklog, 100);
  t.is(parseConfig(['--state-dir', `/${'d'.repeat(92)}`]).stateDir?.length, 93, 'the longest state dir whose handover socket fits');
  t.like(parseConfig(['--after-handover', 'linger', '--takeover', 'if-serving']), { afterHandover: 'linger', takeover: 'if-serving' });
  t.is(parseConfig(['--takeover=required']).takeover, 'required');
  t.is(parseConfig([]).takeover, undefined, 'without the flag an agent takes over from nobody');
  t.like(parseConfig(['--max-connections', '1', '--handshake-timeout', '1500ms']), { maxConnections: 1, handshakeTimeoutMs: 1500 });
  t.is(parseConfig(['--health-listen', 'unix:///run/probe/health.sock']).healthListen, 'unix:///run/probe/health.sock');
  t.is(parseConfig([]).healthListen, undefined, 'no probe socket unless asked');
  t.is(parseConfig([]).storeTimeoutMs, undefined, 'the store is written on the event loop unless a bound is asked for');
  t.is(parseConfig(['--store-timeout', '250ms']).storeTimeoutMs, 250);
});

test('the handle table is persisted under /var/lib/pidfd-agent unless --state-dir or --ephemeral say otherwise', (t) => {
  t.is(parseConfig([]).stateDir, '/var/lib/pidfd-agent');
  t.is(parseConfig(['--state-dir', '/srv/agent']).stateDir, '/srv/agent');
  t.is(parseConfig(['--ephemeral']).stateDir, undefined);
  t.false(parseConfig([]).recover, 'a damaged store is only moved aside when asked');
  t.true(parseConfig(['--recover']).recover);
});

test('parseDuration reads ms, s, m and h, and a bare number as seconds', (t) => {
  t.is(parseDuration('500ms'), 500);
  t.is(parseDuration('30s'), 30 * 1000);
  t.is(parseDuration('5m'), 5 * 60 * 1000);
  t.is(parseDuration('1h'), 60 * 60 * 1000);
  t.is(parseDuration('2'), 2 * 1000);
  t.is(parseDuration('1.5s'), 1500);
  t.is(parseDuration(' 5m '), parseDuration('5m'));
  t.is(parseDuration('0'), 0);
  for (const bad of ['', 'forever', '-1s', '5 m', '1d', 'ms', '1.s', '1h30m']) {
    t.throws(() => parseDuration(bad), { instanceOf: ConfigError }, JSON.stringify(bad));
  }
});

test('parseConfig rejects empty, non-decimal and out-of-range values, naming the flag', (t) => {
  for (const [args, flag] of [
    [['--retention-ttl', 'forever'], '--retention-ttl'],
    [['--retention-ttl='], '--retention-ttl'],
    [['--retention-max='], '--retention-max'],
    [['--retention-max', '0x10'], '--retention-max'],
    [['--event-ring', '1e3'], '--event-ring'],
    [['--tcp', '99999'], '--tcp'],
    [['--tcp', '127.999.0.1:80'], '--tcp'],
  ] as const) {
    const e = t.throws(() => parseConfig([...args]), { instanceOf: ConfigError });
    t.true(e!.message.startsWith(`${flag}:`), e!.message);
  }
  t.deepEqual(parseConfig(['--tcp', '127.0.0.2:8080']).listen, ['127.0.0.2:8080']);
  const tls = parseConfig(['--tcp', '0.0.0.0:7443', '--tcp', '[::]:7443', '--tls-cert', '/c', '--tls-key', '/k', '--tls-client-ca', '/ca', '--policy', '/p']);
  t.deepEqual(tls.listen, ['0.0.0.0:7443', '[::]:7443'], 'with TLS any address is served');
  t.deepEqual(tls.tls, { cert: '/c', key: '/k', clientCa: '/ca' });
});
