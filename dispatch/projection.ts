/**
 * The runtime projection: per call, picks the bucket for m and records its dispatches into
 * the caller's encoder or pass, or runs them and reads the outputs back. Made by
 * `createProjection` (create.ts), which uploads the weights and compiles every
 * bucket's kernels.
 *
 * @module
 */
import { describeValue } from "../kernels/describe.ts";
import type { DeviceCaps } from "../kernels/config.ts";
import { scratchBytes, scratchRows, workgroupRows } from "../kernels/config.ts";
import type { Precision, WeightDtype } from "../kernels/dtype.ts";
import type { CompiledKernel, KernelBindGroup } from "../kernels/gpu.ts";
import { dispatchKernel, kernelBindGroup, paramsBuffer } from "../kernels/gpu.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { fusedWidth, segmentOffsets } from "../kernels/problem.ts";
import { bucketFor } from "./bucket.ts";
import type { ProjectionConfig, ProjectionMode, StageShapes } from "./bucket_plan.ts";
import type { CacheSource } from "./tuned_configs.ts";

/** Options of `createProjection`. */
export interface ProjectionOptions {
  /** The weights, as f32 on the CPU; stored on the GPU as `dtype`. */
  weights: {
    /** Fused weight `[sum n, k]`, segments in spec order. */
    fused: Float32Array;
    /** Batched weight `[B, n, kb]`, when the spec has a batched stage. */
    batched?: Float32Array;
  };
  /** How weights are stored on the GPU (default "f32"). */
  dtype?: WeightDtype;
  /**
   * "exact" (default) does all arithmetic in f32. "fast", for f16 weights only, also lets tuned
   * kernels round X to f16 and multiply in f16 (summing into f32 every few k steps): 1.2x the
   * throughput from m = 256 up on an H100, with the larger error the README measures. Without a
   * fast tuning in the cache it runs the exact one. A RangeError for other weight types.
   */
  precision?: Precision;
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
  mode?: ProjectionMode;
  /**
   * Called with what the projection would warn about (tuned buckets this device cannot run,
   * and which tier or defaults run instead); `config(m)` tells the same per bucket. The
   * library prints nothing. Default: ignore.
   */
  onWarning?: (message: string) => void;
}

/** Where one output lives in the buffers `encode` returns. */
export interface OutputView {
  /** The buffer holding it (`fused` or `batched` of {@linkcode EncodedProjection}). */
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
  /** Each segment and batched output, by name. */
  outputs: Record<string, OutputView>;
}

/** One dispatch of a plan: a kernel and which buffers it reads and writes. */
export interface Step {
  kernel: CompiledKernel;
  stage: "fused" | "batched";
}

/** The kernels of one bucket. */
export interface BucketPlan {
  config: ProjectionConfig;
  steps: Step[];
}

/**
 * A fused projection bound to a device and its weights. Make one with
 * `createProjection`.
 */
export interface Projection {
  /** The problem it computes. */
  readonly spec: ProjectionSpec;
  /** How its weights are stored on the GPU. */
  readonly dtype: WeightDtype;
  /** The most rows one call can take on this device. */
  readonly maxRows: number;
  /**
   * Which bucket, tier and kernels serve m rows, and why they are not the tuned winners where
   * they are not.
   *
   * @throws {RangeError} If m is not an integer from 1 to `maxRows`.
   */
  config(m: number): ProjectionConfig;
  /**
   * Runs the projection of m rows and reads every output back.
   *
   * @param x `[m, k]` input rows.
   * @param m The number of rows.
   * @returns Each segment and batched output as a `[m, n]` Float32Array, by name.
   * @throws {TypeError} If x is not a Float32Array.
   * @throws {RangeError} If m is bad or x does not hold `m * k` values.
   * @example Project one row
   * ```ts
   * import { createProjection, requestTunedDevice } from "../mod.ts";
   * const adapter = await navigator.gpu.requestAdapter();
   * if (adapter) {
   *   const device = await requestTunedDevice(adapter);
   *   const spec = { name: "demo", k: 8, segments: [{ name: "q", n: 4 }, { name: "v", n: 2 }] };
   *   const fused = new Float32Array(6 * 8).fill(0.5);
   *   const proj = await createProjection(device, spec, { weights: { fused }, cache: false });
   *   const out = await proj.run(new Float32Array(8).fill(1), 1);
   *   if (out.q.length !== 4 || out.q[0] !== 4) throw new Error(`q = ${out.q}`);
   *   proj.destroy();
   *   device.destroy();
   * }
   * ```
   */
  run(x: Float32Array, m: number): Promise<Record<string, Float32Array>>;
  /**
   * Records the projection of m rows of `x` (`[m, k]` f32, in a storage buffer) into a command
   * encoder, in a compute pass of its own. The outputs stay on the GPU; a later call with more
   * rows may move them to larger buffers, so read them before encoding the next call. Buffers
   * are kept until `destroy()`.
   *
   * @param encoder The encoder to record into.
   * @param x The input rows, `m * k` f32 values from offset 0.
   * @param m The number of rows.
   * @returns The output buffers and where each output lies in them.
   * @throws {RangeError} For a bad m or an x buffer smaller than `m * k * 4` bytes.
   * @example Keep the outputs on the GPU
   * ```ts
   * import { createProjection, requestTunedDevice } from "../mod.ts";
   * const adapter = await navigator.gpu.requestAdapter();
   * if (adapter) {
   *   const device = await requestTunedDevice(adapter);
   *   const spec = { name: "demo", k: 8, segments: [{ name: "q", n: 4 }, { name: "v", n: 2 }] };
   *   const fused = new Float32Array(6 * 8).fill(0.5);
   *   const proj = await createProjection(device, spec, { weights: { fused }, cache: false });
   *   const x = device.createBuffer({ size: 2 * 8 * 4, usage: GPUBufferUsage.STORAGE });
   *   const encoder = device.createCommandEncoder();
   *   const gpu = proj.encode(encoder, x, 2);
   *   device.queue.submit([encoder.finish()]);
   *   if (gpu.outputs.v.offset !== 4 || gpu.outputs.v.rowStride !== 6) throw new Error("layout");
   *   proj.destroy();
   *   device.destroy();
   * }
   * ```
   */
  encode(encoder: GPUCommandEncoder, x: GPUBuffer, m: number): EncodedProjection;
  /**
   * Like `encode`, but records into a compute pass the caller owns (to batch many projections
   * in one pass, as benchmarks do).
   *
   * @param pass The compute pass to record into.
   * @param x The input rows, `m * k` f32 values from offset 0.
   * @param m The number of rows.
   * @returns The output buffers and where each output lies in them.
   * @throws {RangeError} For a bad m or an x buffer smaller than `m * k * 4` bytes.
   */
  dispatch(pass: GPUComputePassEncoder, x: GPUBuffer, m: number): EncodedProjection;
  /** Frees every GPU buffer of the projection; later calls throw. */
  destroy(): void;
}

/** What the runtime needs: the device, the problem, the uploaded weights and the plans. */
export interface ProjectionParts {
  device: GPUDevice;
  spec: ProjectionSpec;
  dtype: WeightDtype;
  caps: DeviceCaps;
  shapes: StageShapes;
  weights: { fused: GPUBuffer; batched: GPUBuffer | null };
  plans: BucketPlan[];
}

/** The projection behind `Projection`: made only by `createProjection`. */
export class ProjectionRuntime implements Projection {
  readonly spec: ProjectionSpec;
  readonly dtype: WeightDtype;
  #device: GPUDevice;
  #caps: DeviceCaps;
  #shapes: StageShapes;
  #weights: { fused: GPUBuffer; batched: GPUBuffer | null };
  #plans = new Map<number, BucketPlan>();
  #buckets: number[] = [];
  #outputs: { fused: GPUBuffer; batched: GPUBuffer | null; rows: number } | null = null;
  #input: { buffer: GPUBuffer; rows: number } | null = null;
  /** Split-K kernels' partial outputs, shared by the stages (they run one after the other). */
  #scratch: GPUBuffer | null = null;
  #params = new Map<number, GPUBuffer>();
  #retired: GPUBuffer[] = [];
  #destroyed = false;

  constructor(parts: ProjectionParts) {
    this.#device = parts.device;
    this.spec = parts.spec;
    this.dtype = parts.dtype;
    this.#caps = parts.caps;
    this.#shapes = parts.shapes;
    this.#weights = parts.weights;
    for (const plan of parts.plans) this.#plans.set(plan.config.bucket, plan);
    this.#buckets = [...this.#plans.keys()].sort((a, b) => a - b);
  }

  get maxRows(): number {
    const limit = Math.min(this.#caps.maxStorageBinding, this.#device.limits.maxBufferSize);
    const widest = Math.max(
      this.spec.k,
      fusedWidth(this.spec),
      this.#shapes.batched ? this.#shapes.batched.yRowStride : 0,
    );
    let rows = Math.floor(limit / (4 * widest));
    // Rows past the last bucket run its kernels: their grid must stay within the dispatch limit.
    // Split-K and stream-K kernels' scratch must fit too, and split-K's reduction grid (a row
    // each).
    for (const step of this.#plans.get(this.#buckets[this.#buckets.length - 1])?.steps ?? []) {
      const { config, shape } = step.kernel;
      rows = Math.min(rows, workgroupRows(config) * this.#caps.maxWorkgroupsPerDimension);
      rows = Math.min(rows, scratchRows(config, shape, limit));
      if (config.family === "outer" && config.split > 1) {
        rows = Math.min(rows, this.#caps.maxWorkgroupsPerDimension);
      }
    }
    return rows;
  }

  /**
   * Which bucket and kernels serve m rows.
   *
   * @throws {RangeError} If m is not an integer from 1 to `maxRows`.
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
   * Like `encode`, but records into a compute pass the caller owns (to
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
    this.#scratchFor(m);
    const groups = this.#bindGroupsFor(x, m, out);
    for (const step of this.#planFor(m).steps) {
      dispatchKernel(pass, step.kernel, groups[step.stage]!, m);
    }
    return { fused: out.fused, batched: out.batched, outputs: this.#views(out) };
  }

  /** Bind groups by input buffer and m, for the current output buffers. */
  #bindGroups = new WeakMap<
    GPUBuffer,
    Map<number, { fused: KernelBindGroup; batched: KernelBindGroup | null }>
  >();

  #bindGroupsFor(x: GPUBuffer, m: number, out: { fused: GPUBuffer; batched: GPUBuffer | null }) {
    let byRows = this.#bindGroups.get(x);
    if (!byRows) this.#bindGroups.set(x, byRows = new Map());
    let groups = byRows.get(m);
    if (!groups) {
      const params = this.#paramsFor(m);
      const scratch = this.#scratch ?? undefined;
      groups = {
        fused: kernelBindGroup(this.#device, {
          params,
          x,
          w: this.#weights.fused,
          y: out.fused,
          scratch,
        }),
        batched: out.batched
          ? kernelBindGroup(this.#device, {
            params,
            x: out.fused,
            w: this.#weights.batched!,
            y: out.batched,
            scratch,
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
        `Cannot run projection "${this.spec.name}": x must be a Float32Array, got ${
          describeValue(x)
        }`,
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

  /** Makes the scratch buffer big enough for m rows' split-K kernels, if they have any. */
  #scratchFor(m: number): void {
    const steps = this.#planFor(m).steps;
    const most = Math.max(0, ...steps.map((s) => scratchBytes(s.kernel.config, s.kernel.shape, m)));
    // Whole vec4s: a stream-K reduction may bind it as array<vec4<f32>> (kernels/reduce.ts), and
    // a split-K need (split x m x row stride floats) can end 8 bytes past a multiple of 16.
    const need = Math.ceil(most / 16) * 16;
    if (need > (this.#scratch?.size ?? 0)) {
      this.#bindGroups = new WeakMap(); // they point at the old scratch
      if (this.#scratch) this.#retired.push(this.#scratch);
      this.#scratch = this.#device.createBuffer({
        size: need,
        usage: GPUBufferUsage.STORAGE,
        label: `${this.spec.name} split-K scratch`,
      });
    }
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
      this.#scratch,
      ...this.#params.values(),
      ...this.#retired,
    ];
    for (const b of buffers) b?.destroy();
  }
}
