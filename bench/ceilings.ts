/**
 * The hardware ceilings a benchmark's floor is computed from, per known GPU: what memory
 * bandwidth and FP32 (non-tensor) arithmetic the GPU reaches, as measured or documented. A GPU
 * not in the table gets no floor.
 *
 * @module
 */

/** A GPU's ceilings. */
export interface Ceilings {
  /** Memory bandwidth reached by a copy, bytes per second. */
  bytesPerS: number;
  /** FP32 FMA throughput without tensor cores, FLOP per second. */
  flops: number;
  /** Where the numbers come from. */
  source: string;
}

/** Known GPUs, by a pattern of the adapter's description. */
const KNOWN: [RegExp, Ceilings][] = [
  [/H100 80GB HBM3/i, {
    bytesPerS: 3.0e12,
    flops: 67e12,
    source: "measured on the GPU machine (../shared/gpu/README.md): HBM copy, FP32 at 1980 MHz",
  }],
  [/H200/i, {
    bytesPerS: 4.3e12,
    flops: 67e12,
    source: "the GPU machine's H200: a PyTorch device-to-device copy (read + write counted, " +
      "KINDS.md of the device tool); FP32 as the H100's (same 132 SMs, 1980 MHz boost)",
  }],
];

/**
 * The ceilings of the GPU an adapter describes, or undefined for one not in the table.
 *
 * @example
 * ```ts
 * import { ceilingsOf } from "./ceilings.ts";
 * if (ceilingsOf("NVIDIA H100 80GB HBM3")?.bytesPerS !== 3.0e12) throw new Error("H100");
 * if (ceilingsOf("llvmpipe (LLVM 15.0.6, 256 bits)") !== undefined) throw new Error("unknown");
 * ```
 */
export function ceilingsOf(description: string): Ceilings | undefined {
  return KNOWN.find(([pattern]) => pattern.test(description))?.[1];
}
