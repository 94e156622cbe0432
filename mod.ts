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
export { createProjection } from "./dispatch/create.ts";
export type {
  EncodedProjection,
  OutputView,
  Projection,
  ProjectionOptions,
} from "./dispatch/projection.ts";
export type { ProjectionConfig, ProjectionMode } from "./dispatch/bucket_plan.ts";
export { bucketFor } from "./dispatch/bucket.ts";
export type { CacheSource } from "./dispatch/tuned_configs.ts";
export { PORTABLE_CAPS, requestTunedDevice } from "./kernels/device.ts";
export type { DeviceTier, TunedDeviceOptions } from "./kernels/device.ts";
export type { DeviceCaps } from "./kernels/config.ts";
export { kimiLinearSpec, validateSpec } from "./kernels/problem.ts";
export type { BatchedStage, ProjectionSpec, Segment } from "./kernels/problem.ts";
export type { WeightDtype } from "./kernels/dtype.ts";
export { KernelCompileError } from "./kernels/gpu.ts";
export { CacheFormatError } from "./cache/schema.ts";
export type {
  AdapterFingerprint,
  BucketResult,
  CacheEntry,
  CacheFile,
  StageResult,
  TierResult,
} from "./cache/schema.ts";
