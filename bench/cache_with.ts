/**
 * An in-memory cache file that makes `createProjection` run chosen configs: the bench's
 * baselines (the best single config, the fused stage alone) and bench/pair_probe.ts.
 *
 * @module
 */
import type { AdapterFingerprint, CacheFile } from "../cache/schema.ts";
import { GENERATOR_VERSION, problemKey, storedProblem } from "../cache/schema.ts";
import type { Precision, WeightDtype } from "../kernels/dtype.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";

/**
 * A cache file for one adapter whose entry for `spec` uses `pick(bucket)`'s configs at each of
 * `buckets` (the stage times in it are placeholders).
 */
export function cacheWith(
  adapter: AdapterFingerprint,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  precision: Precision,
  pick: (bucket: string) => { fused: string; batched: string | null },
  buckets: string[],
): CacheFile {
  const stage = (config: string) => ({
    config,
    medianUs: 1,
    runnerUp: null,
    runnerUpMarginPct: null,
    trials: 0,
  });
  const entryBuckets = Object.fromEntries(buckets.map((m) => {
    const { fused, batched } = pick(m);
    return [m, {
      fused: stage(fused),
      batched: batched ? stage(batched) : null,
      fusedTotalUs: 1,
      unfused: null,
    }];
  }));
  return {
    schemaVersion: 1,
    adapter,
    entries: {
      [problemKey(spec, dtype, precision)]: {
        problem: storedProblem(spec, dtype),
        generatorVersion: GENERATOR_VERSION,
        tunedAt: "",
        buckets: entryBuckets,
      },
    },
  };
}
