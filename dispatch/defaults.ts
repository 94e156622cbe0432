/**
 * Configs for GPUs or buckets with no tuning: conservative choices that are valid under
 * WebGPU's default limits (256 invocations, 16 KiB of workgroup memory).
 *
 * @module
 */
import type { DeviceCaps, KernelConfig } from "../kernels/config.ts";
import { configProblem } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import type { GemmShape } from "../kernels/problem.ts";
import { nextPow2 } from "../kernels/space.ts";

/** The default buckets for an untuned GPU: GEMV up to 8 rows, tiles beyond. */
export const DEFAULT_BUCKETS = [1, 2, 4, 8, 16, 64, 256];

/**
 * A valid config for a shape at m rows on a device with no tuning.
 *
 * @throws {RangeError} If no default config fits the shape (for example an odd k with 16-bit
 * weights).
 */
export function defaultConfig(
  shape: GemmShape,
  dtype: WeightDtype,
  caps: DeviceCaps,
  m: number,
): KernelConfig {
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
  for (const c of candidates) if (!configProblem(c, shape, dtype, caps)) return c;
  throw new RangeError(
    `Cannot choose a kernel: no default config fits k=${shape.k} with ${dtype} weights (16-bit weights need an even k)`,
  );
}
