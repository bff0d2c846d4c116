// Preloaded into the agent by bench/heap-profile.ts (`--import`): V8's sampling heap profiler
// with the samples of collected objects kept (what `--heap-prof` drops), written at exit to
// $HEAP_SAMPLER_OUT. Only for that bench; the agent never loads it.
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';

const session = new Session();
session.connect();
session.post('HeapProfiler.startSampling', {
  samplingInterval: Number(process.env.HEAP_SAMPLER_INTERVAL ?? 4096),
  includeObjectsCollectedByMajorGC: true,
  includeObjectsCollectedByMinorGC: true,
});
process.on('exit', () => {
  session.post('HeapProfiler.stopSampling', (err, res) => {
    if (!err) writeFileSync(process.env.HEAP_SAMPLER_OUT, JSON.stringify(res.profile));
  });
});
