/**
 * The runtime projection: uploads the weights once, compiles the tuned (or default) kernel of
 * every bucket up front, and per call picks the bucket for m and records its dispatches.
 *
 * @module
 */
import type { CacheEntry } from "../cache/schema.ts";
import type { DeviceCaps, KernelConfig } from "../kernels/config.ts";
import { configName, deviceCaps, parseConfigName } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { bytesPerElement, packWeights, WEIGHT_DTYPES } from "../kernels/dtype.ts";
import type { CompiledKernel } from "../kernels/gpu.ts";
import {
  compileKernel,
  dispatchKernel,
  kernelBindGroup,
  paramsBuffer,
  storageBuffer,
} from "../kernels/gpu.ts";
import type { GemmShape, ProjectionSpec } from "../kernels/problem.ts";
import {
  batchedInputWidth,
  batchedShape,
  dtypeProblem,
  fusedShape,
  fusedWidth,
  segmentOffsets,
  unfusedShapes,
  validateSpec,
} from "../kernels/problem.ts";
import { bucketFor } from "./bucket.ts";
import { DEFAULT_BUCKETS, defaultConfig } from "./defaults.ts";
import type { CacheSource } from "./tuned_configs.ts";
import { tunedEntry } from "./tuned_configs.ts";

/** Options of {@linkcode createProjection}. */
export interface ProjectionOptions {
  weights: {
    /** Fused weight `[sum n, k]`, segments in spec order. */
    fused: Float32Array;
    /** Batched weight `[B, n, kb]`, when the spec has a batched stage. */
    batched?: Float32Array;
  };
  /** How weights are stored on the GPU (default "f32"). */
  dtype?: WeightDtype;
  /**
   * Where tuned configs come from: by default the cache file for this GPU next to this module;
   * a URL of another file; a parsed cache file; or `false` for the untuned defaults.
   */
  cache?: CacheSource;
  /**
   * "auto" (default) runs each bucket the way tuning found faster: fused, or one GEMM per
   * projection where that won. "fused" and "unfused" force one way (for benchmarks); "unfused"
   * needs tuned unfused configs and falls back to fused where there are none.
   */
  mode?: "auto" | "fused" | "unfused";
}

/** Which kernels serve m rows. */
export interface ProjectionConfig {
  /** The bucket m falls in. */
  bucket: number;
  /** "tuned" from the cache, or "default" for a GPU or problem with no tuning. */
  source: "tuned" | "default";
  /** "fused" (one GEMM + one batched GEMM) or "unfused" where tuning found that faster. */
  mode: "fused" | "unfused";
  /** Config names of the fused and batched stages (in fused mode). */
  fused: string;
  batched: string | null;
  /** Config names of each unfused GEMM (in unfused mode). */
  unfused?: string[];
}

/** Where one output lives in the buffers `encode` returns. */
export interface OutputView {
  buffer: GPUBuffer;
  /** Column of the output's first element in each row. */
  offset: number;
  /** Elements between rows. */
  rowStride: number;
  /** Columns of the output. */
  n: number;
}

/** What `encode` recorded: the output buffers and each output's place in them. */
export interface EncodedProjection {
  /** `[m, sum n]` fused output. */
  fused: GPUBuffer;
  /** `[m, B * n]` batched output, or null. */
  batched: GPUBuffer | null;
  outputs: Record<string, OutputView>;
}

/** One dispatch of a plan: a kernel and which buffers it reads and writes. */
interface Step {
  kernel: CompiledKernel;
  stage: "fused" | "batched";
}

/** The kernels of one bucket. */
interface BucketPlan {
  config: ProjectionConfig;
  steps: Step[];
}

/**
 * Creates a projection on a device.
 *
 * @throws {TypeError} If the weights are missing or not Float32Arrays.
 * @throws {RangeError} If the spec is invalid, the weights have the wrong length or do not fit
 * in one storage buffer of the device, or the dtype is unknown or does not fit the spec.
 * @throws {CacheFormatError} If the GPU's cache file is corrupt or does not fit the problem.
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
  const weights = options?.weights;
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
  const packing = dtypeProblem(spec, dtype);
  if (packing) throw new RangeError(`Cannot create projection: ${packing}`);
  const caps = deviceCaps(
    device,
    (device.adapterInfo as GPUAdapterInfo & { subgroupMinSize?: number }).subgroupMinSize ?? 0,
  );
  // A buffer over the binding limit makes an invalid bind group, and WebGPU reports that as an
  // uncaptured error while the dispatch silently writes nothing: refuse it here.
  const limit = Math.min(caps.maxStorageBinding, device.limits.maxBufferSize);
  const sizes: [string, number][] = [["weights.fused", weights.fused.length]];
  if (b) sizes.push(["weights.batched", weights.batched!.length]);
  for (const [what, length] of sizes) {
    const bytes = Math.ceil((length * bytesPerElement(dtype)) / 4) * 4;
    if (bytes > limit) {
      throw new RangeError(
        `Cannot create projection: ${what} takes ${bytes} bytes as ${dtype}, over this device's storage buffer limit of ${limit} bytes`,
      );
    }
  }
  const entry = await tunedEntry(device, caps, spec, dtype, options.cache);
  const mode = options.mode ?? "auto";
  if (!["auto", "fused", "unfused"].includes(mode)) {
    throw new RangeError(`Cannot create projection: mode "${mode}" is not auto, fused or unfused`);
  }
  const projection = new Projection(device, spec, dtype, caps, weights);
  await projection._compile(entry, mode);
  return projection;
}

function checkWeights(w: unknown, what: string, length: number, shape: string): void {
  if (!(w instanceof Float32Array)) {
    throw new TypeError(
      `Cannot create projection: ${what} must be a Float32Array ${shape}, got ${describe(w)}`,
    );
  }
  if (w.length !== length) {
    throw new RangeError(
      `Cannot create projection: ${what} must have ${length} elements ${shape}, got ${w.length}`,
    );
  }
}

function rowsPerWorkgroup(c: KernelConfig): number {
  return c.family === "gemv" ? c.rm : c.bm;
}

function describe(x: unknown): string {
  return x === null || x === undefined ? String(x) : (x as object).constructor?.name ?? typeof x;
}

/** A fused projection bound to a device and its weights. Create it with {@linkcode createProjection}. */
export class Projection {
  readonly spec: ProjectionSpec;
  readonly dtype: WeightDtype;
  #device: GPUDevice;
  #caps: DeviceCaps;
  #shapes: {
    fused: GemmShape;
    batched?: GemmShape;
    unfused: { stage: "fused" | "batched"; shape: GemmShape }[];
  };
  #weights: { fused: GPUBuffer; batched: GPUBuffer | null };
  #plans = new Map<number, BucketPlan>();
  #buckets: number[] = [];
  #outputs: { fused: GPUBuffer; batched: GPUBuffer | null; rows: number } | null = null;
  #input: { buffer: GPUBuffer; rows: number } | null = null;
  #params = new Map<number, GPUBuffer>();
  #retired: GPUBuffer[] = [];
  #destroyed = false;
  #mode: "auto" | "fused" | "unfused" = "auto";

  /** @internal Use {@linkcode createProjection}. */
  constructor(
    device: GPUDevice,
    spec: ProjectionSpec,
    dtype: WeightDtype,
    caps: DeviceCaps,
    weights: ProjectionOptions["weights"],
  ) {
    this.#device = device;
    this.spec = spec;
    this.dtype = dtype;
    this.#caps = caps;
    this.#shapes = {
      fused: fusedShape(spec),
      batched: batchedShape(spec),
      unfused: unfusedShapes(spec),
    };
    this.#weights = {
      fused: storageBuffer(device, packWeights(weights.fused, dtype), `${spec.name} fused weights`),
      batched: weights.batched
        ? storageBuffer(device, packWeights(weights.batched, dtype), `${spec.name} batched weights`)
        : null,
    };
  }

  /** @internal Compiles every bucket's kernels once. */
  async _compile(
    entry: CacheEntry | undefined,
    mode: "auto" | "fused" | "unfused" = "auto",
  ): Promise<void> {
    this.#mode = mode;
    const compiled = new Map<string, Promise<CompiledKernel>>();
    const kernel = (config: KernelConfig, shape: GemmShape, key: string) => {
      const id = `${key}:${configName(config)}`;
      if (!compiled.has(id)) {
        compiled.set(id, compileKernel(this.#device, config, shape, this.dtype));
      }
      return compiled.get(id)!;
    };
    const { fused, batched } = this.#shapes;
    const plans: [number, Promise<BucketPlan>][] = [];
    if (entry) {
      for (const [key, result] of Object.entries(entry.buckets)) {
        const useUnfused = result.unfused !== null &&
          (this.#mode === "unfused" ||
            (this.#mode === "auto" && result.unfused.medianUs < result.fusedTotalUs));
        const config: ProjectionConfig = {
          bucket: Number(key),
          source: "tuned",
          mode: useUnfused ? "unfused" : "fused",
          fused: result.fused.config,
          batched: result.batched?.config ?? null,
          ...(useUnfused ? { unfused: result.unfused!.configs } : {}),
        };
        plans.push([config.bucket, this.#plan(config, kernel)]);
      }
    } else {
      for (const bucket of DEFAULT_BUCKETS) {
        const config: ProjectionConfig = {
          bucket,
          source: "default",
          mode: "fused",
          fused: configName(defaultConfig(fused, this.dtype, this.#caps, bucket)),
          batched: batched
            ? configName(defaultConfig(batched, this.dtype, this.#caps, bucket))
            : null,
        };
        plans.push([bucket, this.#plan(config, kernel)]);
      }
    }
    for (const [bucket, plan] of plans) this.#plans.set(bucket, await plan);
    this.#buckets = [...this.#plans.keys()].sort((a, b) => a - b);
  }

  async #plan(
    config: ProjectionConfig,
    kernel: (config: KernelConfig, shape: GemmShape, key: string) => Promise<CompiledKernel>,
  ): Promise<BucketPlan> {
    const { fused, batched, unfused } = this.#shapes;
    const steps: Step[] = [];
    if (config.mode === "unfused") {
      for (const [i, name] of config.unfused!.entries()) {
        steps.push({
          kernel: await kernel(parseConfigName(name), unfused[i].shape, `unfused${i}`),
          stage: unfused[i].stage,
        });
      }
    } else {
      steps.push({
        kernel: await kernel(parseConfigName(config.fused), fused, "fused"),
        stage: "fused",
      });
      if (batched && config.batched) {
        steps.push({
          kernel: await kernel(parseConfigName(config.batched), batched, "batched"),
          stage: "batched",
        });
      }
    }
    return { config, steps };
  }

  /** The most rows one call can take on this device. */
  get maxRows(): number {
    const limit = Math.min(this.#caps.maxStorageBinding, this.#device.limits.maxBufferSize);
    const widest = Math.max(
      this.spec.k,
      fusedWidth(this.spec),
      this.#shapes.batched ? this.#shapes.batched.yRowStride : 0,
    );
    let rows = Math.floor(limit / (4 * widest));
    // Rows past the last bucket run its kernels: their grid must stay within the dispatch limit.
    for (const step of this.#plans.get(this.#buckets[this.#buckets.length - 1])?.steps ?? []) {
      rows = Math.min(
        rows,
        rowsPerWorkgroup(step.kernel.config) * this.#caps.maxWorkgroupsPerDimension,
      );
    }
    return rows;
  }

  /**
   * Which bucket and kernels serve m rows.
   *
   * @throws {RangeError} If m is not an integer from 1 to {@linkcode Projection.maxRows}.
   */
  config(m: number): ProjectionConfig {
    this.#checkRows(m);
    return { ...this.#planFor(m).config };
  }

  #planFor(m: number): BucketPlan {
    return this.#plans.get(bucketFor(m, this.#buckets))!;
  }

  #checkRows(m: number): void {
    if (this.#destroyed) {
      throw new Error(`Cannot use projection "${this.spec.name}": it was destroyed`);
    }
    if (typeof m !== "number" || !Number.isInteger(m) || m < 1) {
      throw new RangeError(
        `Cannot run projection "${this.spec.name}": m must be a positive integer, got ${m}`,
      );
    }
    const max = this.maxRows;
    if (m > max) {
      throw new RangeError(
        `Cannot run projection "${this.spec.name}": m = ${m} exceeds this device's limit of ${max} rows`,
      );
    }
  }

  /**
   * Records the projection of m rows of `x` (`[m, k]` f32, in a storage buffer) into a command
   * encoder. The outputs stay on the GPU; a later call with more rows may move them to larger
   * buffers, so read them before encoding the next call. Buffers are kept until `destroy()`.
   *
   * @throws {RangeError} For a bad m or an x buffer smaller than `m * k * 4` bytes.
   */
  encode(encoder: GPUCommandEncoder, x: GPUBuffer, m: number): EncodedProjection {
    const pass = encoder.beginComputePass({ label: `${this.spec.name} m=${m}` });
    try {
      return this.dispatch(pass, x, m);
    } finally {
      pass.end();
    }
  }

  /**
   * Like {@linkcode Projection.encode}, but records into a compute pass the caller owns (to
   * batch many projections in one pass, as benchmarks do).
   *
   * @throws {RangeError} For a bad m or an x buffer smaller than `m * k * 4` bytes.
   */
  dispatch(pass: GPUComputePassEncoder, x: GPUBuffer, m: number): EncodedProjection {
    this.#checkRows(m);
    if (x.size < m * this.spec.k * 4) {
      throw new RangeError(
        `Cannot encode projection "${this.spec.name}": x holds ${x.size} bytes, m = ${m} needs ${
          m * this.spec.k * 4
        }`,
      );
    }
    const out = this.#outputsFor(m);
    const groups = this.#bindGroupsFor(x, m, out);
    for (const step of this.#planFor(m).steps) {
      dispatchKernel(pass, step.kernel, groups[step.stage]!, m);
    }
    return { fused: out.fused, batched: out.batched, outputs: this.#views(out) };
  }

  /** Bind groups by input buffer and m, for the current output buffers. */
  #bindGroups = new WeakMap<
    GPUBuffer,
    Map<number, { fused: GPUBindGroup; batched: GPUBindGroup | null }>
  >();

  #bindGroupsFor(x: GPUBuffer, m: number, out: { fused: GPUBuffer; batched: GPUBuffer | null }) {
    let byRows = this.#bindGroups.get(x);
    if (!byRows) this.#bindGroups.set(x, byRows = new Map());
    let groups = byRows.get(m);
    if (!groups) {
      const params = this.#paramsFor(m);
      groups = {
        fused: kernelBindGroup(this.#device, { params, x, w: this.#weights.fused, y: out.fused }),
        batched: out.batched
          ? kernelBindGroup(this.#device, {
            params,
            x: out.fused,
            w: this.#weights.batched!,
            y: out.batched,
          })
          : null,
      };
      byRows.set(m, groups);
    }
    return groups;
  }

  #views(out: { fused: GPUBuffer; batched: GPUBuffer | null }): Record<string, OutputView> {
    const views: Record<string, OutputView> = {};
    const offsets = segmentOffsets(this.spec);
    const width = fusedWidth(this.spec);
    for (const s of this.spec.segments) {
      views[s.name] = { buffer: out.fused, offset: offsets.get(s.name)!, rowStride: width, n: s.n };
    }
    const b = this.spec.batched;
    if (b && out.batched) {
      b.outputs.forEach((name, i) => {
        views[name] = {
          buffer: out.batched!,
          offset: i * b.n,
          rowStride: b.outputs.length * b.n,
          n: b.n,
        };
      });
    }
    return views;
  }

  /**
   * Runs the projection of m rows and reads every output back.
   *
   * @param x `[m, k]` input rows.
   * @returns Each segment and batched output as a `[m, n]` Float32Array, by name.
   * @throws {TypeError} If x is not a Float32Array.
   * @throws {RangeError} If m is bad or x does not hold `m * k` values.
   */
  async run(x: Float32Array, m: number): Promise<Record<string, Float32Array>> {
    if (!(x instanceof Float32Array)) {
      throw new TypeError(
        `Cannot run projection "${this.spec.name}": x must be a Float32Array, got ${describe(x)}`,
      );
    }
    this.#checkRows(m);
    if (x.length !== m * this.spec.k) {
      throw new RangeError(
        `Cannot run projection "${this.spec.name}": x must hold m * k = ${m} * ${this.spec.k} = ${
          m * this.spec.k
        } values, got ${x.length}`,
      );
    }
    const input = this.#inputFor(m);
    this.#device.queue.writeBuffer(input, 0, x.buffer as ArrayBuffer, x.byteOffset, x.byteLength);
    const encoder = this.#device.createCommandEncoder();
    const encoded = this.encode(encoder, input, m);
    const fusedBytes = m * fusedWidth(this.spec) * 4;
    const batchedBytes = encoded.batched ? m * this.#shapes.batched!.yRowStride * 4 : 0;
    const staging = this.#device.createBuffer({
      size: fusedBytes + batchedBytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    encoder.copyBufferToBuffer(encoded.fused, 0, staging, 0, fusedBytes);
    if (encoded.batched) {
      encoder.copyBufferToBuffer(encoded.batched, 0, staging, fusedBytes, batchedBytes);
    }
    this.#device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const all = new Float32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    const result: Record<string, Float32Array> = {};
    for (const [name, view] of Object.entries(encoded.outputs)) {
      const base = view.buffer === encoded.fused ? 0 : fusedBytes / 4;
      const out = new Float32Array(m * view.n);
      for (let r = 0; r < m; r++) {
        const at = base + r * view.rowStride + view.offset;
        out.set(all.subarray(at, at + view.n), r * view.n);
      }
      result[name] = out;
    }
    return result;
  }

  #outputsFor(m: number): { fused: GPUBuffer; batched: GPUBuffer | null } {
    if (!this.#outputs || this.#outputs.rows < m) {
      this.#bindGroups = new WeakMap(); // they point at the old output buffers
      if (this.#outputs) {
        this.#retired.push(
          this.#outputs.fused,
          ...(this.#outputs.batched ? [this.#outputs.batched] : []),
        );
      }
      const rows = Math.min(this.maxRows, Math.max(m, 2 * (this.#outputs?.rows ?? 0)));
      const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
      this.#outputs = {
        rows,
        fused: this.#device.createBuffer({
          size: rows * fusedWidth(this.spec) * 4,
          usage,
          label: `${this.spec.name} fused out`,
        }),
        batched: this.#shapes.batched
          ? this.#device.createBuffer({
            size: rows * this.#shapes.batched.yRowStride * 4,
            usage,
            label: `${this.spec.name} batched out`,
          })
          : null,
      };
    }
    return this.#outputs;
  }

  #inputFor(m: number): GPUBuffer {
    if (!this.#input || this.#input.rows < m) {
      if (this.#input) this.#retired.push(this.#input.buffer);
      const rows = Math.min(this.maxRows, Math.max(m, 2 * (this.#input?.rows ?? 0)));
      this.#input = {
        rows,
        buffer: this.#device.createBuffer({
          size: rows * this.spec.k * 4,
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
          label: `${this.spec.name} x`,
        }),
      };
    }
    return this.#input.buffer;
  }

  #paramsFor(m: number): GPUBuffer {
    let buffer = this.#params.get(m);
    if (!buffer) {
      buffer = paramsBuffer(this.#device, m);
      this.#params.set(m, buffer);
    }
    return buffer;
  }

  /** Frees every GPU buffer of the projection. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    const buffers = [
      this.#weights.fused,
      this.#weights.batched,
      this.#outputs?.fused,
      this.#outputs?.batched,
      this.#input?.buffer,
      ...this.#params.values(),
      ...this.#retired,
    ];
    for (const b of buffers) b?.destroy();
  }
}
