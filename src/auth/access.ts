// What the composition root opens for authorization: the policy (a file, or root alone) and the
// audit trail, closed together.
import { AuditLog } from './audit.js';
import type { Logger } from '../log.js';
import { PolicyFile } from './policy-file.js';
import { ROOT_ONLY, type Policy } from './policy.js';

export interface Access {
  /** The policy in force now. */
  readonly policy: () => Policy;
  /** Reads --policy again: true when it is now in force (false without one, or when it is broken). */
  readonly reload: () => boolean;
  readonly audit: AuditLog;
  close(): void;
}

/**
 * The policy (--policy, else uid 0 alone) and where the audit goes. Opened first: a policy that
 * does not parse stops the start before anything else is done.
 */
export function openAccess(policyFile: string | undefined, auditLog: string | undefined, log: Logger): Access {
  const file = policyFile === undefined ? undefined : new PolicyFile(policyFile, log);
  let audit: AuditLog;
  try {
    audit = new AuditLog(auditLog);
  } catch (e) {
    file?.close();
    throw e;
  }
  return {
    policy: () => file?.policy ?? ROOT_ONLY,
    reload: () => file?.reload('sighup') ?? false,
    audit,
    close: () => {
      file?.close();
      audit.close();
    },
  };
}

