/**
 * The CPU reference: float64 accumulation over the same (rounded) weights the GPU reads.
 *
 * @module
 */
import type { KernelConfig } from "./config.ts";
import type { GemmShape, ProjectionSpec } from "./problem.ts";
import { batchedShape, fusedShape, fusedWidth, segmentOffsets } from "./problem.ts";

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

/**
 * The largest error of f16 math (`OuterConfig.half`) on random data: X rounded to f16 and the
 * products rounded and summed in f16 over slices of `slice` k steps, each a rounding of at most
 * 2^-11 relative; random signs make them add like a random walk, so about 2^-11 x |products|
 * x sqrt(slice / k) overall. The bound allows 8 times that, f16's subnormal spacing per product,
 * and the f32 sum of the slices ({@linkcode errorBound}).
 *
 * @example
 * ```ts
 * import { errorBound, halfErrorBound } from "./reference.ts";
 * if (!(halfErrorBound(2304, 16, 1) > errorBound(2304, 1))) throw new Error("looser than f32");
 * // A lost slice of 16 k steps is about 16 / 2304 of the magnitude: caught.
 * if (!(halfErrorBound(2304, 16, 1) < 16 / 2304 / 4)) throw new Error("catches a lost slice");
 * ```
 */
export function halfErrorBound(k: number, slice: number, magnitude: number): number {
  return 8 * 2 ** -11 * Math.sqrt((slice + 1) / k) * magnitude + k * 2 ** -25 +
    errorBound(k, magnitude);
}

/**
 * The error bound a config's results are checked against: f32's, or f16 math's where it has it,
 * over the k steps summed in f16 (`bk` times the slices per fold).
 */
export function configErrorBound(c: KernelConfig): (k: number, magnitude: number) => number {
  return c.family === "outer" && c.half
    ? (k, magnitude) => halfErrorBound(k, c.bk * (c.fold ?? 1), magnitude)
    : errorBound;
}

/** One output's reference: `values[i * n + c]` is row `rows[i]`, column c (as magnitudes). */
export interface OutputReference {
  n: number;
  values: Float64Array;
  magnitudes: Float64Array;
}

/**
 * The float64 reference of every output of a projection at some rows of x, by name: the fused
 * segments, then the batched outputs computed from the reference fused rows (so a batched
 * output's error includes what its input carried).
 *
 * @param weights The weights as the GPU sees them, in float64.
 * @example
 * ```ts
 * import { projectionReference } from "./reference.ts";
 * const spec = { name: "s", k: 2, segments: [{ name: "a", n: 1 }, { name: "b", n: 1 }] };
 * const ref = projectionReference(spec, [1, 2], { fused: Float64Array.of(3, 4, 5, 6) }, [0]);
 * if (ref.get("a")!.values[0] !== 11 || ref.get("b")!.values[0] !== 17) throw new Error("ref");
 * ```
 */
export function projectionReference(
  spec: ProjectionSpec,
  x: ArrayLike<number>,
  weights: { fused: Float64Array; batched?: Float64Array },
  rows: number[],
): Map<string, OutputReference> {
  const fused = referenceRows(fusedShape(spec), x, weights.fused, rows);
  const out = new Map<string, OutputReference>();
  const columns = (ref: ReferenceRows, stride: number, at: number, n: number) => {
    const pick = (all: Float64Array) => {
      const values = new Float64Array(rows.length * n);
      rows.forEach((_, i) => values.set(all.subarray(i * stride + at, i * stride + at + n), i * n));
      return values;
    };
    return { n, values: pick(ref.values), magnitudes: pick(ref.magnitudes) };
  };
  const offsets = segmentOffsets(spec);
  const width = fusedWidth(spec);
  for (const s of spec.segments) out.set(s.name, columns(fused, width, offsets.get(s.name)!, s.n));
  const b = spec.batched, shape = batchedShape(spec);
  if (b && shape && weights.batched) {
    // The reference fused rows are the batched stage's input, its rows renumbered from 0.
    const batched = referenceRows(shape, fused.values, weights.batched, rows.map((_, i) => i));
    const stride = b.outputs.length * b.n;
    b.outputs.forEach((name, bi) => out.set(name, columns(batched, stride, bi * b.n, b.n)));
  }
  return out;
}
