/**
 * Configs for GPUs or buckets with no tuning. Per bucket and stage, the config that did best
 * under WebGPU's default limits (256 invocations, 16 KiB of workgroup memory, no subgroups) in the
 * generator-2 tuning logs of the H100 and H200 (`cache/logs/`, 2026-11-25 and 2026-12-04); where
 * it does not fit a shape, weight type or device, conservative generic configs follow it, so that
 * every shape gets one.
 *
 * @module
 */
import type { DeviceCaps, KernelConfig } from "./config.ts";
import { configProblem, parseConfigName } from "./config.ts";
import type { Precision, WeightDtype } from "./dtype.ts";
import type { GemmShape } from "./problem.ts";
import { nextPow2 } from "./space.ts";

/** A stage's default: one config, or one for f32 weights and one for 16-bit weights. */
type Pick = string | { f32: string; half: string };

/** A default bucket's config per stage, and with precision "fast" where f16 math wins. */
interface DefaultBucket {
  bucket: number;
  fused: Pick;
  batched: Pick;
  /** f16 weights with f16 math (`precision: "fast"`, devices with shader-f16), where it differs. */
  fast?: { fused: string; batched: string };
}

/**
 * The measured defaults: per bucket and stage, the config valid under WebGPU's default limits with
 * the best geometric mean of its time over the best such config's, across the generator-2 logs of
 * Kimi Linear tp 2, 4 and 8 on the H100 and the H200, f32 logs and 16-bit (f16, bf16) logs apart:
 * what `bench/default_picks.ts` prints for them (2026-12-04; m = 4 of the 16-bit batched stage,
 * where no config was timed in half of the logs, takes m = 8's). Past 4096 rows the picks stay
 * the same. The `fast` picks rank the two precision "fast" logs (tp4 on the H100 and the H200)
 * with shader-f16 allowed, from m = 32, where an f16-math config comes first; below that the
 * 16-bit picks serve, ranked over more logs.
 */
const MEASURED: readonly DefaultBucket[] = [
  {
    bucket: 1,
    fused: { f32: "gemv-nc4-cn1-l32-rm1-v4", half: "gemv-nc2-cn1-l16-rm1-v8" },
    batched: "gemv-nc8-cn1-l16-rm1-v4",
  },
  {
    bucket: 2,
    fused: { f32: "gemv-nc4-cn1-l32-rm2-v4", half: "gemv-nc2-cn1-l16-rm1-v4" },
    batched: { f32: "gemv-nc8-cn1-l32-rm1-v2", half: "gemv-nc8-cn1-l32-rm1-v4" },
  },
  {
    bucket: 4,
    fused: { f32: "gemv-nc2-cn2-l16-rm2-v4", half: "gemv-nc8-cn1-l32-rm1-v4" },
    batched: { f32: "gemv-nc8-cn1-l16-rm2-v4", half: "gemv-nc8-cn2-l16-rm2-v4" },
  },
  {
    bucket: 8,
    fused: { f32: "gemv-nc2-cn2-l16-rm4-v2", half: "gemv-nc2-cn4-l16-rm4-v4" },
    batched: { f32: "gemv-nc8-cn1-l16-rm2-v4", half: "gemv-nc8-cn2-l16-rm2-v4" },
  },
  {
    bucket: 16,
    fused: { f32: "outer-bm32-bn128-bk16-rm8-rn4-s8", half: "gemv-nc2-cn4-l16-rm4-v4" },
    batched: { f32: "gemv-nc8-cn1-l8-rm4-v4", half: "gemv-nc8-cn2-l8-rm4-v4" },
  },
  {
    bucket: 32,
    fused: { f32: "outer-bm32-bn128-bk16-rm8-rn4-s8", half: "outer-bm32-bn64-bk16-rm8-rn4-s8" },
    batched: { f32: "tile-bm16-bn32-bk32-rm4-rn2-v4", half: "gemv-nc8-cn2-l8-rm4-v4" },
    fast: { fused: "outer-bm32-bn32-bk32-rm4-rn4-s8-h", batched: "outer-bm32-bn32-bk32-rm4-rn4-h" },
  },
  {
    bucket: 64,
    fused: "outer-bm64-bn64-bk16-rm8-rn4-s8",
    batched: { f32: "tile-bm32-bn32-bk32-rm4-rn2-v4", half: "tile-bm16-bn32-bk32-rm2-rn2-v4" },
    fast: { fused: "outer-bm32-bn32-bk32-rm4-rn4-s8-h", batched: "outer-bm32-bn32-bk32-rm4-rn4-h" },
  },
  {
    bucket: 128,
    fused: "outer-bm64-bn64-bk16-rm8-rn4-s8",
    batched: "tile-bm32-bn32-bk32-rm4-rn2-v4",
    fast: { fused: "outer-bm64-bn64-bk32-rm8-rn4-s8-h", batched: "outer-bm32-bn32-bk32-rm4-rn4-h" },
  },
  {
    bucket: 256,
    fused: "outer-bm64-bn64-bk16-rm8-rn4-s4",
    batched: { f32: "tile-bm16-bn64-bk32-rm4-rn2-v4", half: "tile-bm32-bn32-bk32-rm4-rn2-v4" },
    fast: { fused: "outer-bm64-bn64-bk32-rm8-rn4-s4-h", batched: "outer-bm32-bn32-bk32-rm4-rn4-h" },
  },
  {
    bucket: 512,
    fused: "outer-bm64-bn64-bk16-rm8-rn4-s4",
    batched: { f32: "outer-bm64-bn64-bk16-rm8-rn4", half: "tile-bm64-bn32-bk32-rm4-rn2-v4" },
    fast: { fused: "outer-bm64-bn64-bk32-rm8-rn4-s4-h", batched: "outer-bm64-bn64-bk32-rm4-rn4-h" },
  },
  {
    bucket: 1024,
    fused: { f32: "outer-bm64-bn64-bk16-rm8-rn4-s2", half: "outer-bm128-bn64-bk16-rm8-rn8" },
    batched: "outer-bm64-bn64-bk16-rm8-rn4",
    fast: {
      fused: "outer-bm64-bn64-bk32-rm8-rn4-s2-h",
      batched: "outer-bm128-bn64-bk32-rm8-rn8-h",
    },
  },
  {
    bucket: 2048,
    fused: { f32: "outer-bm64-bn64-bk16-rm8-rn8", half: "outer-bm128-bn64-bk16-rm8-rn8" },
    batched: "outer-bm64-bn64-bk16-rm8-rn4",
    fast: { fused: "outer-bm64-bn64-bk32-rm8-rn4-h", batched: "outer-bm64-bn64-bk32-rm4-rn8-h" },
  },
  {
    bucket: 4096,
    fused: "outer-bm128-bn64-bk16-rm8-rn8",
    batched: "outer-bm64-bn64-bk16-rm8-rn4",
    fast: { fused: "outer-bm64-bn64-bk32-rm8-rn8-h", batched: "outer-bm64-bn64-bk32-rm8-rn4-h" },
  },
];

/**
 * The measured default of a bucket's stage for a weight type and precision ("fast" has its own
 * picks only for f16 weights; they need the device's shader-f16 feature).
 */
export function measuredDefault(
  bucket: number,
  stage: "fused" | "batched",
  dtype: WeightDtype,
  precision: Precision = "exact",
): string {
  const row = MEASURED.find((b) => b.bucket >= bucket) ?? MEASURED[MEASURED.length - 1];
  if (precision === "fast" && dtype === "f16" && row.fast) return row.fast[stage];
  const pick = row[stage];
  return typeof pick === "string" ? pick : dtype === "f32" ? pick.f32 : pick.half;
}

/** The default buckets for an untuned GPU (rows past the last use the last one's configs). */
export const DEFAULT_BUCKETS: readonly number[] = MEASURED.map((b) => b.bucket);

/**
 * A valid config for a shape at m rows on a device with no tuning.
 *
 * @param stage Which stage the shape is: the fused GEMM (default) or the batched one.
 * @param precision "fast" tries the f16-math pick first (f16 weights, a device with shader-f16),
 * then the exact one.
 * @throws {RangeError} If no default config fits the shape (for example an odd k with 16-bit
 * weights).
 * @example
 * ```ts
 * import { defaultConfig } from "./defaults.ts";
 * import { configName } from "./config.ts";
 * import { PORTABLE_CAPS } from "./device.ts";
 * const shape = { k: 2304, n: 3336, xRowStride: 2304, xOffsets: [0], wOffset: 0, yOffsets: [0],
 *   yRowStride: 3336 };
 * const at = (m: number) => configName(defaultConfig(shape, "f32", PORTABLE_CAPS, m));
 * if (at(1) !== "gemv-nc4-cn1-l32-rm1-v4") throw new Error(at(1));
 * if (at(100) !== "outer-bm64-bn64-bk16-rm8-rn4-s8") throw new Error(at(100));
 * if (at(9000) !== "outer-bm128-bn64-bk16-rm8-rn8") throw new Error(at(9000));
 * ```
 */
export function defaultConfig(
  shape: GemmShape,
  dtype: WeightDtype,
  caps: DeviceCaps,
  m: number,
  stage: "fused" | "batched" = "fused",
  precision: Precision = "exact",
): KernelConfig {
  const picks = [
    ...new Set([measuredDefault(m, stage, dtype, precision), measuredDefault(m, stage, dtype)]),
  ];
  const candidates = [...picks.map(parseConfigName), ...genericCandidates(m)];
  for (const c of candidates) if (!configProblem(c, shape, dtype, caps)) return c;
  throw new RangeError(
    `Cannot choose a kernel: no default config fits k=${shape.k} with ${dtype} weights (16-bit weights need an even k)`,
  );
}

/** Conservative configs for any shape: a GEMV up to 8 rows, then tiles, widest loads first. */
function genericCandidates(m: number): KernelConfig[] {
  const candidates: KernelConfig[] = [];
  for (const vec of [4, 2, 1]) {
    if (m <= 8) {
      for (const lanes of [32, 16, 8, 4, 2, 1]) {
        candidates.push({
          family: "gemv",
          nc: Math.max(1, 128 / lanes),
          cn: 1,
          lanes,
          rm: nextPow2(m),
          vec,
          subgroup: false,
        });
      }
    }
    candidates.push(
      { family: "tile", bm: 64, bn: 64, bk: 16, rm: 4, rn: 4, vec },
      { family: "tile", bm: 32, bn: 32, bk: 8, rm: 2, rn: 2, vec },
      { family: "tile", bm: 16, bn: 16, bk: vec, rm: 1, rn: 1, vec },
    );
  }
  return candidates;
}
