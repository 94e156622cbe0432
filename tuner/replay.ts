/**
 * Replaying a recorded search: a runner that answers from a trial log instead of the GPU, so
 * that strategies are compared without one. From an exhaustive log, every valid config of a
 * stage and bucket has a result, and a strategy's regret is its best find over the best there.
 * No Deno API here.
 *
 * @module
 */
import type { KernelConfig } from "../kernels/config.ts";
import { configName, parseConfigName } from "../kernels/config.ts";
import { suitsRows } from "../kernels/space.ts";
import { budgetPlan } from "./budget_plan.ts";
import { CROSS_CHECK_PASSES, neighbourWinners } from "./cross_check.ts";
import { seededRandom } from "./random.ts";
import type { Evaluation, Strategy } from "./search.ts";
import { runSearch } from "./search.ts";
import type { Trial } from "./trial_log.ts";

/** What a log knows of one stage at one bucket. */
export interface RecordedBucket {
  target: string;
  bucket: number;
  /** Every config the log has a result for there, in the log's order. */
  candidates: KernelConfig[];
  /** Median time per config name; null where it failed (check or timing). */
  times: Map<string, number | null>;
  /** The fastest time recorded. */
  bestUs: number;
}

/**
 * The stages and buckets of a log with at least one timed config, smallest bucket first, from
 * the trials of its newest generator. A config whose check failed counts as a failed candidate
 * at every bucket its family serves.
 */
export function recordedBuckets(trials: readonly Trial[]): RecordedBucket[] {
  const generator = Math.max(...trials.map((t) => t.generator));
  const checksFailed = new Map<string, Set<string>>(); // by target
  const byKey = new Map<string, RecordedBucket>();
  for (const t of trials) {
    // The stages, not the unfused baseline's GEMMs (searched among the stage's best) nor the
    // whole-projection timings.
    if (!["fused", "batched"].includes(t.target) || t.generator !== generator) continue;
    if (t.bucket === null) {
      if (t.outcome === "ok" || t.outcome === "invalid") continue;
      if (!checksFailed.has(t.target)) checksFailed.set(t.target, new Set());
      checksFailed.get(t.target)!.add(t.config);
      continue;
    }
    const key = `${t.target}@${t.bucket}`;
    let b = byKey.get(key);
    if (!b) {
      b = {
        target: t.target,
        bucket: t.bucket,
        candidates: [],
        times: new Map(),
        bestUs: Infinity,
      };
      byKey.set(key, b);
    }
    if (!b.times.has(t.config)) b.candidates.push(parseConfigName(t.config));
    b.times.set(t.config, t.outcome === "ok" ? t.medianUs! : null);
  }
  for (const b of byKey.values()) {
    for (const name of checksFailed.get(b.target) ?? []) {
      const config = parseConfigName(name);
      if (!b.times.has(name) && suitsRows(config, b.bucket)) {
        b.candidates.push(config);
        b.times.set(name, null);
      }
    }
    b.bestUs = Math.min(...[...b.times.values()].map((v) => v ?? Infinity));
  }
  return [...byKey.values()].filter((b) => Number.isFinite(b.bestUs))
    .sort((a, b) => a.target.localeCompare(b.target) || a.bucket - b.bucket);
}

/** One replayed search: what it found and what it cost. */
export interface ReplayResult {
  target: string;
  bucket: number;
  seed: number;
  /** Best time found, microseconds (Infinity if every evaluation failed). */
  foundUs: number;
  /** found / best - 1. */
  regret: number;
  evaluations: number;
  candidates: number;
}

/** A budget: a count of evaluations, or a fraction of each bucket's candidates. */
export type Budget = { trials: number } | { fraction: number };

/**
 * Each recorded stage and bucket's trials under a budget, planned as the tuner plans its run
 * (budget_plan.ts): the smallest bucket of each stage is its first.
 */
export function replayPlan(recorded: readonly RecordedBucket[], budget: Budget): number[] {
  const buckets = [...new Set(recorded.map((b) => b.bucket))].sort((a, b) => a - b);
  const targets = [...new Set(recorded.map((b) => b.target))];
  const at = (bucket: number, target: string) =>
    recorded.find((b) => b.bucket === bucket && b.target === target);
  const valid = buckets.map((m) => targets.map((t) => at(m, t)?.candidates.length ?? 0));
  const plan = budgetPlan(
    "trials" in budget ? budget.trials : { percent: 100 * budget.fraction },
    valid,
  );
  return recorded.map((b) => plan[buckets.indexOf(b.bucket)][targets.indexOf(b.target)]);
}

/**
 * Replays a strategy over every recorded stage and bucket with one seed. Buckets run smallest
 * first per stage, and each gets the winner found at the bucket before as a hint, as the tuner
 * does; their budgets are planned as the tuner's ({@linkcode replayPlan}), and the tuner's
 * cross-check follows the search (evaluations count every config a bucket was answered for).
 */
export async function replay(
  strategy: Strategy,
  recorded: readonly RecordedBucket[],
  budget: Budget,
  seed: number,
): Promise<ReplayResult[]> {
  const winners = new Map<string, KernelConfig>(); // by target: the last bucket's find
  const plan = replayPlan(recorded, budget);
  const searched: Searched[] = [];
  for (const [i, b] of recorded.entries()) {
    const hint = winners.get(b.target);
    const context = {
      candidates: b.candidates,
      hints: hint ? [hint] : [],
      random: seededRandom((seed * 1000003 + i) >>> 0),
    };
    const done = await runSearch(strategy, context, (configs) => evaluateAt(b, configs), plan[i]);
    const tried = new Set(done.map((e) => e.name));
    const best = done.filter((e) => e.medianUs !== null)
      .sort((x, y) => x.medianUs! - y.medianUs!)[0];
    if (best) winners.set(b.target, best.config);
    searched.push({ tried, best: best && { name: best.name, us: best.medianUs! } });
  }
  crossCheckReplay(recorded, searched);
  return recorded.map((b, i) => {
    const foundUs = searched[i].best?.us ?? Infinity;
    return {
      target: b.target,
      bucket: b.bucket,
      seed,
      foundUs,
      regret: foundUs / b.bestUs - 1,
      evaluations: searched[i].tried.size,
      candidates: b.candidates.length,
    };
  });
}

/** What a replayed search of one stage and bucket tried, and the best it found. */
interface Searched {
  tried: Set<string>;
  best?: { name: string; us: number };
}

/** The recorded answer for configs at a bucket. */
function evaluateAt(b: RecordedBucket, configs: KernelConfig[]): Promise<Evaluation[]> {
  return Promise.resolve(configs.map((config) => {
    const name = configName(config);
    return { config, name, medianUs: b.times.get(name) ?? null };
  }));
}

/**
 * The tuner's cross-check (cross_check.ts) on replayed searches: each bucket "times" the winners
 * of the stage's buckets either side, and their forms scaled to its rows, that it did not try,
 * while that changes a winner.
 */
function crossCheckReplay(recorded: readonly RecordedBucket[], searched: Searched[]): void {
  const same = (i: number, j: number) => recorded[j]?.target === recorded[i].target;
  for (let pass = 0; pass < CROSS_CHECK_PASSES; pass++) {
    let timed = 0;
    for (const [i, b] of recorded.entries()) {
      const either = [i - 1, i + 1].filter((j) => same(i, j))
        .map((j) => ({ m: recorded[j].bucket, winner: searched[j].best?.name }));
      const valid = new Set(b.times.keys());
      for (const name of neighbourWinners(b.bucket, either, valid, searched[i].tried)) {
        searched[i].tried.add(name);
        timed++;
        const us = b.times.get(name);
        if (us != null && us < (searched[i].best?.us ?? Infinity)) searched[i].best = { name, us };
      }
    }
    if (timed === 0) break;
  }
}
