/**
 * Fused projection GEMMs for WebGPU, tuned per GPU and per row count.
 *
 * ```ts ignore
 * import { createProjection, kimiLinearSpec } from "./mod.ts";
 * const spec = kimiLinearSpec({ tp: 4 });
 * const proj = await createProjection(device, spec, { weights: { fused, batched }, dtype: "f16" });
 * const out = await proj.run(x, m); // { q, k, v, b, f_a, g_a, f_b, g_b }
 * proj.destroy();
 * ```
 *
 * `createProjection` picks the cache file for the device's adapter from `cache/` (by
 * fingerprint), compiles the kernels of every tuned bucket once, and each call uses the bucket
 * rule of {@linkcode bucketFor}. A GPU with no cache file gets default configs.
 *
 * @module
 */
export { createProjection, Projection } from "./dispatch/projection.ts";
export type {
  EncodedProjection,
  OutputView,
  ProjectionConfig,
  ProjectionOptions,
} from "./dispatch/projection.ts";
export { bucketFor } from "./dispatch/bucket.ts";
export type { CacheSource } from "./dispatch/tuned_configs.ts";
export { kimiLinearSpec, validateSpec } from "./kernels/problem.ts";
export type { BatchedStage, ProjectionSpec, Segment } from "./kernels/problem.ts";
export type { WeightDtype } from "./kernels/dtype.ts";
export { CacheFormatError } from "./cache/schema.ts";
export type { CacheFile } from "./cache/schema.ts";
