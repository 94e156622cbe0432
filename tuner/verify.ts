/**
 * Checks a compiled kernel against the float64 reference: random non-zero inputs, the output
 * poisoned with NaN first, every computed element compared, and every element the kernel must
 * not write checked to still hold the poison. Many kernels are checked in one submit and one
 * read-back ({@linkcode checkKernelsAt}): each await on the GPU costs about 10 ms in Deno.
 *
 * @module
 */
import type { WeightDtype } from "../kernels/dtype.ts";
import { packWeights, roundWeights } from "../kernels/dtype.ts";
import type { CompiledKernel } from "../kernels/gpu.ts";
import { dispatchKernel, kernelBindGroup, paramsBuffer, storageBuffer } from "../kernels/gpu.ts";
import { MAX_SPLIT, scratchBytes } from "../kernels/config.ts";
import type { GemmShape } from "../kernels/problem.ts";
import { configErrorBound, errorBound, referenceRows } from "../kernels/reference.ts";
import { randomNonZero, seededRandom } from "./random.ts";

/** Inputs for checking kernels of one stage at one m, shared by all configs. */
export interface CheckData {
  shape: GemmShape;
  dtype: WeightDtype;
  m: number;
  x: Float32Array;
  wRounded: Float64Array;
  xBuffer: GPUBuffer;
  wBuffer: GPUBuffer;
  yBuffer: GPUBuffer;
  /** Y's size of NaN, copied over Y before each kernel. */
  poison: GPUBuffer;
  /**
   * Partial outputs of split-K and stream-K kernels and the NaN copied over them before each
   * such kernel: made by the first check of one and replaced when one needs more
   * ({@linkcode checkScratch}). One holder, shared by the check data made within these
   * buffers ({@linkcode checkDataWithin}), so that a replacement reaches all of them.
   */
  scratch: CheckScratch;
  params: GPUBuffer;
  /** Rows compared against the reference. */
  rows: number[];
  /** Reference values for `rows`, computed once. */
  reference: ReturnType<typeof referenceRows>;
}

/**
 * Where check data keeps its scratch buffers. Shared by reference: a copy holding the buffers
 * themselves kept using them after another copy destroyed them to make larger ones, and the
 * submit that used them failed whole, so its kernels read back zeros and were rejected (H100,
 * 2026-12-05: a stream-K config checked by the unfused GEMMs, then by its stage).
 */
export interface CheckScratch {
  buffers?: { buffer: GPUBuffer; poison: GPUBuffer };
}

/** Element counts of X, W and Y that a shape touches at m rows. */
export function shapeExtents(shape: GemmShape, m: number): { x: number; w: number; y: number } {
  const batches = shape.xOffsets.length;
  return {
    x: (m - 1) * shape.xRowStride + Math.max(...shape.xOffsets) + shape.k,
    w: shape.wOffset + batches * shape.n * shape.k,
    y: (m - 1) * shape.yRowStride + Math.max(...shape.yOffsets) + shape.n,
  };
}

/** Rows to compare: all of them up to 64, else edges, tile boundaries and a random sample. */
export function rowsToCheck(m: number, random: () => number): number[] {
  if (m <= 64) return Array.from({ length: m }, (_, i) => i);
  const rows = new Set([0, 1, m - 2, m - 1, 63, 64, 127, 128].filter((r) => r < m));
  while (rows.size < 24) rows.add(Math.floor(random() * m));
  return [...rows].sort((a, b) => a - b);
}

/** Uploads random data for a stage at m rows and computes the reference. */
export function makeCheckData(
  device: GPUDevice,
  shape: GemmShape,
  dtype: WeightDtype,
  m: number,
  seed: number,
): CheckData {
  const random = seededRandom(seed);
  const extent = shapeExtents(shape, m);
  const x = randomNonZero(extent.x, random);
  const w = randomNonZero(extent.w + (extent.w % 2), random);
  const wRounded = roundWeights(w, dtype);
  const rows = rowsToCheck(m, random);
  const ySize = Math.max(16, extent.y * 4);
  return {
    shape,
    dtype,
    m,
    x,
    wRounded,
    xBuffer: storageBuffer(device, x, "check x"),
    wBuffer: storageBuffer(device, packWeights(w, dtype), "check w"),
    yBuffer: device.createBuffer({
      size: ySize,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      label: "check y",
    }),
    poison: storageBuffer(device, new Float32Array(ySize / 4).fill(NaN), "check poison"),
    scratch: {},
    params: paramsBuffer(device, m),
    rows,
    reference: referenceRows(shape, x, wRounded, rows),
  };
}

/**
 * The check data of a GEMM that runs on another one's buffers (an unfused GEMM on its stage's):
 * the same inputs, output and rows, with the reference of its own output only. Making it costs
 * no random data, no upload and only this GEMM's share of the reference.
 *
 * @throws {RangeError} If the shape reaches past the data's X, W or Y.
 */
export function checkDataWithin(data: CheckData, shape: GemmShape): CheckData {
  const need = shapeExtents(shape, data.m), have = shapeExtents(data.shape, data.m);
  for (const part of ["x", "w", "y"] as const) {
    const needs = need[part], has = have[part];
    if (needs > has) {
      throw new RangeError(
        `Cannot check within these buffers: the shape needs ${needs} elements of ${part}, they have ${has}`,
      );
    }
  }
  return { ...data, shape, reference: referenceRows(shape, data.x, data.wRounded, data.rows) };
}

/** Frees the check buffers. */
export function destroyCheckData(data: CheckData): void {
  const { xBuffer, wBuffer, yBuffer, poison, params, scratch } = data;
  const { buffers } = scratch;
  for (const b of [xBuffer, wBuffer, yBuffer, poison, params, buffers?.buffer, buffers?.poison]) {
    b?.destroy();
  }
  scratch.buffers = undefined;
}

/**
 * The check set's scratch for split-K and stream-K kernels and its poison, made on first use
 * (and again larger when a stream-K kernel needs more than any split).
 */
function checkScratch(
  device: GPUDevice,
  data: CheckData,
  kernels: CompiledKernel[],
): { buffer: GPUBuffer; poison: GPUBuffer } {
  const size = Math.max(
    MAX_SPLIT * data.m * data.shape.yRowStride * 4,
    ...kernels.map((k) => scratchBytes(k.config, k.shape, data.m)),
  );
  const holder = data.scratch;
  if (holder.buffers && holder.buffers.buffer.size < size) {
    holder.buffers.buffer.destroy();
    holder.buffers.poison.destroy();
    holder.buffers = undefined;
  }
  return holder.buffers ??= {
    buffer: device.createBuffer({
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      label: "check scratch",
    }),
    poison: storageBuffer(device, new Float32Array(size / 4).fill(NaN), "check scratch poison"),
  };
}

/**
 * Runs a kernel once on the check data and compares.
 *
 * @returns `undefined` if it matches, else the first mismatch in words.
 */
export async function checkKernel(
  device: GPUDevice,
  kernel: CompiledKernel,
  data: CheckData,
): Promise<string | undefined> {
  return (await checkKernelsAt(device, [kernel], [data]))[0]?.mismatch;
}

/** Where a kernel first failed its check: the check's m and the mismatch in words. */
export interface CheckFailure {
  m: number;
  mismatch: string;
}

/**
 * Runs kernels once each on several check data sets (each at its m) in one submit and one
 * read-back: every await on the GPU costs about 10 ms in Deno.
 *
 * @returns Per kernel, `undefined` if it matches on every set, else its first failure.
 */
export async function checkKernelsAt(
  device: GPUDevice,
  kernels: CompiledKernel[],
  sets: CheckData[],
): Promise<(CheckFailure | undefined)[]> {
  // Read-back layout: set by set, kernel by kernel, each a copy of that set's Y.
  const offsets = sets.map((_, s) =>
    sets.slice(0, s).reduce((sum, d) => sum + d.yBuffer.size * kernels.length, 0)
  );
  const readback = device.createBuffer({
    size: sets.reduce((sum, d) => sum + d.yBuffer.size * kernels.length, 0),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    label: "check read-back",
  });
  const encoder = device.createCommandEncoder();
  sets.forEach((data, s) => encodeCheck(device, encoder, kernels, data, readback, offsets[s]));
  device.queue.submit([encoder.finish()]);
  try {
    await readback.mapAsync(GPUMapMode.READ);
    const all = new Float32Array(readback.getMappedRange().slice(0));
    return kernels.map((_, i) => {
      for (const [s, data] of sets.entries()) {
        const at = (offsets[s] + i * data.yBuffer.size) / 4;
        const y = all.subarray(at, at + data.yBuffer.size / 4);
        const bound = configErrorBound(kernels[i].config);
        const mismatch = compareOutput(data.shape, data.m, y, data.rows, data.reference, bound);
        if (mismatch) return { m: data.m, mismatch };
      }
      return undefined;
    });
  } finally {
    readback.destroy();
  }
}

/**
 * Records each kernel's run on one check set: poison Y (and a split-K or stream-K kernel's scratch),
 * dispatch, copy Y out at `offset` on.
 */
function encodeCheck(
  device: GPUDevice,
  encoder: GPUCommandEncoder,
  kernels: CompiledKernel[],
  data: CheckData,
  readback: GPUBuffer,
  offset: number,
): void {
  const size = data.yBuffer.size;
  const scratch = kernels.some((k) => k.reduce) ? checkScratch(device, data, kernels) : undefined;
  const bindGroup = kernelBindGroup(device, {
    params: data.params,
    x: data.xBuffer,
    w: data.wBuffer,
    y: data.yBuffer,
    scratch: scratch?.buffer,
  });
  kernels.forEach((kernel, i) => {
    encoder.copyBufferToBuffer(data.poison, 0, data.yBuffer, 0, size);
    if (scratch && kernel.reduce) {
      encoder.copyBufferToBuffer(scratch.poison, 0, scratch.buffer, 0, scratch.buffer.size);
    }
    const pass = encoder.beginComputePass();
    dispatchKernel(pass, kernel, bindGroup, data.m);
    pass.end();
    encoder.copyBufferToBuffer(data.yBuffer, 0, readback, offset + i * size, size);
  });
}

/**
 * Compares Y with the reference on `rows`, and checks that no other element was written.
 *
 * @param bound The largest error allowed for a result of k products whose |products| sum to
 * `magnitude` (f32 math's by default; `configErrorBound` gives a config's).
 */
export function compareOutput(
  shape: GemmShape,
  m: number,
  y: Float32Array,
  rows: number[],
  reference: { values: Float64Array; magnitudes: Float64Array },
  bound: (k: number, magnitude: number) => number = errorBound,
): string | undefined {
  const batches = shape.xOffsets.length;
  const written = new Uint8Array(y.length);
  for (let r = 0; r < m; r++) {
    for (let b = 0; b < batches; b++) {
      const at = r * shape.yRowStride + shape.yOffsets[b];
      written.fill(1, at, at + shape.n);
    }
  }
  for (let i = 0; i < y.length; i++) {
    if (!written[i] && !Number.isNaN(y[i])) return `wrote Y[${i}] = ${y[i]}, outside its output`;
  }
  for (let i = 0; i < rows.length; i++) {
    for (let b = 0; b < batches; b++) {
      for (let c = 0; c < shape.n; c++) {
        const at = rows[i] * shape.yRowStride + shape.yOffsets[b] + c;
        const ref = reference.values[(i * batches + b) * shape.n + c];
        const limit = bound(shape.k, reference.magnitudes[(i * batches + b) * shape.n + c]);
        const err = Math.abs(y[at] - ref);
        if (!(err <= limit)) {
          return `row ${rows[i]} batch ${b} column ${c}: got ${y[at]}, expected ${
            ref.toPrecision(8)
          } (error ${err.toExponential(2)} > bound ${limit.toExponential(2)})`;
        }
      }
    }
  }
  return undefined;
}
