/**
 * The second dispatch of a split-K kernel: adds the `split` partial outputs that the split
 * kernel left in the scratch buffer (`split` slabs of `m` output rows) into Y; and of a stream-K
 * kernel, which adds each tile's partial slabs.
 *
 * It uses the shared layout (kernels/gpu.ts) with the scratch bound as X (binding 1) and Y as
 * Y (binding 3); W (binding 2) is bound but not read.
 *
 * @module
 */
import type { KernelConfig, OuterConfig } from "./config.ts";
import { configName, outerTiles } from "./config.ts";
import { streamRun } from "./outer.ts";
import type { GemmShape } from "./problem.ts";

/** Threads per workgroup of the reduction, one output element each. */
const THREADS = 256;

/** Workgroups in one dimension of a grid: WebGPU's default limit. */
const MAX_GRID = 65535;

/** The bindings of a reduction: m, the scratch bound as X, and Y. */
const BINDINGS = [
  "struct Params { m: u32 }",
  "@group(0) @binding(0) var<uniform> params: Params;",
  "@group(0) @binding(1) var<storage, read> P: array<f32>;",
  "@group(0) @binding(3) var<storage, read_write> Y: array<f32>;",
  "",
];

/** A reduction's entry point, up to m. */
const ENTRY = [
  `@compute @workgroup_size(${THREADS})`,
  "fn main(",
  "  @builtin(workgroup_id) wg: vec3<u32>,",
  "  @builtin(local_invocation_index) li: u32,",
  ") {",
  "  let m = params.m;",
];

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
    ...BINDINGS,
    `const N = ${shape.n}u;`,
    `const Y_STRIDE = ${shape.yRowStride}u;`,
    `const SPLIT = ${split}u;`,
    "",
    ...ENTRY,
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

/**
 * The second dispatch of a stream-K kernel (`OuterConfig.stream`): each tile of Y is the tile's
 * slab of the scratch (what the workgroup whose run starts the tile computed) plus the partial
 * slab of every later workgroup whose run starts inside the tile. Scratch bound as X, Y as Y.
 *
 * @example
 * ```ts
 * import { streamReduceWgsl } from "./reduce.ts";
 * const shape = { k: 64, n: 8, xRowStride: 64, xOffsets: [0], wOffset: 0, yOffsets: [0], yRowStride: 8 };
 * const c = { family: "outer", bm: 32, bn: 32, bk: 8, rm: 4, rn: 4, split: 1, half: false,
 *   double: false, stream: 5 } as const;
 * if (!streamReduceWgsl(c, shape).includes("const GROUPS = 5u;")) throw new Error("workgroups");
 * ```
 */
export function streamReduceWgsl(c: OuterConfig, shape: GemmShape): string {
  const offsets = shape.yOffsets.map((y) => `${y}u`).join(", ");
  return [
    `// stream-K reduction of ${configName(c)}: Y = each tile's slab + later workgroups' partials`,
    ...BINDINGS,
    `const BM = ${c.bm}u;`,
    `const BN = ${c.bn}u;`,
    `const N = ${shape.n}u;`,
    `const Y_STRIDE = ${shape.yRowStride}u;`,
    `const SLICES = ${shape.k / c.bk}u;`,
    `const BATCHES = ${shape.yOffsets.length}u;`,
    `const GROUPS = ${c.stream}u;`,
    "",
    ...ENTRY,
    ...streamRun("  ", c.double),
    `  let e = wg.x * ${THREADS}u + li; // the element within the tile`,
    "  if (e >= BM * BN) { return; }",
    `  var yOffsets = array<u32, ${shape.yOffsets.length}>(${offsets});`,
    `  for (var tile = wg.y; tile < tiles; tile += ${MAX_GRID}u) {`,
    "    let r = tile % (rowTiles * colTiles) / colTiles * BM + e / BN;",
    "    let c = tile % colTiles * BN + e % BN;",
    "    if (r < m && c < N) {",
    "      var sum = P[tile * BM * BN + e];",
    "      let last = (min(tile * SLICES + SLICES, total) - 1u) / chunk; // its last workgroup",
    "      for (var v = tile * SLICES / chunk + 1u; v <= last; v++) {",
    "        sum += P[(tiles + v) * BM * BN + e];",
    "      }",
    "      Y[yOffsets[tile / (rowTiles * colTiles)] + r * Y_STRIDE + c] = sum;",
    "    }",
    "  }",
    "}",
    "",
  ].join("\n");
}

/** The WGSL of a kernel's second dispatch: its split-K or stream-K reduction, if it has one. */
export function reductionWgsl(c: KernelConfig, shape: GemmShape): string | undefined {
  if (c.family !== "outer") return undefined;
  if (c.stream) return streamReduceWgsl(c, shape);
  return c.split > 1 ? reduceWgsl(shape, c.split) : undefined;
}

/** Workgroups of a kernel's second dispatch at m rows (split-K or stream-K). */
export function reductionGrid(
  c: KernelConfig,
  shape: GemmShape,
  m: number,
): [number, number, number] {
  if (c.family === "outer" && c.stream) {
    return [Math.ceil((c.bm * c.bn) / THREADS), Math.min(outerTiles(c, shape, m), MAX_GRID), 1];
  }
  return reduceGrid(shape, m);
}
