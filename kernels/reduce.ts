/**
 * The second dispatch of a split-K kernel: adds the `split` partial outputs that the split
 * kernel left in the scratch buffer (`split` slabs of `m` output rows) into Y.
 *
 * It uses the shared layout (kernels/gpu.ts) with the scratch bound as X (binding 1) and Y as
 * Y (binding 3); W (binding 2) is bound but not read.
 *
 * @module
 */
import type { GemmShape } from "./problem.ts";

/** Threads per workgroup of the reduction, one output element each. */
const THREADS = 256;

/**
 * The WGSL that adds `split` partial outputs of a shape into Y, over the same columns and rows
 * the GEMM would have written (no others are touched).
 *
 * @example
 * ```ts
 * import { reduceWgsl } from "./reduce.ts";
 * const shape = { k: 64, n: 8, xRowStride: 64, xOffsets: [0], wOffset: 0, yOffsets: [0], yRowStride: 8 };
 * if (!reduceWgsl(shape, 4).includes("const SPLIT = 4u;")) throw new Error("split constant");
 * ```
 */
export function reduceWgsl(shape: GemmShape, split: number): string {
  const offsets = shape.yOffsets.map((y) => `${y}u`).join(", ");
  return [
    `// split-K reduction: Y = sum of ${split} partial outputs, ${shape.n} columns per batch`,
    "struct Params { m: u32 }",
    "@group(0) @binding(0) var<uniform> params: Params;",
    "@group(0) @binding(1) var<storage, read> P: array<f32>;",
    "@group(0) @binding(3) var<storage, read_write> Y: array<f32>;",
    "",
    `const N = ${shape.n}u;`,
    `const Y_STRIDE = ${shape.yRowStride}u;`,
    `const SPLIT = ${split}u;`,
    "",
    `@compute @workgroup_size(${THREADS})`,
    "fn main(",
    "  @builtin(workgroup_id) wg: vec3<u32>,",
    "  @builtin(local_invocation_index) li: u32,",
    ") {",
    "  let m = params.m;",
    `  let c = wg.x * ${THREADS}u + li;`,
    "  let r = wg.y;",
    "  if (c >= N || r >= m) { return; }",
    `  var yOffsets = array<u32, ${shape.yOffsets.length}>(${offsets});`,
    "  let at = yOffsets[wg.z] + r * Y_STRIDE + c;",
    "  let slab = m * Y_STRIDE;",
    "  var sum = P[at];",
    "  for (var s = 1u; s < SPLIT; s++) { sum += P[at + s * slab]; }",
    "  Y[at] = sum;",
    "}",
    "",
  ].join("\n");
}

/** Workgroups of the reduction for m rows: [column groups, rows, batches]. */
export function reduceGrid(shape: GemmShape, m: number): [number, number, number] {
  return [Math.ceil(shape.n / THREADS), m, shape.yOffsets.length];
}
