/**
 * The bucket rule: which tuned m a call with m rows uses.
 *
 * @module
 */

/**
 * The smallest tuned bucket >= m, or the largest bucket when m is past them all: a kernel
 * tuned for more rows than m wastes at most a partial tile, one tuned for fewer would use a
 * shape chosen for a different regime.
 *
 * @param m Rows of the call (a positive integer).
 * @param buckets Tuned buckets (any order, not empty).
 * @example
 * ```ts
 * import { bucketFor } from "./bucket.ts";
 * if (bucketFor(3, [1, 2, 4, 8]) !== 4) throw new Error("3 rows use the bucket tuned at 4");
 * if (bucketFor(100, [1, 64]) !== 64) throw new Error("past the last bucket, use the last");
 * ```
 */
export function bucketFor(m: number, buckets: readonly number[]): number {
  if (buckets.length === 0) {
    throw new RangeError("Cannot pick a bucket: there are no tuned buckets");
  }
  let best = -Infinity;
  let largest = -Infinity;
  for (const b of buckets) {
    largest = Math.max(largest, b);
    if (b >= m && (best === -Infinity || b < best)) best = b;
  }
  return best === -Infinity ? largest : best;
}
