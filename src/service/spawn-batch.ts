// SpawnBatch: many Spawns in one call, each answering for itself. The batch is bounded, so one
// call cannot start more at once than a client could with a few hundred unary Spawns in flight.
import { invalidArgument } from '../process/errors.js';
import type { SpawnBatchRequest, SpawnBatchResponse, SpawnBatchResult, SpawnRequest, SpawnResponse } from '../api.js';
import type { ErrorStatus } from './status.js';

export const MAX_BATCH_SPAWNS = 256;

/**
 * Runs every item at once (each overlaps its child's exec with the others', as concurrent unary
 * Spawns do); an item's failure is its own result, never the batch's.
 */
export async function spawnBatch(
  req: SpawnBatchRequest,
  spawn: (item: SpawnRequest) => Promise<SpawnResponse>,
  failure: (e: unknown) => ErrorStatus,
): Promise<SpawnBatchResponse> {
  if (req.requests.length > MAX_BATCH_SPAWNS) throw invalidArgument('requests', `more than ${MAX_BATCH_SPAWNS} spawns in one batch`);
  const results = await Promise.all(
    req.requests.map(async (item): Promise<SpawnBatchResult> => {
      try {
        return { spawned: await spawn(item), error: undefined };
      } catch (e) {
        return { spawned: undefined, error: failure(e) };
      }
    }),
  );
  return { results };
}
