/**
 * The cross-check's rule, shared by the tuner (tune.ts) and its replay (replay.ts): after the
 * search, each bucket times the winners of the buckets either side that it did not try, again
 * while that changes a winner, up to {@linkcode CROSS_CHECK_PASSES} passes. The search runs
 * smallest bucket first and starts from the winner below; the winner above is only known
 * afterwards. No Deno API here.
 *
 * @module
 */

/** Most passes of a cross-check; each times only winners new to a bucket. */
export const CROSS_CHECK_PASSES = 4;

/**
 * The configs a bucket times in a cross-check pass: the winners below and above (by name, either
 * may be missing), those valid at the bucket and not tried there yet, once each.
 *
 * @example
 * ```ts
 * import { neighbourWinners } from "./cross_check.ts";
 * const valid = new Set(["a", "b", "c"]);
 * const got = neighbourWinners(["b", "b", "x", "a"], valid, new Set(["a"]));
 * if (got.join() !== "b") throw new Error("b once; x is not valid here, a was tried");
 * ```
 */
export function neighbourWinners(
  winners: (string | undefined)[],
  valid: ReadonlySet<string>,
  tried: ReadonlySet<string>,
): string[] {
  return [...new Set(winners)]
    .filter((name): name is string => !!name && valid.has(name) && !tried.has(name));
}
