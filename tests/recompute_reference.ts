/**
 * The float64 reference of the batched outputs computed from X alone (recompute and decode
 * kernels), with error bounds that carry the recomputed input's error.
 */
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
