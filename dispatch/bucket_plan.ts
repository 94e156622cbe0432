/**
 * Which configs a bucket runs on this device: the tuned winner of each stage where the device
 * can run it, else the best measured config of the fastest weaker tier it can (no subgroups,
 * then WebGPU's default limits), else the bucket is left out; and the defaults for a GPU or
 * problem with no tuning.
 *
 * @module
 */
import type { BucketResult, StageResult } from "../cache/schema.ts";
import type { DeviceCaps } from "../kernels/config.ts";
import { configName, configProblem, parseConfigName } from "../kernels/config.ts";
import { DEVICE_TIERS, type DeviceTier } from "../kernels/device.ts";
import type { Precision, WeightDtype } from "../kernels/dtype.ts";
import type { GemmShape } from "../kernels/problem.ts";
import { DEFAULT_BUCKETS, defaultConfig } from "../kernels/defaults.ts";

/** Which kernels serve m rows, and why. */
export interface ProjectionConfig {
  /** The bucket m falls in. */
  bucket: number;
  /** "tuned" from the cache, or "default" for a GPU or problem with no usable tuning. */
  source: "tuned" | "default";
  /**
   * The device tier of the tuned configs that run: "best" (the tuned winners), "no-subgroups"
   * or "portable" where this device cannot run the winners; null for defaults.
   */
  tier: DeviceTier | null;
  /** Why this is not the tuned winner (a weaker tier, or the defaults); null when it is. */
  reason: string | null;
  /** "fused" (one GEMM + one batched GEMM) or "unfused" where tuning found that faster. */
  mode: "fused" | "unfused";
  /** Config name of the fused stage (in fused mode). */
  fused: string;
  /** Config name of the batched stage (in fused mode), or null without one. */
  batched: string | null;
  /** Config names of each unfused GEMM (in unfused mode). */
  unfused?: string[];
}

/** The GEMM shapes of a projection's stages. */
export interface StageShapes {
  fused: GemmShape;
  batched?: GemmShape;
  unfused: { stage: "fused" | "batched"; shape: GemmShape }[];
}

/** How buckets choose between fused and unfused kernels. */
export type ProjectionMode = "auto" | "fused" | "unfused";

/** A stage's config on this device and its tier, or why none of its configs runs here. */
type StagePick = { config: string; tier: DeviceTier; passed: string[] } | { refused: string[] };

function pickStage(
  stage: StageResult,
  shape: GemmShape,
  dtype: WeightDtype,
  caps: DeviceCaps,
): StagePick {
  const refused: string[] = [];
  const options = [{ tier: "best" as DeviceTier, config: stage.config }, ...(stage.tiers ?? [])];
  for (const option of options) {
    const problem = configProblem(parseConfigName(option.config), shape, dtype, caps);
    if (!problem) return { config: option.config, tier: option.tier, passed: refused };
    refused.push(`${option.config}: ${problem}`);
  }
  return { refused };
}

/**
 * The configs a tuned bucket runs on a device with `caps`.
 *
 * @returns The bucket's config, or why it is left out (no config of some stage runs here).
 */
export function tunedBucketConfig(
  m: number,
  result: BucketResult,
  shapes: StageShapes,
  dtype: WeightDtype,
  caps: DeviceCaps,
  mode: ProjectionMode,
): ProjectionConfig | { leftOut: string } {
  const stages: [string, StageResult, GemmShape][] = [["fused", result.fused, shapes.fused]];
  if (result.batched && shapes.batched) stages.push(["batched", result.batched, shapes.batched]);
  const picks: { name: string; config: string; tier: DeviceTier; passed: string[] }[] = [];
  for (const [name, stage, shape] of stages) {
    const pick = pickStage(stage, shape, dtype, caps);
    if ("refused" in pick) {
      return { leftOut: `m=${m} (${name} stage: ${pick.refused.join("; ")})` };
    }
    picks.push({ name, ...pick });
  }
  const tier = DEVICE_TIERS[Math.max(...picks.map((p) => DEVICE_TIERS.indexOf(p.tier)))];
  const reasons = picks.filter((p) => p.tier !== "best").map((p) =>
    `the tuned ${p.name} config ${p.passed.join(", ")}, so it runs the ${p.tier} tier's ${p.config}`
  );
  const unfusedProblems = (result.unfused?.configs ?? []).map((name, i) => {
    const problem = configProblem(parseConfigName(name), shapes.unfused[i].shape, dtype, caps);
    return problem ? `${name}: ${problem}` : "";
  }).filter(Boolean);
  const wantUnfused = result.unfused !== null &&
    (mode === "unfused" || (mode === "auto" && result.unfused.medianUs < result.fusedTotalUs));
  if (wantUnfused && unfusedProblems.length > 0) {
    reasons.push(`the tuned unfused configs exceed this device (${unfusedProblems.join("; ")})`);
  }
  const useUnfused = wantUnfused && unfusedProblems.length === 0;
  return {
    bucket: m,
    source: "tuned",
    tier: useUnfused ? "best" : tier,
    reason: reasons.length > 0 && !useUnfused ? reasons.join("; ") : null,
    mode: useUnfused ? "unfused" : "fused",
    fused: picks[0].config,
    batched: picks[1]?.config ?? null,
    ...(useUnfused ? { unfused: result.unfused!.configs } : {}),
  };
}

/**
 * The default configs of every default bucket, for a GPU or problem with no usable tuning.
 *
 * @param reason Why the defaults run, for {@linkcode ProjectionConfig.reason}.
 * @param precision "fast" takes the f16-math defaults where the weights and device allow them.
 */
export function defaultBucketConfigs(
  shapes: StageShapes,
  dtype: WeightDtype,
  caps: DeviceCaps,
  reason: string,
  precision: Precision = "exact",
): ProjectionConfig[] {
  return DEFAULT_BUCKETS.map((bucket) => ({
    bucket,
    source: "default",
    tier: null,
    reason,
    mode: "fused",
    fused: configName(defaultConfig(shapes.fused, dtype, caps, bucket, "fused", precision)),
    batched: shapes.batched
      ? configName(defaultConfig(shapes.batched, dtype, caps, bucket, "batched", precision))
      : null,
  }));
}
