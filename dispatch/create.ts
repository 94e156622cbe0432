/**
 * Making a projection: check the inputs, choose every bucket's configs for this device (tuned,
 * a weaker tier, or the defaults), upload the weights and compile every kernel up front. A
 * failure leaves nothing behind on the device.
 *
 * @module
 */
import { GENERATOR_VERSION } from "../cache/schema.ts";
import { describeValue } from "../kernels/describe.ts";
import { deviceCaps } from "../kernels/config.ts";
import type { DeviceCaps } from "../kernels/config.ts";
import { packedBytes, packWeights, precisionProblem, WEIGHT_DTYPES } from "../kernels/dtype.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { compileKernel, KernelCompileError, storageBuffer } from "../kernels/gpu.ts";
import type { CompiledKernel, WgslMutation } from "../kernels/gpu.ts";
import { parseConfigName } from "../kernels/config.ts";
import type { GemmShape, ProjectionSpec } from "../kernels/problem.ts";
import {
  batchedInputWidth,
  batchedShape,
  dtypeProblem,
  fusedShape,
  fusedWidth,
  unfusedShapes,
  validateSpec,
} from "../kernels/problem.ts";
import type { ProjectionConfig, ProjectionMode, StageShapes } from "./bucket_plan.ts";
import { defaultBucketConfigs, tunedBucketConfig } from "./bucket_plan.ts";
import type { BucketPlan, Projection, ProjectionOptions, Step } from "./projection.ts";
import { ProjectionRuntime } from "./projection.ts";
import { tunedEntry } from "./tuned_configs.ts";

/**
 * Creates a projection on a device: checks the weights, reads this GPU's tuned configs (see
 * `options.cache`), picks for every bucket the fastest tuned configs this device can run,
 * uploads the weights and compiles every kernel once.
 *
 * @param device The device to run on; make it with `requestTunedDevice` to run every tuned
 * kernel (a plain `adapter.requestDevice()` runs slower tiers where the tuned winners need
 * more than WebGPU's default limits or subgroups).
 * @param spec The projection problem (`kimiLinearSpec`, or any valid spec).
 * @param options The weights, their GPU storage type, the cache and a warning callback.
 * @returns The projection.
 * @throws {TypeError} If the weights are missing or not Float32Arrays.
 * @throws {RangeError} If the spec is invalid, the weights have the wrong length or do not fit
 * in one storage buffer of the device, or the dtype or mode is unknown or does not fit the spec.
 * @throws {CacheFormatError} If the GPU's cache file is corrupt or does not fit the problem.
 * @throws {KernelCompileError} If a kernel does not compile, naming its bucket, stage and config.
 * @throws {Error} If a cache URL given in `options.cache` is missing or is a folder.
 * @example A Kimi Linear projection with f16 weights
 * ```ts
 * import { createProjection, kimiLinearSpec, requestTunedDevice } from "../mod.ts";
 * const adapter = await navigator.gpu.requestAdapter();
 * if (adapter) {
 *   const device = await requestTunedDevice(adapter);
 *   const spec = kimiLinearSpec({ tp: 8 });
 *   const fused = new Float32Array(spec.segments.reduce((n, s) => n + s.n, 0) * spec.k);
 *   const batched = new Float32Array(2 * spec.batched!.n * 128);
 *   const proj = await createProjection(device, spec, {
 *     weights: { fused, batched },
 *     dtype: "f16",
 *     onWarning: (message) => console.warn(message),
 *   });
 *   const { bucket, source, tier } = proj.config(1);
 *   if (bucket !== 1 && source === "tuned") throw new Error(`m=1 runs bucket ${bucket}`);
 *   console.log(`m=1 runs ${source} configs (tier ${tier})`);
 *   proj.destroy();
 *   device.destroy();
 * }
 * ```
 */
export async function createProjection(
  device: GPUDevice,
  spec: ProjectionSpec,
  options: ProjectionOptions,
): Promise<Projection> {
  validateSpec(spec);
  const dtype = options?.dtype ?? "f32";
  if (!WEIGHT_DTYPES.includes(dtype)) {
    throw new RangeError(
      `Cannot create projection: dtype "${dtype}" is not one of ${WEIGHT_DTYPES.join(", ")}`,
    );
  }
  const precision = options.precision ?? "exact";
  const numerics = precisionProblem(precision, dtype);
  if (numerics) throw new RangeError(`Cannot create projection: ${numerics}`);
  const mode = options.mode ?? "auto";
  if (!["auto", "fused", "unfused"].includes(mode)) {
    throw new RangeError(`Cannot create projection: mode "${mode}" is not auto, fused or unfused`);
  }
  checkAllWeights(spec, options.weights);
  const packing = dtypeProblem(spec, dtype);
  if (packing) throw new RangeError(`Cannot create projection: ${packing}`);
  const caps = deviceCaps(
    device,
    (device.adapterInfo as GPUAdapterInfo & { subgroupMinSize?: number }).subgroupMinSize ?? 0,
  );
  checkWeightSizes(device, caps, dtype, options.weights);
  const shapes: StageShapes = {
    fused: fusedShape(spec),
    batched: batchedShape(spec),
    unfused: unfusedShapes(spec),
  };
  const configs = await chooseConfigs(device, spec, dtype, caps, shapes, options, mode);
  const weights = {
    fused: storageBuffer(
      device,
      packWeights(options.weights.fused, dtype),
      `${spec.name} fused weights`,
    ),
    batched: options.weights.batched
      ? storageBuffer(
        device,
        packWeights(options.weights.batched, dtype),
        `${spec.name} batched weights`,
      )
      : null,
  };
  let plans: BucketPlan[];
  try {
    plans = await compilePlans(device, dtype, shapes, configs);
  } catch (e) {
    weights.fused.destroy();
    weights.batched?.destroy();
    throw e;
  }
  return new ProjectionRuntime({ device, spec, dtype, caps, shapes, weights, plans });
}

/** Every bucket's configs on this device, reporting left-out buckets to `onWarning`. */
async function chooseConfigs(
  device: GPUDevice,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  caps: DeviceCaps,
  shapes: StageShapes,
  options: ProjectionOptions,
  mode: ProjectionMode,
): Promise<ProjectionConfig[]> {
  const entry = await tunedEntry(device, spec, dtype, options.cache, options.precision);
  if (!entry) {
    const why = options.cache === false
      ? "tuning is turned off (cache: false)"
      : `the cache has no tuning of "${spec.name}" with ${dtype} weights for this GPU`;
    return defaultBucketConfigs(shapes, dtype, caps, why, options.precision);
  }
  if (entry.generatorVersion !== GENERATOR_VERSION) {
    options.onWarning?.(
      `The tuning of "${spec.name}" with ${dtype} weights was made with kernel generator ` +
        `${entry.generatorVersion}, not this library's ${GENERATOR_VERSION}: its configs run, ` +
        `but may no longer be the fastest. Tune again (deno task tune) to refresh it.`,
    );
  }
  const configs: ProjectionConfig[] = [];
  const leftOut: string[] = [];
  for (const [m, result] of Object.entries(entry.buckets)) {
    const chosen = tunedBucketConfig(Number(m), result, shapes, dtype, caps, mode);
    if ("leftOut" in chosen) leftOut.push(chosen.leftOut);
    else configs.push(chosen);
  }
  const weaker = configs.filter((c) => c.reason !== null).map((c) => `m=${c.bucket}: ${c.reason}`);
  if (weaker.length > 0) {
    options.onWarning?.(
      `This device cannot run the tuned winners of ${weaker.length} bucket(s) of "${spec.name}"; ` +
        `they run a weaker tier: ${weaker.join("; ")}. Make the device with ` +
        `requestTunedDevice(adapter) to run the winners.`,
    );
  }
  if (leftOut.length > 0) {
    options.onWarning?.(
      `Tuned kernels of ${leftOut.length} bucket(s) of "${spec.name}" exceed this device's ` +
        `limits in every tier: ${leftOut.join("; ")}. Those buckets are left out; their rows use ` +
        `the next tuned bucket (the defaults if none is left).`,
    );
  }
  if (configs.length > 0) return configs;
  return defaultBucketConfigs(
    shapes,
    dtype,
    caps,
    "every tuned bucket exceeds this device's limits",
    options.precision,
  );
}

/**
 * Compiles every bucket's kernels (each distinct kernel once, all at once) and waits for all
 * of them, so that no compile is left running or unobserved when one fails.
 *
 * @param mutate Test-only: rewrites a kernel's WGSL before it is compiled (see kernels/gpu.ts).
 * @throws {KernelCompileError} For the first kernel that failed, naming its bucket and stage.
 */
export async function compilePlans(
  device: GPUDevice,
  dtype: WeightDtype,
  shapes: StageShapes,
  configs: ProjectionConfig[],
  mutate?: WgslMutation,
): Promise<BucketPlan[]> {
  const kernels = new Map<string, Promise<CompiledKernel>>();
  const wanted = configs.map((config) =>
    stagesOf(config, shapes).map(({ name, key, stage, shape }) => {
      const id = `${key}:${name}`;
      if (!kernels.has(id)) {
        kernels.set(id, compileKernel(device, parseConfigName(name), shape, dtype, mutate));
      }
      return { id, stage, key, name };
    })
  );
  const settled = new Map<string, PromiseSettledResult<CompiledKernel>>();
  const results = await Promise.allSettled(kernels.values());
  [...kernels.keys()].forEach((id, i) => settled.set(id, results[i]));
  return configs.map((config, i) => {
    const steps: Step[] = wanted[i].map(({ id, stage, key, name }) => {
      const result = settled.get(id)!;
      if (result.status === "fulfilled") return { kernel: result.value, stage };
      const e = result.reason;
      throw new KernelCompileError(
        name,
        e instanceof KernelCompileError ? e.detail : String((e as Error)?.message ?? e),
        { bucket: config.bucket, stage: key },
      );
    });
    return { config, steps };
  });
}

/** The kernels a bucket runs, in order: each config, the stage whose buffers it uses, and shape. */
function stagesOf(
  config: ProjectionConfig,
  shapes: StageShapes,
): { name: string; key: string; stage: Step["stage"]; shape: GemmShape }[] {
  if (config.mode === "unfused") {
    return config.unfused!.map((name, i) => ({
      name,
      key: `unfused:${i}`,
      stage: shapes.unfused[i].stage,
      shape: shapes.unfused[i].shape,
    }));
  }
  const stages: { name: string; key: string; stage: Step["stage"]; shape: GemmShape }[] = [
    { name: config.fused, key: "fused", stage: "fused", shape: shapes.fused },
  ];
  if (shapes.batched && config.batched) {
    stages.push({ name: config.batched, key: "batched", stage: "batched", shape: shapes.batched });
  }
  return stages;
}

function checkAllWeights(spec: ProjectionSpec, weights: ProjectionOptions["weights"]): void {
  checkWeights(
    weights?.fused,
    "weights.fused",
    fusedWidth(spec) * spec.k,
    `[${fusedWidth(spec)}, ${spec.k}]`,
  );
  const b = spec.batched;
  if (b) {
    const kb = batchedInputWidth(spec);
    checkWeights(
      weights.batched,
      "weights.batched",
      b.inputs.length * b.n * kb,
      `[${b.inputs.length}, ${b.n}, ${kb}]`,
    );
  } else if (weights.batched !== undefined) {
    throw new TypeError(
      `Cannot create projection: spec "${spec.name}" has no batched stage but weights.batched was given`,
    );
  }
}

function checkWeights(w: unknown, what: string, length: number, shape: string): void {
  if (!(w instanceof Float32Array)) {
    throw new TypeError(
      `Cannot create projection: ${what} must be a Float32Array ${shape}, got ${describeValue(w)}`,
    );
  }
  if (w.length !== length) {
    throw new RangeError(
      `Cannot create projection: ${what} must have ${length} elements ${shape}, got ${w.length}`,
    );
  }
}

/**
 * A buffer over the binding limit makes an invalid bind group, and WebGPU reports that as an
 * uncaptured error while the dispatch silently writes nothing: refuse it here.
 */
function checkWeightSizes(
  device: GPUDevice,
  caps: DeviceCaps,
  dtype: WeightDtype,
  weights: ProjectionOptions["weights"],
): void {
  const limit = Math.min(caps.maxStorageBinding, device.limits.maxBufferSize);
  const sizes: [string, number][] = [["weights.fused", weights.fused.length]];
  if (weights.batched) sizes.push(["weights.batched", weights.batched.length]);
  for (const [what, length] of sizes) {
    const bytes = packedBytes(length, dtype);
    if (bytes > limit) {
      throw new RangeError(
        `Cannot create projection: ${what} takes ${bytes} bytes as ${dtype}, over this device's storage buffer limit of ${limit} bytes`,
      );
    }
  }
}
