/**
 * One entry point over the kernel families: WGSL text and dispatch size for any config.
 *
 * @module
 */
import type { KernelConfig } from "./config.ts";
import type { WeightDtype } from "./dtype.ts";
import { gemvGrid, gemvWgsl } from "./gemv.ts";
import type { GemmShape } from "./problem.ts";
import { outerGrid, outerHeadWgsl, outerWgsl } from "./outer.ts";
import { tileGrid, tileWgsl } from "./tile.ts";

/** The WGSL source of a config for a shape and weight type. */
export function kernelWgsl(config: KernelConfig, shape: GemmShape, dtype: WeightDtype): string {
  switch (config.family) {
    case "tile":
      return tileWgsl(config, shape, dtype);
    case "outer":
      return outerWgsl(config, shape, dtype);
    case "gemv":
      return gemvWgsl(config, shape, dtype);
  }
}

/**
 * The WGSL of a config's first dispatch where it has one before its main dispatch: a stream-K
 * config's data-parallel part (`OuterConfig.dp`), dispatched over the same grid and writing Y.
 */
export function headWgsl(
  config: KernelConfig,
  shape: GemmShape,
  dtype: WeightDtype,
): string | undefined {
  return config.family === "outer" ? outerHeadWgsl(config, shape, dtype) : undefined;
}

/** Workgroups to dispatch for m rows. */
export function kernelGrid(
  config: KernelConfig,
  shape: GemmShape,
  m: number,
): [number, number, number] {
  switch (config.family) {
    case "tile":
      return tileGrid(config, shape, m);
    case "outer":
      return outerGrid(config, shape, m);
    case "gemv":
      return gemvGrid(config, shape, m);
  }
}
