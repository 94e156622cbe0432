/**
 * How a run's `--max-seconds` is spread over its searches (one per bucket and stage, smallest
 * bucket first): each search may take the share of the search time left that its planned trials
 * are of the trials planned for it and every search after it. Time a search does not use passes
 * on to the ones after it. Without shares the first bucket took the whole limit: on the H100
 * (2026-12-07) a 230 s tune of tp4 f16 "fast" at 256-2048 rows spent it all on 256 and timed
 * nothing at 512, 1024 or 2048. No Deno API here.
 *
 * @module
 */

/**
 * The part of `--max-seconds` kept after the searches, for the cross-check, the recheck and the
 * unfused baseline: runs cut short before the baseline lost it (NOTES.md, 2026-12-07).
 */
export const FINISH_SHARE = 0.2;

/**
 * The part of `--max-seconds` kept for the unfused baseline's one-pass batches alone: the
 * cross-check and the recheck stop starting work before it. Without it they took the finish
 * share on large problems (tp1 f16 "fast" on the H100, 2026-12-07: from 90 s to 111 s of a 120 s
 * run) and every bucket was left without its baseline, run after run.
 */
export const BASELINE_SHARE = 0.1;

/**
 * The time, in milliseconds, that the next search may take.
 *
 * @param leftMs The search time left in the run (negative counts as none).
 * @param planned The planned trials of the next search, then of each search after it.
 * @returns `leftMs` times `planned[0]` over the sum of `planned`; where no trials are planned,
 * an equal share of the searches left.
 * @throws {RangeError} If `planned` is empty or holds a negative or non-finite count.
 * @example
 * ```ts
 * import { timeShareMs } from "./time_share.ts";
 * if (timeShareMs(900, [100, 50, 50]) !== 450) throw new Error("half the trials, half the time");
 * if (timeShareMs(900, [0, 0, 0]) !== 300) throw new Error("none planned: equal shares");
 * if (timeShareMs(-5, [1, 1]) !== 0) throw new Error("no time left, no share");
 * ```
 */
export function timeShareMs(leftMs: number, planned: readonly number[]): number {
  if (planned.length === 0) {
    throw new RangeError("Expected the planned trials of at least one search, got none");
  }
  const bad = planned.find((n) => !Number.isFinite(n) || n < 0);
  if (bad !== undefined) {
    throw new RangeError(`Expected planned trials to be counts of zero or more, got ${bad}`);
  }
  const left = Math.max(leftMs, 0);
  const total = planned.reduce((a, b) => a + b, 0);
  return total === 0 ? left / planned.length : (left * planned[0]) / total;
}
