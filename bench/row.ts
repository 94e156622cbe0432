/**
 * One row of the benchmark's results: what bench.ts measures and chart.ts draws.
 *
 * @module
 */
/** One bucket's measurements for one weight type, microseconds. */
export interface Row {
  /** The weight type, with "-fast" for precision "fast" (f16-fast). */
  dtype: string;
  m: number;
  tunedUs: number;
  mode: string;
  fusedConfig: string;
  batchedConfig: string | null;
  fusedStageUs: number | null;
  defaultUs: number;
  bestSingleUs: number | null;
  unfusedUs: number | null;
  /** The larger of memory and FP32 time at the GPU's ceilings; null for a GPU without them. */
  floorUs: number | null;
  tflops: number;
  gbps: number;
  torchAfterUs?: number;
  torchGemmUs?: number;
}
