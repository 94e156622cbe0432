/**
 * Fused projection GEMMs for WebGPU, tuned per GPU and per row count.
 *
 * ```ts
 * import { createProjection, requestTunedDevice } from "./mod.ts";
 * const adapter = await navigator.gpu.requestAdapter();
 * if (adapter) {
 *   const device = await requestTunedDevice(adapter); // what tuned kernels can use
 *   const spec = { name: "demo", k: 8, segments: [{ name: "q", n: 4 }, { name: "v", n: 2 }] };
 *   const fused = new Float32Array(6 * 8).fill(0.25); // [sum n, k]
 *   const proj = await createProjection(device, spec, { weights: { fused }, dtype: "f16" });
 *   const out = await proj.run(new Float32Array(8).fill(1), 1); // { q, v }
 *   if (out.v[1] !== 2) throw new Error(`v = ${out.v}`);
 *   proj.destroy();
 *   device.destroy();
 * }
 * ```
 *
 * `createProjection` picks the cache file for the device's adapter from `cache/` (by
 * fingerprint), picks per bucket the fastest tuned configs the device can run (the tuned
 * winners, or the best of a weaker device tier: no subgroups, or WebGPU's default limits),
 * compiles every kernel once, and each call uses the bucket rule of {@linkcode bucketFor}. A GPU
 * with no cache file gets default configs. Nothing is printed: warnings go to `onWarning`.
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
export type { Precision, WeightDtype } from "./kernels/dtype.ts";
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
