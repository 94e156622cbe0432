/**
 * Device tiers in tuning: every stage and bucket also keeps the best measured config of each
 * weaker tier (no subgroups; WebGPU's default limits), and the candidates of a stage always
 * include one of each tier, so that a user's plain device still runs tuned kernels.
 *
 * @module
 */
import type { TierResult } from "../cache/schema.ts";
import type { DeviceCaps, KernelConfig } from "../kernels/config.ts";
import { configProblem, parseConfigName } from "../kernels/config.ts";
import { type DeviceTier, tierCaps } from "../kernels/device.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import type { GemmShape } from "../kernels/problem.ts";

/** The tiers below "best", in the order the dispatcher tries them. */
const WEAKER: Exclude<DeviceTier, "best">[] = ["no-subgroups", "portable"];

/** A measured config. */
export interface Measured {
  config: string;
  medianUs: number;
}

/**
 * The best measured config of each weaker tier, from a stage's timings at one bucket, listed
 * where it differs from the winner (the fastest) and from the tier before.
 *
 * @param timed The stage's timings at the bucket, in any order.
 * @param best What the tuning device can run.
 * @param winner The stage's winner (by default the fastest of `timed`).
 * @example
 * ```ts
 * import { stageTiers } from "./tiers.ts";
 * import { PORTABLE_CAPS } from "../kernels/device.ts";
 * import { fusedShape } from "../kernels/problem.ts";
 * const shape = fusedShape({ name: "x", k: 64, segments: [{ name: "a", n: 64 }] });
 * const caps = { ...PORTABLE_CAPS, maxInvocations: 1024, maxWorkgroupSizeX: 1024, subgroups: true, subgroupMinSize: 32 };
 * const tiers = stageTiers([
 *   { config: "gemv-nc4-cn1-l16-rm1-v4-sg", medianUs: 5 },
 *   { config: "gemv-nc32-cn1-l16-rm1-v4", medianUs: 6 }, // 512 threads
 *   { config: "gemv-nc4-cn1-l16-rm1-v4", medianUs: 7 },
 * ], shape, "f32", caps);
 * if (tiers.map((t) => t.tier).join() !== "no-subgroups,portable") throw new Error("both tiers");
 * ```
 */
export function stageTiers(
  timed: readonly Measured[],
  shape: GemmShape,
  dtype: WeightDtype,
  best: DeviceCaps,
  winner?: string,
): TierResult[] {
  const ranking = [...timed].sort((a, b) => a.medianUs - b.medianUs);
  let previous = winner ?? ranking[0]?.config;
  const tiers: TierResult[] = [];
  for (const tier of WEAKER) {
    const caps = tierCaps(tier, best);
    const fit = ranking.find((t) => !configProblem(parseConfigName(t.config), shape, dtype, caps));
    if (!fit || fit.config === previous) continue;
    tiers.push({ tier, config: fit.config, medianUs: fit.medianUs });
    previous = fit.config;
  }
  return tiers;
}

/**
 * The first `count` candidates in the strategy's order, plus the first candidate of each weaker
 * tier where none of those fits that tier: every tier gets at least one measured config.
 *
 * @param ordered The stage's valid configs at the bucket, in the strategy's order.
 * @param count How many the trial budget allows.
 * @param best What the tuning device can run.
 */
export function withTierCandidates(
  ordered: readonly KernelConfig[],
  count: number,
  shape: GemmShape,
  dtype: WeightDtype,
  best: DeviceCaps,
): KernelConfig[] {
  const chosen = ordered.slice(0, count);
  if (chosen.length === 0) return chosen;
  for (const tier of WEAKER) {
    const caps = tierCaps(tier, best);
    const fits = (c: KernelConfig) => !configProblem(c, shape, dtype, caps);
    if (chosen.some(fits)) continue;
    const extra = ordered.find(fits);
    if (extra) chosen.push(extra);
  }
  return chosen;
}
