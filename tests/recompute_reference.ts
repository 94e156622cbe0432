/**
 * What the recompute and decode kernels' tests share: the float64 reference of the batched
 * outputs computed from X alone, with error bounds that carry the recomputed input's error; one
 * dispatch of a kernel; and the comparison of an output with its reference.
 */
import type { LayoutKernel } from "../kernels/gpu.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { batchedInputWidth, segmentOffsets } from "../kernels/problem.ts";
import { errorBound } from "../kernels/reference.ts";

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
