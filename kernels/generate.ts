/**
 * One entry point over the kernel families: WGSL text and dispatch size for any config.
 *
 * @module
 */
import type { KernelConfig } from "./config.ts";
import type { WeightDtype } from "./dtype.ts";
import { gemvGrid, gemvWgsl } from "./gemv.ts";
import type { GemmShape } from "./problem.ts";
import { tileGrid, tileWgsl } from "./tile.ts";

/** The WGSL source of a config for a shape and weight type. */
export function kernelWgsl(config: KernelConfig, shape: GemmShape, dtype: WeightDtype): string {
  return config.family === "tile" ? tileWgsl(config, shape, dtype) : gemvWgsl(config, shape, dtype);
}

/** Workgroups to dispatch for m rows. */
export function kernelGrid(
  config: KernelConfig,
  shape: GemmShape,
  m: number,
): [number, number, number] {
  return config.family === "tile" ? tileGrid(config, shape, m) : gemvGrid(config, shape, m);
}
