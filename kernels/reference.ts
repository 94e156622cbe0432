/**
 * The CPU reference: float64 accumulation over the same (rounded) weights the GPU reads.
 *
 * @module
 */
import type { GemmShape } from "./problem.ts";

/** Result of a reference GEMM: the exact-ish value and the sum of |products| per output. */
export interface ReferenceRows {
  /** `values[i * n * B + b * n + c]`: output (row i of `rows`, batch b, column c). */
  values: Float64Array;
  /** Same layout: sum over k of |x * w|, the scale the rounding error is measured against. */
  magnitudes: Float64Array;
}

/**
 * Computes `Y[b][r, c]` in float64 for the given rows of a GEMM stage.
 *
 * @param x The X buffer's contents (with the stage's offsets and strides).
 * @param w The weights as the GPU sees them, in float64.
 * @param rows Which rows to compute.
 */
export function referenceRows(
  shape: GemmShape,
  x: ArrayLike<number>,
  w: Float64Array,
  rows: number[],
): ReferenceRows {
  const { k, n } = shape;
  const batches = shape.xOffsets.length;
  const values = new Float64Array(rows.length * batches * n);
  const magnitudes = new Float64Array(values.length);
  const xRow = new Float64Array(k);
  rows.forEach((r, i) => {
    for (let b = 0; b < batches; b++) {
      const xAt = shape.xOffsets[b] + r * shape.xRowStride;
      for (let t = 0; t < k; t++) xRow[t] = x[xAt + t];
      for (let c = 0; c < n; c++) {
        const wAt = shape.wOffset + (b * n + c) * k;
        let sum = 0, mag = 0;
        for (let t = 0; t < k; t++) {
          const p = xRow[t] * w[wAt + t];
          sum += p;
          mag += Math.abs(p);
        }
        values[(i * batches + b) * n + c] = sum;
        magnitudes[(i * batches + b) * n + c] = mag;
      }
    }
  });
  return { values, magnitudes };
}

/**
 * The largest error an f32-accumulated result may have: a few units of f32 rounding per
 * accumulation step, which grows like sqrt(k) for random data, times the sum of |products|.
 */
export function errorBound(k: number, magnitude: number): number {
  return 8 * 2 ** -24 * Math.sqrt(k) * magnitude + 1e-30;
}
