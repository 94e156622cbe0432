/**
 * Checking a tuning run's inputs and planning its search space before anything is written or
 * run: the weight type fits the problem, the buckets are positive integers, every buffer fits the
 * device's storage binding limit, and each stage has valid configs for every bucket.
 *
 * @module
 */
import type { DeviceCaps, KernelConfig } from "../kernels/config.ts";
import { configName, configProblem } from "../kernels/config.ts";
import type { Precision, WeightDtype } from "../kernels/dtype.ts";
import type { GemmShape, ProjectionSpec } from "../kernels/problem.ts";
import {
  batchedInputWidth,
  batchedShape,
  dtypeProblem,
  fusedShape,
  fusedWidth,
} from "../kernels/problem.ts";
import { packedBytes, precisionProblem } from "../kernels/dtype.ts";
import type { SearchSpace } from "../kernels/space.ts";
import { enumerateSpace, suitsRows } from "../kernels/space.ts";

/** A problem, weight type, bucket list or search space the tuner cannot work with. */
export class TuneInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TuneInputError";
  }
}

/**
 * Checks the inputs of a run before anything is written: the weight type fits the problem and
 * the precision, the buckets are positive integers, and each stage has valid configs for every
 * bucket. Half-math configs are in the space only for precision "fast".
 *
 * @returns The valid configs of each stage, and the rejected ones with their reasons.
 * @throws {TuneInputError} Naming what is wrong.
 */
export function planSpace(
  spec: ProjectionSpec,
  dtype: WeightDtype,
  buckets: number[],
  space: SearchSpace,
  caps: DeviceCaps,
  precision: Precision = "exact",
): { stage: "fused" | "batched"; valid: KernelConfig[]; invalid: Map<string, string> }[] {
  const packing = dtypeProblem(spec, dtype) ?? precisionProblem(precision, dtype);
  if (packing) {
    throw new TuneInputError(`Cannot tune "${spec.name}" with ${dtype} weights: ${packing}`);
  }
  if (buckets.length === 0 || !buckets.every((m) => Number.isSafeInteger(m) && m > 0)) {
    throw new TuneInputError(`Cannot tune: buckets must be positive integers, got ${buckets}`);
  }
  checkSizes(spec, dtype, Math.max(...buckets), caps);
  // f16 math is a different numerics, not a slower kernel: outside "fast" it is not searched.
  const configs = enumerateSpace(space).filter((c) =>
    precision === "fast" || c.family !== "outer" || !c.half
  );
  if (configs.length === 0) throw new TuneInputError("Cannot tune: the search space is empty");
  const stages: { stage: "fused" | "batched"; shape: GemmShape }[] = [
    { stage: "fused", shape: fusedShape(spec) },
  ];
  const batched = batchedShape(spec);
  if (batched) stages.push({ stage: "batched", shape: batched });
  return stages.map(({ stage, shape }) => {
    const valid: KernelConfig[] = [];
    const invalid = new Map<string, string>();
    for (const config of configs) {
      const problem = configProblem(config, shape, dtype, caps);
      if (problem) invalid.set(configName(config), problem);
      else valid.push(config);
    }
    const what =
      `the ${stage} stage of "${spec.name}" (k ${shape.k}, n ${shape.n}, ${dtype} weights)`;
    if (valid.length === 0) {
      const counts = new Map<string, number>();
      for (const reason of invalid.values()) counts.set(reason, (counts.get(reason) ?? 0) + 1);
      const common = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 3)
        .map(([reason, n]) => `"${reason}" (${n})`).join(", ");
      throw new TuneInputError(
        `No config of the search space is valid for ${what}: all ${configs.length} are rejected; most often ${common}`,
      );
    }
    const unserved = buckets.filter((m) => !valid.some((c) => suitsRows(c, m)));
    if (unserved.length > 0) {
      throw new TuneInputError(
        `No valid config of the search space suits m = ${
          unserved.join(", ")
        } for ${what}: gemv serves m <= 32 (64 with row groups) with no more rows a workgroup than m needs, tile and outer m >= 8; widen the space or leave those buckets out`,
      );
    }
    return { stage, valid, invalid };
  });
}

/**
 * Every buffer of the run must fit one storage binding of the device: a larger one makes an
 * invalid bind group, and the kernels then read zeros (the checks fail with NaN, not a reason).
 */
function checkSizes(spec: ProjectionSpec, dtype: WeightDtype, maxM: number, caps: DeviceCaps) {
  const packed = (elements: number) => packedBytes(elements, dtype);
  const b = spec.batched;
  const sizes: [string, number][] = [
    ["the fused weights", packed(fusedWidth(spec) * spec.k)],
    [`the input at m=${maxM}`, maxM * spec.k * 4],
    [`the fused output at m=${maxM}`, maxM * fusedWidth(spec) * 4],
  ];
  if (b) {
    sizes.push(
      ["the batched weights", packed(b.inputs.length * b.n * batchedInputWidth(spec))],
      [`the batched output at m=${maxM}`, maxM * b.outputs.length * b.n * 4],
    );
  }
  for (const [what, bytes] of sizes) {
    if (bytes > caps.maxStorageBinding) {
      throw new TuneInputError(
        `Cannot tune "${spec.name}" with ${dtype} weights: ${what} take ${bytes} bytes, over the device's storage binding limit of ${caps.maxStorageBinding}`,
      );
    }
  }
}
