/**
 * How many trials each stage gets at each bucket. A count is the same everywhere; a
 * percentage of a bucket's valid configs is spread so that the run's total stays that
 * percentage of all its valid configs, but a stage's first bucket, which the search starts with
 * no hint, gets {@linkcode FIRST_BUCKET_WEIGHT} times the share of the others. Replay of the
 * H100's exhaustive logs and three fresh H100 tunes chose it (NOTES.md): at 15% everywhere the
 * search missed the best basin of tp4 f16 fused m = 1 by 4-8% in 14 of 40 replayed seeds and in
 * all three fresh runs (with it: none of 40, neither of two), while the buckets after it start
 * from their neighbour's winner. No Deno API here.
 *
 * @module
 */

/** A trial budget: a count of configs per stage and bucket, or a percentage of the valid ones. */
export type TrialBudget = number | { percent: number };

/** How many times the others' share of its valid configs a stage's first bucket gets. */
export const FIRST_BUCKET_WEIGHT = 2.5;

/**
 * The trials a budget allows among `valid` configs: the count, or the percentage rounded up,
 * never more than there are, at least one.
 *
 * @example
 * ```ts
 * import { trialBudget } from "./budget_plan.ts";
 * if (trialBudget(40, 537) !== 40) throw new Error("a count");
 * if (trialBudget({ percent: 15 }, 537) !== 81) throw new Error("15% of 537, rounded up");
 * if (trialBudget({ percent: 15 }, 3) !== 1) throw new Error("at least one");
 * if (trialBudget(40, 12) !== 12) throw new Error("never more than there are");
 * ```
 */
export function trialBudget(budget: TrialBudget, valid: number): number {
  const n = typeof budget === "number" ? budget : Math.ceil((budget.percent / 100) * valid);
  return Math.max(Math.min(n, valid), Math.min(1, valid));
}

/**
 * Each bucket's trials per stage, for `valid[bucket][stage]` valid configs, buckets in the order
 * they are searched (smallest first). With a percentage, the first bucket of each stage gets
 * `weight` times the share of the others, and the others less, so that the total is about what
 * the percentage gives everywhere: at most that, unless one trial per stage and bucket is more.
 *
 * @example
 * ```ts
 * import { budgetPlan } from "./budget_plan.ts";
 * const plan = budgetPlan({ percent: 10 }, [[100], [100], [100], [100]], 2.5);
 * if (plan[0][0] !== 25) throw new Error("first bucket: 2.5 x 10%");
 * if (plan.flat().reduce((a, b) => a + b) > 40) throw new Error("at most 10% of 400");
 * if (budgetPlan(16, [[100], [100]])[1][0] !== 16) throw new Error("a count is per bucket");
 * ```
 */
export function budgetPlan(
  budget: TrialBudget,
  valid: number[][],
  weight = FIRST_BUCKET_WEIGHT,
): number[][] {
  if (typeof budget === "number") {
    return valid.map((stages) => stages.map((n) => trialBudget(budget, n)));
  }
  if (valid.length === 0) return [];
  const first = valid[0].map((n) => trialBudget({ percent: budget.percent * weight }, n));
  if (valid.length === 1) return [first];
  const fraction = budget.percent / 100;
  const all = valid.flat().reduce((a, b) => a + b, 0);
  const rest = all - valid[0].reduce((a, b) => a + b, 0);
  const left = Math.max(0, fraction * all - first.reduce((a, b) => a + b, 0));
  const share = rest > 0 ? left / rest : 0;
  // Rounded down, so that the total stays within the percentage.
  const others = (n: number) => Math.min(n, Math.max(1, Math.floor(share * n)));
  return [first, ...valid.slice(1).map((stages) => stages.map(others))];
}
