/**
 * Weight storage types and their conversion from float32.
 *
 * 16-bit weights are stored two per u32 (element 2i in the low half, 2i+1 in the high half),
 * so no shader extension is needed to read them: f16 is widened with `unpack2x16float`, bf16
 * by shifting its bits into the top half of an f32.
 *
 * @module
 */

/** How weights are stored on the GPU. */
export type WeightDtype = "f32" | "f16" | "bf16";

/** The storage types, in the order the tuner tries them. */
export const WEIGHT_DTYPES: readonly WeightDtype[] = ["f32", "f16", "bf16"];

/** Bytes per weight element. */
export function bytesPerElement(dtype: WeightDtype): number {
  return dtype === "f32" ? 4 : 2;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * Bytes of `elements` weights stored as `dtype` in a GPU buffer (16-bit pairs packed in u32s,
 * so the size is padded to 4 bytes).
 *
 * @example
 * ```ts
 * import { packedBytes } from "./dtype.ts";
 * if (packedBytes(3, "f16") !== 8) throw new Error("3 halves take two u32s");
 * if (packedBytes(3, "f32") !== 12) throw new Error("3 floats");
 * ```
 */
export function packedBytes(elements: number, dtype: WeightDtype): number {
  return Math.ceil((elements * bytesPerElement(dtype)) / 4) * 4;
}

/**
 * Rounds a float32 to IEEE half precision bits, nearest-even; NaN stays NaN (quiet), values
 * past 65504 become infinity, tiny values become subnormals or signed zero.
 *
 * @example
 * ```ts
 * import { f32ToF16Bits } from "./dtype.ts";
 * if (f32ToF16Bits(1) !== 0x3c00) throw new Error("1.0 is 0x3c00 in f16");
 * ```
 */
export function f32ToF16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    // Subnormal: shift the mantissa (with its implicit 1) right, rounding nearest-even.
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let h = m >>> shift;
    if (rest > half || (rest === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++; // may carry into the exponent: correct
  return sign | h;
}

/** Widens IEEE half precision bits to a number. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/**
 * Rounds a float32 to bfloat16 bits, nearest-even; NaN stays a quiet NaN.
 *
 * @example
 * ```ts
 * import { f32ToBf16Bits } from "./dtype.ts";
 * if (f32ToBf16Bits(1) !== 0x3f80) throw new Error("1.0 is 0x3f80 in bf16");
 * ```
 */
export function f32ToBf16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff)) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Widens bfloat16 bits to a number. */
export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}

/**
 * Converts float32 weights to the storage layout of `dtype`: for f32 the same array (not a
 * copy: changing it changes the result), or 16-bit values packed two per u32 in a new array
 * (the length must then be even).
 *
 * @throws {RangeError} If a 16-bit dtype gets an odd number of elements.
 */
export function packWeights(values: Float32Array, dtype: WeightDtype): Float32Array | Uint32Array {
  if (dtype === "f32") return values;
  if (values.length % 2 !== 0) {
    throw new RangeError(`Cannot pack ${dtype} weights: length ${values.length} is odd`);
  }
  const toBits = dtype === "f16" ? f32ToF16Bits : f32ToBf16Bits;
  const out = new Uint32Array(values.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = (toBits(values[2 * i]) | (toBits(values[2 * i + 1]) << 16)) >>> 0;
  }
  return out;
}

/** The values the GPU will see for weights stored as `dtype` (rounded, as float64). */
export function roundWeights(values: Float32Array, dtype: WeightDtype): Float64Array {
  const out = new Float64Array(values.length);
  if (dtype === "f32") out.set(values);
  else if (dtype === "f16") {
    for (let i = 0; i < out.length; i++) out[i] = f16BitsToF32(f32ToF16Bits(values[i]));
  } else for (let i = 0; i < out.length; i++) out[i] = bf16BitsToF32(f32ToBf16Bits(values[i]));
  return out;
}

/**
 * The arithmetic kernels may use: `"exact"` multiplies and adds in f32 whatever the weights are
 * stored as; `"fast"` also allows f16 math for f16 weights (X rounded to f16, products summed in
 * f16 over short slices of k, then in f32): packed half-precision FMAs run at up to twice the
 * f32 rate (measured 1.2x for the whole projection on an H100).
 */
export type Precision = "exact" | "fast";

/** Every {@linkcode Precision}. */
export const PRECISIONS: readonly Precision[] = ["exact", "fast"];

/**
 * Why a precision does not go with a weight type, or `undefined` if it does: `"fast"` is for
 * f16 weights (bf16's range does not fit f16, f32 weights would lose most of their bits).
 *
 * @example
 * ```ts
 * import { precisionProblem } from "./dtype.ts";
 * if (precisionProblem("fast", "f16") !== undefined) throw new Error("f16 may be fast");
 * if (precisionProblem("fast", "bf16") === undefined) throw new Error("bf16 may not");
 * ```
 */
export function precisionProblem(precision: Precision, dtype: WeightDtype): string | undefined {
  if (!PRECISIONS.includes(precision)) {
    return `precision "${precision}" is not one of ${PRECISIONS.join(", ")}`;
  }
  return precision === "fast" && dtype !== "f16"
    ? `precision "fast" is for f16 weights, got ${dtype}`
    : undefined;
}

/**
 * Reads a weight type's name.
 *
 * @example
 * ```ts
 * import { parseWeightDtype } from "./dtype.ts";
 * if (parseWeightDtype("bf16") !== "bf16") throw new Error("bf16 is a weight type");
 * ```
 *
 * @throws {RangeError} If the name is not one of {@linkcode WEIGHT_DTYPES}.
 */
export function parseWeightDtype(name: string): WeightDtype {
  if (!(WEIGHT_DTYPES as readonly string[]).includes(name)) {
    throw new RangeError(`Expected a weight type (${WEIGHT_DTYPES.join(", ")}), got "${name}"`);
  }
  return name as WeightDtype;
}

/**
 * Reads a label the bench tools take for a weight type and precision: the type's name, or it
 * with `-fast` for precision `"fast"` (`f16-fast`).
 *
 * @example
 * ```ts
 * import { parseWeightLabel } from "./dtype.ts";
 * const { dtype, precision } = parseWeightLabel("f16-fast");
 * if (dtype !== "f16" || precision !== "fast") throw new Error("f16 with f16 math");
 * ```
 *
 * @throws {RangeError} If the type is not a weight type or the precision does not go with it.
 */
export function parseWeightLabel(label: string): { dtype: WeightDtype; precision: Precision } {
  const precision: Precision = label.endsWith("-fast") ? "fast" : "exact";
  const dtype = parseWeightDtype(label.replace(/-fast$/, ""));
  const problem = precisionProblem(precision, dtype);
  if (problem) {
    throw new RangeError(`Expected a weight type and precision that go together: ${problem}`);
  }
  return { dtype, precision };
}
