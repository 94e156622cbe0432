/**
 * What the tests of the kernels that write both stages' outputs (recompute, decode, fold) share:
 * random data and its buffers with NaN-poisoned outputs; the float64 reference of the batched
 * outputs computed from X alone, with error bounds that carry the recomputed input's error; one
 * dispatch of a kernel; and the comparison of outputs with their references.
 */
import type { DecodeBuffers } from "../kernels/decode.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { packWeights, roundWeights } from "../kernels/dtype.ts";
import type { LayoutKernel } from "../kernels/gpu.ts";
import { paramsBuffer, readBuffer, storageBuffer } from "../kernels/gpu.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { batchedInputWidth, fusedShape, fusedWidth, segmentOffsets } from "../kernels/problem.ts";
import { errorBound, referenceRows } from "../kernels/reference.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";

/** Random X and weights of a spec at m rows. */
export interface ProjectionData {
  x: Float32Array;
  w: Float32Array;
  wb: Float32Array;
}

/**
 * Seeded random data of a spec at m rows, and its buffers (weights stored as dtype), both outputs
 * one row past m and poisoned: the buffers a decode kernel binds, which the others take a part of.
 */
export function projectionData(
  device: GPUDevice,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  m: number,
  seed: number,
): { data: ProjectionData; buffers: DecodeBuffers } {
  const random = seededRandom(seed);
  const b = spec.batched!, n = fusedWidth(spec), nb = b.n * b.inputs.length;
  const data = {
    x: randomNonZero(m * spec.k, random),
    w: randomNonZero(n * spec.k, random),
    wb: randomNonZero(nb * batchedInputWidth(spec), random),
  };
  const buffers = {
    params: paramsBuffer(device, m),
    x: storageBuffer(device, data.x, "x"),
    w: storageBuffer(device, packWeights(data.w, dtype), "w"),
    y: storageBuffer(device, new Float32Array((m + 1) * n).fill(NaN), "y"),
    wb: storageBuffer(device, packWeights(data.wb, dtype), "wb"),
    yb: storageBuffer(device, new Float32Array((m + 1) * nb).fill(NaN), "yb"),
  };
  return { data, buffers };
}

/**
 * The first output value off its float64 reference (the fused output, then the batched), or a
 * value written past row m; undefined if there is none.
 */
export async function outputsOff(
  device: GPUDevice,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  m: number,
  { x, w, wb }: ProjectionData,
  buffers: { y: GPUBuffer; yb: GPUBuffer },
): Promise<string | undefined> {
  const rows = Array.from({ length: m }, (_, r) => r);
  const fused = referenceRows(fusedShape(spec), x, roundWeights(w, dtype), rows);
  const fusedOff = firstOff(
    await readBuffer(device, buffers.y),
    fused.values,
    (i) => errorBound(spec.k, fused.magnitudes[i]),
  );
  if (fusedOff) return `fused Y${fusedOff}`;
  const batched = batchedReference(spec, m, x, roundWeights(w, dtype), roundWeights(wb, dtype));
  const batchedOff = firstOff(
    await readBuffer(device, buffers.yb),
    batched.values,
    (i) => batched.bounds[i],
  );
  return batchedOff && `batched Y${batchedOff}`;
}

/** The batched outputs of rows < m in float64, each with its error bound. */
export function batchedReference(
  spec: ProjectionSpec,
  m: number,
  x: Float32Array,
  w: Float64Array,
  wb: Float64Array,
): { values: Float64Array; bounds: Float64Array } {
  const b = spec.batched!, kb = batchedInputWidth(spec), k = spec.k;
  const offsets = segmentOffsets(spec);
  const width = b.n * b.inputs.length;
  const values = new Float64Array(m * width), bounds = new Float64Array(m * width);
  for (let r = 0; r < m; r++) {
    b.inputs.forEach((name, batch) => {
      const column0 = offsets.get(name)!;
      const a = new Float64Array(kb), aError = new Float64Array(kb);
      for (let j = 0; j < kb; j++) {
        let sum = 0, magnitude = 0;
        for (let t = 0; t < k; t++) {
          const p = x[r * k + t] * w[(column0 + j) * k + t];
          sum += p;
          magnitude += Math.abs(p);
        }
        a[j] = sum;
        aError[j] = errorBound(k, magnitude);
      }
      for (let c = 0; c < b.n; c++) {
        let sum = 0, magnitude = 0, carried = 0;
        for (let j = 0; j < kb; j++) {
          const wj = wb[(batch * b.n + c) * kb + j];
          sum += a[j] * wj;
          magnitude += Math.abs(a[j] * wj);
          carried += aError[j] * Math.abs(wj);
        }
        values[r * width + batch * b.n + c] = sum;
        bounds[r * width + batch * b.n + c] = errorBound(kb, magnitude) + carried;
      }
    });
  }
  return { values, bounds };
}

/** Runs a kernel once over `buffers` and submits it. */
export function dispatchOnce<B>(device: GPUDevice, kernel: LayoutKernel<B>, buffers: B): void {
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  kernel.dispatch(pass, kernel.bindGroup(buffers));
  pass.end();
  device.queue.submit([encoder.finish()]);
}

/** Index and message of the first value of `got` outside its bound, or undefined. */
export function firstOff(got: Float32Array, want: Float64Array, bound: (i: number) => number) {
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= bound(i))) return `[${i}] = ${got[i]}, expected ${want[i]}`;
  }
  for (let i = want.length; i < got.length; i++) {
    if (!Number.isNaN(got[i])) return `[${i}] written, past row m`;
  }
  return undefined;
}
