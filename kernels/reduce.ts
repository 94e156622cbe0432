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

/** Threads per workgroup of the reduction, one output element (or vec4 of them) each. */
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

/** {@linkcode BINDINGS} with the scratch and Y seen as vec4s (the same bind group layout). */
const VEC4_BINDINGS = BINDINGS.map((line) => line.replace("array<f32>", "array<vec4<f32>>"));

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
 * Columns that each thread of a stream-K reduction adds: 4 (a vec4 of one tile row) where
 * every row of every batch of Y starts on a vec4 and has whole vec4s (`bn`, `n`, the row stride
 * and the batch offsets multiples of 4), else 1. {@linkcode streamReduceWgsl} and
 * {@linkcode reductionGrid} both ask it, so the shader and its grid agree.
 *
 * Seen as vec4s, Y and the scratch are `array<vec4<f32>>` over the same buffers (bound whole,
 * kernels/gpu.ts), whose sizes are multiples of 16 bytes: Y's are sized by a qualifying shape's
 * rows (multiples of 4 floats), a stream-K scratch by whole tiles (`bn` a multiple of 4), and a
 * scratch shared with split-K kernels is rounded up to 16 bytes where it is made.
 *
 * @example
 * ```ts
 * import { streamLanes } from "./reduce.ts";
 * const shape = { k: 64, n: 8, xRowStride: 64, xOffsets: [0], wOffset: 0, yOffsets: [0], yRowStride: 8 };
 * const c = { family: "outer", bm: 32, bn: 32, bk: 8, rm: 4, rn: 4, split: 1, half: false,
 *   double: false, stream: 5 } as const;
 * if (streamLanes(c, shape) !== 4) throw new Error("vec4");
 * if (streamLanes(c, { ...shape, n: 6 }) !== 1) throw new Error("n not a multiple of 4");
 * if (streamLanes(c, { ...shape, yOffsets: [2] }) !== 1) throw new Error("offset");
 * ```
 */
export function streamLanes(c: OuterConfig, shape: GemmShape): 1 | 4 {
  const aligned = [c.bn, shape.n, shape.yRowStride, ...shape.yOffsets].every((x) => x % 4 === 0);
  return aligned ? 4 : 1;
}

/**
 * The second dispatch of a stream-K kernel (`OuterConfig.stream`): each tile of Y is the tile's
 * slab of the scratch (what the workgroup whose run starts the tile computed) plus the partial
 * slab of every later workgroup whose run starts inside the tile. Scratch bound as X, Y as Y.
 * Each thread adds one element of a tile, or a vec4 of them where {@linkcode streamLanes} is 4.
 *
 * @example
 * ```ts
 * import { streamReduceWgsl } from "./reduce.ts";
 * const shape = { k: 64, n: 8, xRowStride: 64, xOffsets: [0], wOffset: 0, yOffsets: [0], yRowStride: 8 };
 * const c = { family: "outer", bm: 32, bn: 32, bk: 8, rm: 4, rn: 4, split: 1, half: false,
 *   double: false, stream: 5 } as const;
 * if (!streamReduceWgsl(c, shape).includes("const GROUPS = 5u;")) throw new Error("workgroups");
 * if (!streamReduceWgsl(c, shape).includes("array<vec4<f32>>")) throw new Error("vec4");
 * if (streamReduceWgsl(c, { ...shape, n: 6 }).includes("vec4")) throw new Error("scalar");
 * ```
 */
export function streamReduceWgsl(c: OuterConfig, shape: GemmShape): string {
  const vec4 = streamLanes(c, shape) === 4;
  return [
    `// stream-K reduction of ${configName(c)}: Y = each tile's slab + later workgroups' partials${
      vec4 ? ", a vec4 per thread" : ""
    }`,
    ...(vec4 ? VEC4_BINDINGS : BINDINGS),
    `const BM = ${c.bm}u;`,
    `const BN = ${c.bn}u;`,
    `const N = ${shape.n}u;`,
    `const Y_STRIDE = ${shape.yRowStride}u;`,
    `const SLICES = ${shape.k / c.bk}u;`,
    `const BATCHES = ${shape.yOffsets.length}u;`,
    `const GROUPS = ${c.stream}u;`,
    ...(vec4 ? [`const BN4 = ${c.bn / 4}u; // vec4s in a tile row`] : []),
    "",
    ...ENTRY,
    ...streamRun("  ", c.double, c.dp),
    ...streamSums(shape, vec4, c.dp),
    "}",
    "",
  ].join("\n");
}

/**
 * The stream-K reduction's body: a thread adds unit `e` of every tile it visits, an element, or
 * with `vec4` a vec4 of one tile row (columns `4 * (e4 % BN4)` to 3 more of row `e4 / BN4`, the
 * scratch and Y indexed in vec4s; as N is a multiple of 4, `c < N` holds for all four columns or
 * none).
 */
function streamSums(shape: GemmShape, vec4: boolean, dp = false): string[] {
  const offsets = shape.yOffsets.map((y) => `${y}u`).join(", ");
  const [e, bn] = vec4 ? ["e4", "BN4"] : ["e", "BN"];
  const at = "yOffsets[tile / (rowTiles * colTiles)] + r * Y_STRIDE + c";
  // With a data-parallel first part, tiles below dpTiles are in Y already, and stream-K's runs
  // count slices from tile dpTiles on.
  const [first, rel] = dp ? ["dpTiles + ", "(tile - dpTiles)"] : ["", "tile"];
  return [
    `  let ${e} = wg.x * ${THREADS}u + li; // the ${vec4 ? "vec4" : "element"} within the tile`,
    `  if (${e} >= BM * ${bn}) { return; }`,
    `  var yOffsets = array<u32, ${shape.yOffsets.length}>(${offsets});`,
    `  for (var tile = ${first}wg.y; tile < tiles; tile += ${MAX_GRID}u) {`,
    `    let r = tile % (rowTiles * colTiles) / colTiles * BM + ${e} / ${bn};`,
    `    let c = tile % colTiles * BN + ${e} % ${bn}${vec4 ? " * 4u" : ""};`,
    "    if (r < m && c < N) {",
    `      var sum = P[tile * BM * ${bn} + ${e}];`,
    `      let last = (min(${rel} * SLICES + SLICES, total) - 1u) / chunk; // its last workgroup`,
    `      for (var v = ${rel} * SLICES / chunk + 1u; v <= last; v++) {`,
    `        sum += P[(tiles + v) * BM * ${bn} + ${e}];`,
    "      }",
    `      Y[${vec4 ? `(${at}) / 4u` : at}] = sum;`,
    "    }",
    "  }",
  ];
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
    const groups = Math.ceil((c.bm * c.bn) / (THREADS * streamLanes(c, shape)));
    return [groups, Math.min(outerTiles(c, shape, m), MAX_GRID), 1];
  }
  return reduceGrid(shape, m);
}
