/**
 * The targets a run tunes on the GPU: each stage of the projection (fused, and batched where
 * the problem has one) and each GEMM of the unfused baseline, with the buffers they are
 * checked and timed on. No Deno API here.
 *
 * @module
 */
import type { KernelConfig } from "../kernels/config.ts";
import { scratchBytes, splitRows, STREAM_ROWS } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { packWeights } from "../kernels/dtype.ts";
import type { CompiledKernel } from "../kernels/gpu.ts";
import { storageBuffer } from "../kernels/gpu.ts";
import type { GemmShape, ProjectionSpec } from "../kernels/problem.ts";
import { batchedShape, fusedShape, unfusedShapes } from "../kernels/problem.ts";
import type { Gpu } from "./gpu_device.ts";
import type { Outcome } from "./trial_log.ts";
import { randomNonZero } from "./random.ts";
import { shapeExtents } from "./verify.ts";

/**
 * The GPU buffers one stage is timed on: rotating weight copies, shared X and Y, and a scratch
 * buffer shared by every stage where split-K configs are valid.
 */
export interface StageBuffers {
  x: GPUBuffer;
  ws: GPUBuffer[];
  y: GPUBuffer;
  scratch?: GPUBuffer;
}

/** A stage being tuned: its shape, buffers and compiled/checked kernels. */
export interface Target {
  name: string;
  stage: "fused" | "batched";
  shape: GemmShape;
  buffers: StageBuffers;
  /** Compiled and checked kernels by config name; a failure is an outcome with its reason. */
  kernels: Map<string, CompiledKernel | { outcome: Outcome; reason: string }>;
  /** Configs of the space that pass validation for this target's shape. */
  valid: KernelConfig[];
  /** Most rows times split its split-K configs are tried at (`splitRows`, kernels/config.ts). */
  splitRows: number;
  /**
   * For a GEMM of the unfused baseline: the stage target whose buffers it runs on, and whose
   * check data it is checked on (its own columns of that output).
   */
  within?: Target;
}

/** What the stage targets are made from. */
export interface StageSetup {
  /** The device and its limits. */
  gpu: Gpu;
  /** The problem. */
  spec: ProjectionSpec;
  /** The weight type the weights are packed as. */
  dtype: WeightDtype;
  /** The valid configs of each stage (fused, then batched), from `planSpace` (plan.ts). */
  valid: KernelConfig[][];
  /**
   * Configs of each stage from outside the space that the run may time too (the cache's stored
   * pairs, timed beside its winners): the scratch is sized for them as well.
   */
  stored?: KernelConfig[][];
  /** The largest bucket: the buffers are sized for it. */
  maxM: number;
  /** Weight bytes to rotate through when timing. */
  rotateBytes: number;
  /** The run's seeded generator, for the buffers' contents. */
  random: () => number;
  /** Takes each buffer made, to destroy it when the run ends. */
  keep: (buffer: GPUBuffer) => GPUBuffer;
}

function weightBuffers(
  device: GPUDevice,
  values: Float32Array,
  dtype: WeightDtype,
  rotateBytes: number,
  label: string,
): GPUBuffer[] {
  const packed = packWeights(values, dtype);
  const copies = Math.max(1, Math.min(16, Math.ceil(rotateBytes / packed.byteLength)));
  return Array.from(
    { length: copies },
    (_, i) => storageBuffer(device, packed, `${label} copy ${i}`),
  );
}

/**
 * The stages' targets: X and the fused weight; the fused output is the batched stage's input.
 *
 * @throws {RangeError} If an output at the largest bucket is over the storage binding limit.
 */
export function stageTargets(setup: StageSetup): Target[] {
  const { gpu, spec, dtype, maxM, random, keep } = setup;
  const device = gpu.device;
  const weightCopies = (values: Float32Array, label: string) =>
    weightBuffers(device, values, dtype, setup.rotateBytes, label).map(keep);
  const fused = fusedShape(spec);
  const batched = batchedShape(spec);
  const fusedExtent = shapeExtents(fused, maxM);
  checkSize(gpu, fusedExtent.y * 4, `the fused output at m=${maxM}`);
  const fusedBuffers: StageBuffers = {
    x: keep(storageBuffer(device, randomNonZero(fusedExtent.x, random), "x")),
    ws: weightCopies(randomNonZero(fusedExtent.w, random), "fused w"),
    y: keep(storageBuffer(device, randomNonZero(fusedExtent.y, random), "fused y")),
    scratch: splitScratch(
      gpu,
      setup.valid.map((configs, i) => [...configs, ...(setup.stored?.[i] ?? [])]),
      [fused, batched],
      keep,
    ),
  };
  const targets: Target[] = [{
    name: "fused",
    stage: "fused",
    shape: fused,
    buffers: fusedBuffers,
    kernels: new Map(),
    valid: setup.valid[0],
    splitRows: splitRows(fused, gpu.caps),
  }];
  if (batched) {
    const extent = shapeExtents(batched, maxM);
    checkSize(gpu, extent.y * 4, `the batched output at m=${maxM}`);
    targets.push({
      name: "batched",
      stage: "batched",
      shape: batched,
      buffers: {
        x: fusedBuffers.y,
        ws: weightCopies(randomNonZero(extent.w, random), "batched w"),
        y: keep(device.createBuffer({
          size: extent.y * 4,
          usage: GPUBufferUsage.STORAGE,
          label: "batched y",
        })),
        scratch: fusedBuffers.scratch,
      },
      kernels: new Map(),
      valid: setup.valid[1],
      splitRows: splitRows(batched, gpu.caps),
    });
  }
  return targets;
}

/**
 * The unfused baseline's targets: one GEMM per segment and per batched input, on the buffers
 * of its stage's target.
 */
export function unfusedTargets(spec: ProjectionSpec, stages: readonly Target[]): Target[] {
  return unfusedShapes(spec).map(({ stage, shape }, i) => {
    const within = stages.find((t) => t.stage === stage)!;
    return { ...within, name: `unfused:${i}`, shape, kernels: new Map(), valid: [], within };
  });
}

/**
 * The scratch of split-K and stream-K configs (`splitRows` rows of a stage's output for
 * split-K, every tile at {@linkcode STREAM_ROWS} rows for stream-K; `suitsRows` keeps them
 * to those rows), if any valid config needs one.
 */
function splitScratch(
  gpu: Gpu,
  valid: KernelConfig[][],
  shapes: (GemmShape | undefined)[],
  keep: (buffer: GPUBuffer) => GPUBuffer,
): GPUBuffer | undefined {
  const needs = valid.flatMap((configs, i) =>
    configs.map((c) => {
      if (c.family !== "outer") return 0;
      if (c.stream) return scratchBytes(c, shapes[i]!, STREAM_ROWS);
      const shape = shapes[i]!;
      return c.split > 1 ? splitRows(shape, gpu.caps) * shape.yRowStride * 4 : 0;
    })
  );
  const size = Math.max(0, ...needs);
  if (size === 0) return undefined;
  return keep(gpu.device.createBuffer({
    size,
    usage: GPUBufferUsage.STORAGE,
    label: "split-K and stream-K scratch",
  }));
}

function checkSize(gpu: Gpu, bytes: number, what: string): void {
  if (bytes > gpu.caps.maxStorageBinding) {
    throw new RangeError(
      `Cannot tune: ${what} needs ${bytes} bytes, over the device's storage binding limit of ${gpu.caps.maxStorageBinding}`,
    );
  }
}
