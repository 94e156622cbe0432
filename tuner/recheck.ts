/**
 * The recheck before a bucket is finished: a stage's fastest configs, where their timings come
 * from different runs (a resumed log, another session's GPU), are timed again together in this
 * run and ranked by those times. Two sessions' timings of one config on the H100 differ by up to
 * 2.5% (f16 math) and more (f32) while their medians agree within 1.4% (NOTES.md, "How far apart
 * two sessions' timings of one config are"), so a winner chosen across runs may be a reading, not
 * a faster kernel: a resumed f16 "fast" tune moved m = 4096-16384 by 3% in the tuner and by
 * 0.1-0.7% in the bench. No Deno API here.
 *
 * @module
 */
import type { Ranked } from "./trial_book.ts";
import type { Trial } from "./trial_log.ts";

/** How many of a stage's fastest configs a recheck times again. */
export const RECHECK_TOP = 3;

/** The log's target of a stage's recheck trials. */
export function recheckTarget(stage: string): string {
  return `recheck:${stage}`;
}

/**
 * The configs to time again: a ranking's first {@linkcode RECHECK_TOP}, where some were timed in
 * this run and some earlier; none where all were timed in this run, or none was (a rerun that
 * timed nothing new there ranks as before).
 *
 * @param ranking A stage's ranking at one bucket, fastest first.
 * @param thisRun Whether a config's timing in the ranking was taken in this run.
 * @example
 * ```ts
 * import { recheckNames } from "./recheck.ts";
 * const ranking = [{ config: "a", medianUs: 9 }, { config: "b", medianUs: 10 }, { config: "c", medianUs: 11 }, { config: "d", medianUs: 12 }];
 * const mixed = recheckNames(ranking, (c) => c === "b");
 * if (mixed.join() !== "a,b,c") throw new Error("the first three, timed again");
 * if (recheckNames(ranking, () => true).length !== 0) throw new Error("one run: nothing to recheck");
 * ```
 */
export function recheckNames(
  ranking: readonly Ranked[],
  thisRun: (config: string) => boolean,
): string[] {
  const top = ranking.slice(0, RECHECK_TOP).map((r) => r.config);
  const fresh = top.filter(thisRun).length;
  return fresh > 0 && fresh < top.length ? top : [];
}

/**
 * A ranking after its recheck: the rechecked configs first, by their new times, then the rest
 * as they were. A rechecked config that failed this time is left out; with no recheck timing at
 * all (out of time) the ranking stays as it was.
 *
 * @param ranking The ranking, fastest first.
 * @param names The configs that were rechecked.
 * @param rechecked Their new timings.
 * @example
 * ```ts
 * import { reranked } from "./recheck.ts";
 * const ranking = [{ config: "a", medianUs: 9 }, { config: "b", medianUs: 10 }, { config: "c", medianUs: 11 }, { config: "d", medianUs: 12 }];
 * const after = reranked(ranking, ["a", "b", "c"], [{ config: "b", medianUs: 10.5 }, { config: "a", medianUs: 10.8 }]);
 * if (after.map((r) => r.config).join() !== "b,a,d") throw new Error("b wins; c failed; d after");
 * ```
 */
export function reranked(
  ranking: readonly Ranked[],
  names: readonly string[],
  rechecked: readonly Ranked[],
): Ranked[] {
  if (rechecked.length === 0) return [...ranking];
  const again = new Set(names);
  return [
    ...[...rechecked].sort((a, b) => a.medianUs - b.medianUs),
    ...ranking.filter((r) => !again.has(r.config)),
  ];
}

/**
 * A ranking built from the log, with each config's latest recheck timing in place of its own
 * where the recheck came later: so that a rerun that times nothing new at a bucket ranks its
 * fastest as the last recheck did, not by the readings of different runs again.
 *
 * @param ranking A stage's ranking at one bucket.
 * @param latest A config's latest trial of the stage, and of its recheck, at that bucket.
 * @returns The ranking with those times, fastest first.
 * @example
 * ```ts
 * import { withRecheckTimes } from "./recheck.ts";
 * const trial = (medianUs: number, at: string) => ({ generator: 2, target: "", bucket: 8, config: "", outcome: "ok" as const, medianUs, at });
 * const ranking = [{ config: "a", medianUs: 9 }, { config: "b", medianUs: 10 }];
 * const after = withRecheckTimes(ranking, (c) => c === "a"
 *   ? { own: trial(9, "2026-12-01"), again: trial(10.8, "2026-12-02") }
 *   : { own: trial(10, "2026-12-02"), again: trial(10.5, "2026-12-02T01") });
 * if (after.map((r) => `${r.config} ${r.medianUs}`).join() !== "b 10.5,a 10.8") throw new Error();
 * ```
 */
export function withRecheckTimes(
  ranking: readonly Ranked[],
  latest: (config: string) => { own?: Trial; again?: Trial },
): Ranked[] {
  return ranking.map((r) => {
    const { own, again } = latest(r.config);
    if (again?.outcome !== "ok" || (own && own.at > again.at)) return r;
    return { config: r.config, medianUs: again.medianUs!, noisy: again.noisy };
  }).sort((a, b) => a.medianUs - b.medianUs);
}
