// The epoll wrapper the reaper stands on: full tokens, one-shot reports, pidfds readable at exit.
import test from 'ava';
import { Epoll, EPOLLIN, EPOLLONESHOT, type ReadyEvent } from '../src/kernel/epoll.js';
import { closeFd, eventfd } from '../src/kernel/fd.js';
import { NULL, PIPE, untilExited, start, feed, kernelError } from './helpers/kernel-children.js';

test('Epoll carries full 32-bit tokens through the packed epoll_event', (t) => {
  const ep = new Epoll(8);
  const a = eventfd(1); // a counter above zero: readable from the start
  const b = eventfd(1);
  t.teardown(() => {
    ep.close();
    closeFd(a);
    closeFd(b);
  });
  ep.add(a, EPOLLIN, 0xdeadbeef);
  ep.add(b, EPOLLIN, 0x80000001);
  const ready: ReadyEvent[] = [];
  t.is(ep.wait(ready), 2);
  t.deepEqual(ready.map((e) => e.data).sort((a, b) => a - b), [0x80000001, 0xdeadbeef]);
  for (const e of ready) t.is(e.events & EPOLLIN, EPOLLIN);
});

test('EPOLLONESHOT reports a ready fd once and again only after modify', (t) => {
  const ep = new Epoll(8);
  const level = new Epoll(8);
  const fd = eventfd(1);
  t.teardown(() => {
    ep.close();
    level.close();
    closeFd(fd);
  });
  ep.add(fd, EPOLLIN | EPOLLONESHOT, 1);
  level.add(fd, EPOLLIN, 9);
  const ready: ReadyEvent[] = [];
  t.is(ep.wait(ready), 1);
  t.is(ready[0]?.data, 1);
  t.is(ep.wait(ready), 0, 'disarmed after one report');
  t.is(level.wait(ready), 1, 'yet the fd is still readable');
  ep.modify(fd, EPOLLIN | EPOLLONESHOT, 2);
  t.is(ep.wait(ready), 1);
  t.is(ready[0]?.data, 2, 'rearmed with the new token');
  t.is(ep.wait(ready), 0);
  ep.remove(fd);
  kernelError(t, () => ep.modify(fd, EPOLLIN, 3), 'ENOENT', 'epoll_ctl(MOD)');
});

test('a pidfd in epoll turns readable when its child exits, as the reaper relies on', async (t) => {
  const ep = new Epoll(4);
  t.teardown(() => ep.close());
  const child = start(t, ['/bin/sh', '-c', 'read line; exit 0'], [PIPE, NULL, NULL]);
  ep.add(child.pidfd, EPOLLIN | EPOLLONESHOT, 0xfffffffe);
  const ready: ReadyEvent[] = [];
  t.is(ep.wait(ready), 0);
  await feed(child.take(0), '');
  await untilExited(child.pidfd);
  t.is(ep.wait(ready), 1);
  t.deepEqual(ready[0], { events: EPOLLIN, data: 0xfffffffe });
  ep.remove(child.pidfd); // deregister, then reap, then close: the agent's order
  t.deepEqual((await child.reap()).termination, { exitCode: 0 });
});
