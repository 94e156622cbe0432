/**
 * Projection problems: what is multiplied, independent of how.
 *
 * A problem is one input width `k`, named output segments whose weights are concatenated into
 * one fused weight `[sum n, k]`, and optionally a batched stage whose inputs are segments of
 * the fused output and whose weight is `[B, n, kb]`.
 *
 * @module
 */
import type { WeightDtype } from "./dtype.ts";
import { bytesPerElement } from "./dtype.ts";

/** One named column range of the fused output. */
export interface Segment {
  /** Output name, such as `"q"`. */
  name: string;
  /** Output width (columns). */
  n: number;
}

/** A batched stage: `outputs[b] = inputs[b] · W2[b]^T`, reading `inputs[b]` in place. */
export interface BatchedStage {
  /** Names of fused segments that feed the stage, all of the same width `kb`. */
  inputs: string[];
  /** Names of the outputs, one per input. */
  outputs: string[];
  /** Output width of each batched GEMM. */
  n: number;
}

/** A fused projection problem. */
export interface ProjectionSpec {
  /** Short name, such as `"kimi-linear-tp4"`. */
  name: string;
  /** Input width. */
  k: number;
  /** Fused segments in weight order. */
  segments: Segment[];
  /** Optional batched stage on segments of the fused output. */
  batched?: BatchedStage;
}

/**
 * The KDA projections of Kimi Linear (hidden 2304, 32 heads of 128) split over `tp` ranks.
 *
 * @param options.tp Tensor-parallel degree: 1, 2, 4 or 8.
 * @returns The per-rank projection problem.
 * @throws {RangeError} If `tp` is not 1, 2, 4 or 8.
 * @example Kimi Linear at tp 4
 * ```ts
 * import { kimiLinearSpec } from "./problem.ts";
 * const spec = kimiLinearSpec({ tp: 4 });
 * if (spec.segments.reduce((s, x) => s + x.n, 0) !== 3336) throw new Error("wrong width");
 * ```
 */
export function kimiLinearSpec(options: { tp: number }): ProjectionSpec {
  const { tp } = options;
  if (![1, 2, 4, 8].includes(tp)) {
    throw new RangeError(`Cannot build Kimi Linear spec: tp must be 1, 2, 4 or 8, got ${tp}`);
  }
  const heads = 32 / tp;
  const width = heads * 128;
  return {
    name: `kimi-linear-tp${tp}`,
    k: 2304,
    segments: [
      { name: "q", n: width },
      { name: "k", n: width },
      { name: "v", n: width },
      { name: "b", n: heads },
      { name: "f_a", n: 128 },
      { name: "g_a", n: 128 },
    ],
    batched: { inputs: ["f_a", "g_a"], outputs: ["f_b", "g_b"], n: width },
  };
}

/** Total width of the fused output. */
export function fusedWidth(spec: ProjectionSpec): number {
  return spec.segments.reduce((sum, s) => sum + s.n, 0);
}

/** Column offset of each segment in the fused output. */
export function segmentOffsets(spec: ProjectionSpec): Map<string, number> {
  const offsets = new Map<string, number>();
  let at = 0;
  for (const s of spec.segments) {
    offsets.set(s.name, at);
    at += s.n;
  }
  return offsets;
}

/** Width `kb` of each batched input (they are all equal in a valid spec). */
export function batchedInputWidth(spec: ProjectionSpec): number {
  const b = spec.batched;
  if (!b) return 0;
  return spec.segments.find((s) => s.name === b.inputs[0])!.n;
}

/**
 * Checks that a spec is well formed.
 *
 * @throws {TypeError} If a field has the wrong type.
 * @throws {RangeError} If a size is not a positive integer, a name repeats, or the batched
 * stage names missing segments or segments of different widths.
 */
export function validateSpec(spec: ProjectionSpec): void {
  const where = `Invalid projection spec "${spec?.name}"`;
  if (typeof spec !== "object" || spec === null) throw new TypeError(`${where}: not an object`);
  if (typeof spec.name !== "string" || spec.name === "") {
    throw new TypeError(`${where}: field "name" must be a non-empty string`);
  }
  positiveInt(spec.k, `${where}: field "k"`);
  if (!Array.isArray(spec.segments) || spec.segments.length === 0) {
    throw new TypeError(`${where}: field "segments" must be a non-empty array`);
  }
  const names = new Set<string>();
  spec.segments.forEach((s, i) => {
    if (typeof s?.name !== "string" || s.name === "") {
      throw new TypeError(`${where}: field "segments[${i}].name" must be a non-empty string`);
    }
    positiveInt(s.n, `${where}: field "segments[${i}].n"`);
    if (names.has(s.name)) throw new RangeError(`${where}: segment name "${s.name}" repeats`);
    names.add(s.name);
  });
  const b = spec.batched;
  if (b === undefined) return;
  if (!Array.isArray(b.inputs) || !Array.isArray(b.outputs) || b.inputs.length === 0) {
    throw new TypeError(`${where}: fields "batched.inputs" and "batched.outputs" must be arrays`);
  }
  if (b.inputs.length !== b.outputs.length) {
    throw new RangeError(
      `${where}: "batched.inputs" has ${b.inputs.length} names but "batched.outputs" has ${b.outputs.length}`,
    );
  }
  positiveInt(b.n, `${where}: field "batched.n"`);
  const widths = b.inputs.map((name) => {
    const s = spec.segments.find((x) => x.name === name);
    if (!s) throw new RangeError(`${where}: batched input "${name}" is not a segment`);
    return s.n;
  });
  if (widths.some((w) => w !== widths[0])) {
    throw new RangeError(`${where}: batched inputs must have one width, got ${widths.join(", ")}`);
  }
  for (const name of b.outputs) {
    if (names.has(name)) throw new RangeError(`${where}: output name "${name}" repeats`);
    names.add(name);
  }
}

/**
 * Checks that a valid spec can store its weights as `dtype`: 16-bit weights are packed in
 * pairs along each weight row, so the rows (k, and the batched stage's input width) must have
 * an even length.
 *
 * @returns `undefined` if it can, else the reason it cannot.
 */
export function dtypeProblem(spec: ProjectionSpec, dtype: WeightDtype): string | undefined {
  if (dtype === "f32") return undefined;
  if (spec.k % 2 !== 0) {
    return `${dtype} weights are packed in pairs along k, so k must be even, got ${spec.k}`;
  }
  const kb = batchedInputWidth(spec);
  if (kb % 2 !== 0) {
    return `${dtype} weights are packed in pairs along each row, so the batched stage's input ` +
      `width (segment "${spec.batched!.inputs[0]}") must be even, got ${kb}`;
  }
  return undefined;
}

function positiveInt(value: unknown, what: string): void {
  if (typeof value !== "number") throw new TypeError(`${what} must be a number, got ${value}`);
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${what} must be a positive integer, got ${value}`);
  }
}

/**
 * How one GEMM stage reads and writes its buffers: `Y[b][r, c] = X[b][r, :] · W[b][c, :]`.
 * All offsets and strides are in elements and baked into the generated kernel; only the row
 * count `m` is a runtime value.
 */
export interface GemmShape {
  /** Reduction length. */
  k: number;
  /** Output columns per batch. */
  n: number;
  /** Element offset of each batch's first input column in X (its length is the batch count). */
  xOffsets: number[];
  /** Elements between rows of X. */
  xRowStride: number;
  /** Element offset of the first weight row in W; batch b starts `b * n * k` further on. */
  wOffset: number;
  /** Element offset of each batch's first output column in Y. */
  yOffsets: number[];
  /** Elements between rows of Y. */
  yRowStride: number;
}

/** The fused stage: X [m, k] times the fused weight, into Y [m, sum n]. */
export function fusedShape(spec: ProjectionSpec): GemmShape {
  const n = fusedWidth(spec);
  return {
    k: spec.k,
    n,
    xOffsets: [0],
    xRowStride: spec.k,
    wOffset: 0,
    yOffsets: [0],
    yRowStride: n,
  };
}

/**
 * The batched stage: reads its inputs in place from the fused output and writes `[m, B * n]`
 * (output b is the column range `[b * n, (b + 1) * n)`).
 */
export function batchedShape(spec: ProjectionSpec): GemmShape | undefined {
  const b = spec.batched;
  if (!b) return undefined;
  const offsets = segmentOffsets(spec);
  return {
    k: batchedInputWidth(spec),
    n: b.n,
    xOffsets: b.inputs.map((name) => offsets.get(name)!),
    xRowStride: fusedWidth(spec),
    wOffset: 0,
    yOffsets: b.outputs.map((_, i) => i * b.n),
    yRowStride: b.outputs.length * b.n,
  };
}

/**
 * One stage's shape by the name the tools' `--stage` flags use.
 *
 * @throws {RangeError} For a stage other than "fused" or "batched", or "batched" of a problem
 *   that has no batched stage.
 * @example
 * ```ts
 * import { kimiLinearSpec, stageShape } from "./problem.ts";
 * const spec = kimiLinearSpec({ tp: 4 });
 * if (stageShape(spec, "batched").yOffsets.length !== 2) throw new Error("two outputs");
 * ```
 */
export function stageShape(spec: ProjectionSpec, stage: string): GemmShape {
  if (stage === "fused") return fusedShape(spec);
  if (stage !== "batched") {
    throw new RangeError(`Expected the stage to be fused or batched, got "${stage}"`);
  }
  const shape = batchedShape(spec);
  if (!shape) throw new RangeError(`problem "${spec.name}" has no batched stage`);
  return shape;
}

/**
 * The unfused baseline: one GEMM per segment, each reading its rows of the fused weight and
 * writing its columns of the fused output, then one GEMM per batched input.
 */
export function unfusedShapes(
  spec: ProjectionSpec,
): { stage: "fused" | "batched"; shape: GemmShape }[] {
  const fused = fusedShape(spec);
  const out: { stage: "fused" | "batched"; shape: GemmShape }[] = [];
  let at = 0;
  for (const s of spec.segments) {
    out.push({
      stage: "fused",
      shape: { ...fused, n: s.n, wOffset: at * spec.k, yOffsets: [at] },
    });
    at += s.n;
  }
  const batched = batchedShape(spec);
  if (batched) {
    batched.xOffsets.forEach((xOffset, b) => {
      out.push({
        stage: "batched",
        shape: {
          ...batched,
          xOffsets: [xOffset],
          wOffset: b * batched.n * batched.k,
          yOffsets: [batched.yOffsets[b]],
        },
      });
    });
  }
  return out;
}

/** Floating-point operations of one projection at m rows. */
export function projectionFlops(spec: ProjectionSpec, m: number): number {
  const fused = 2 * m * spec.k * fusedWidth(spec);
  const b = spec.batched;
  return fused + (b ? 2 * m * batchedInputWidth(spec) * b.n * b.inputs.length : 0);
}

/** Bytes of a projection's weights (fused and batched) stored as `dtype`. */
export function weightBytes(spec: ProjectionSpec, dtype: WeightDtype): number {
  const b = spec.batched;
  const elements = spec.k * fusedWidth(spec) +
    (b ? b.inputs.length * b.n * batchedInputWidth(spec) : 0);
  return elements * bytesPerElement(dtype);
}
