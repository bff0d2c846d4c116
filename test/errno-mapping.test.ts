// One errno → domain mapping (src/process/errors.ts): every call site passes its context, none
// keeps rules of its own.
import test from 'ava';
import { KernelError } from '../src/kernel/errors.js';
import { AgentError, errnoError, fromKernel } from '../src/process/errors.js';

test('one errno table: the call site names what, field and path; a shortage blames the node only where the site says so', (t) => {
  const denied = errnoError('EACCES', { what: 'cwd: /x', field: 'cwd', path: '/x' })!;
  t.like(denied, { kind: 'PermissionDenied', message: 'cwd: /x: EACCES', detail: { reason: 'EACCES', field: 'cwd', path: '/x' } });
  t.is(errnoError('EMFILE', { what: 'spawn /bin/true', field: 'argv[0]' })!.detail.field, 'argv[0]');
  t.like(errnoError('EMFILE', { what: 'spawn /bin/true', field: 'argv[0]', shortageIsNodes: true })!, { kind: 'ResourceExhausted', detail: { field: undefined } });
  t.is(errnoError('EBADMSG', { what: 'x' }), undefined, 'an errno the table does not know stays internal');
  t.is(errnoError('EBADMSG', { what: 'x', otherwise: 'InvalidArgument' })!.kind, 'InvalidArgument');
  const kernel = new KernelError('openat2', 18);
  t.like(fromKernel(kernel, { what: 'cgroup.path: a' }) as AgentError, { kind: 'InvalidArgument', detail: { reason: 'EXDEV', syscall: 'openat2' } });
  const node = Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT', syscall: 'stat' });
  t.like(fromKernel(node, { what: 'cwd: /nope', field: 'cwd' }) as AgentError, { kind: 'NotFound', detail: { reason: 'ENOENT', syscall: 'stat', field: 'cwd' } });
  const plain = new Error('not a system call');
  t.is(fromKernel(plain, { what: 'x', otherwise: 'InvalidArgument' }), plain);
});
