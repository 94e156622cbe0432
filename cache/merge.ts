/**
 * Merging a fresh tuning result into what a cache already holds: per bucket, the faster of the
 * two stays, so that a rerun with fewer trials, a run cut short or a second tuner of the same
 * problem never replaces a bucket with a slower one or an empty entry. A fresh bucket that its
 * run chose by timing the stored bucket's pair beside its own, in one batch, replaces the stored
 * bucket: two runs' totals of one pair differ by a few percent (another session, another GPU of
 * the kind), one batch's do not.
 *
 * @module
 */
import type { BucketResult, CacheEntry } from "./schema.ts";

/** What a bucket's projection takes as the dispatcher runs it: fused, or unfused if faster. */
export function bucketTimeUs(b: BucketResult): number {
  return Math.min(b.fusedTotalUs, b.unfused?.medianUs ?? Infinity);
}

/** The stages' own times summed: what a bucket without a one-pass timing has. */
function stagesUs(b: BucketResult): number {
  return b.fused.medianUs + (b.batched?.medianUs ?? 0);
}

/** Whether two buckets hold the same stage configs. */
export function sameStages(a: BucketResult, b: BucketResult): boolean {
  return a.fused.config === b.fused.config && a.batched?.config === b.batched?.config;
}

/**
 * The bucket to store of two results. Where the fresh run timed the kept bucket's pair beside
 * its own (`judgedAgainst` has the kept bucket's stages), the fresh bucket is the faster of the
 * two by one batch's timings and replaces the kept one. Otherwise, where both have the one-pass
 * timing of the whole projection (beside an unfused baseline) or neither has, the faster stays.
 * Where only one has it, the two totals are not alike (a one-pass time against a sum of stage
 * times): with the same stage configs the timed one stays, so that a run cut short before its
 * baseline loses nothing; with other configs the stages' own times decide.
 *
 * @example
 * ```ts
 * import { mergeBucket } from "./merge.ts";
 * const stage = (config: string, medianUs: number) => ({ config, medianUs, runnerUp: null, runnerUpMarginPct: null, trials: 1 });
 * const timed = { fused: stage("a", 8), batched: stage("b", 2), fusedTotalUs: 12, unfused: { medianUs: 40, configs: ["a"] } };
 * const cutShort = { fused: stage("a", 8), batched: stage("b", 2), fusedTotalUs: 10, unfused: null };
 * if (mergeBucket(timed, cutShort) !== timed) throw new Error("the timed bucket stays");
 * const other = { ...cutShort, fused: stage("c", 7) };
 * if (mergeBucket(timed, other) !== other) throw new Error("faster stages win");
 * // Another day reads every total 5% higher; the run timed both pairs in one batch, its own won.
 * const beatIt = { ...other, fusedTotalUs: 12.4, unfused: { medianUs: 42, configs: ["c"] } };
 * if (mergeBucket(timed, beatIt) !== timed) throw new Error("two days' totals: the lower stays");
 * if (mergeBucket(timed, beatIt, timed) !== beatIt) throw new Error("one batch decided");
 * ```
 */
export function mergeBucket(
  kept: BucketResult | undefined,
  fresh: BucketResult,
  judgedAgainst?: BucketResult,
): BucketResult {
  if (!kept) return fresh;
  if (judgedAgainst && sameStages(kept, judgedAgainst)) return fresh;
  if ((kept.unfused === null) === (fresh.unfused === null)) {
    return bucketTimeUs(fresh) <= bucketTimeUs(kept) ? fresh : kept;
  }
  if (sameStages(kept, fresh)) return fresh.unfused ? fresh : kept;
  return stagesUs(fresh) <= stagesUs(kept) ? fresh : kept;
}

/**
 * Whether a stored entry is one a run's buckets are merged into, bucket by bucket: of the run's
 * generator and problem (any other is replaced whole).
 */
export function comparableEntry(
  old: CacheEntry | undefined,
  generatorVersion: number,
  problem: CacheEntry["problem"],
): old is CacheEntry {
  return old !== undefined && old.generatorVersion === generatorVersion &&
    JSON.stringify(old.problem) === JSON.stringify(problem);
}

/**
 * The entry to store: every bucket of `fresh` merged into `old`'s ({@linkcode mergeBucket}),
 * where `old` is of the same generator and problem, plus the buckets only `old` has.
 *
 * @param old The entry on disk, if any.
 * @param fresh The run's entry.
 * @param judged The stored buckets the run timed beside its own, by bucket (see tune.ts).
 * @returns The merged entry, with `fresh`'s problem, generator and date.
 * @example
 * ```ts
 * import { mergeEntries } from "./merge.ts";
 * const stage = { config: "tile-bm32-bn32-bk8-rm4-rn4-v4", medianUs: 5, runnerUp: null, runnerUpMarginPct: null, trials: 1 };
 * const bucket = (us: number) => ({ fused: { ...stage, medianUs: us }, batched: null, fusedTotalUs: us, unfused: null });
 * const problem = { k: 8, segments: [{ name: "a", n: 8 }], batched: null, dtype: "f32" as const };
 * const old = { problem, generatorVersion: 1, tunedAt: "then", buckets: { "1": bucket(5), "2": bucket(9) } };
 * const fresh = { problem, generatorVersion: 1, tunedAt: "now", buckets: { "1": bucket(7), "4": bucket(3) } };
 * const merged = mergeEntries(old, fresh);
 * if (merged.buckets["1"].fusedTotalUs !== 5) throw new Error("the faster bucket 1 stays");
 * if (Object.keys(merged.buckets).join() !== "1,2,4") throw new Error("no bucket is lost");
 * ```
 */
export function mergeEntries(
  old: CacheEntry | undefined,
  fresh: CacheEntry,
  judged: Record<string, BucketResult> = {},
): CacheEntry {
  if (!comparableEntry(old, fresh.generatorVersion, fresh.problem)) return fresh;
  const buckets: CacheEntry["buckets"] = { ...old.buckets };
  for (const [m, bucket] of Object.entries(fresh.buckets)) {
    buckets[m] = mergeBucket(buckets[m], bucket, judged[m]);
  }
  const sorted = Object.fromEntries(
    Object.entries(buckets).sort(([a], [b]) => Number(a) - Number(b)),
  );
  return { ...fresh, buckets: sorted };
}
