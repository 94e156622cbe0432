/**
 * WGSL pieces shared by the kernel families: the header, the bindings and the weight loader
 * that widens stored weights to f32 vectors.
 *
 * Bindings (group 0): 0 = uniform `m` (the runtime row count), 1 = X (f32), 2 = W (stored
 * type), 3 = Y (f32). Everything else (sizes, offsets, strides) is baked in as constants.
 *
 * @module
 */
import type { WeightDtype } from "./dtype.ts";
import type { GemmShape } from "./problem.ts";

/** WGSL type of `vec` f32 values: `f32`, `vec2<f32>` or `vec4<f32>` (X is read as at most vec4). */
export function f32Vec(vec: number): string {
  return vec === 1 ? "f32" : `vec${Math.min(vec, 4)}<f32>`;
}

/** Elements per X load: X is f32, read at most four at a time. */
export function xVec(vec: number): number {
  return Math.min(vec, 4);
}

/** WGSL type one weight load reads from storage for `vec` elements. */
export function storedVec(dtype: WeightDtype, vec: number): string {
  if (dtype === "f32") return f32Vec(vec);
  return vec === 2 ? "u32" : `vec${vec / 2}<u32>`; // 16-bit values packed two per u32
}

/** Widening expression of a packed u32 holding two 16-bit values to `vec2<f32>`. */
function widen(dtype: WeightDtype, u: string): string {
  return dtype === "f16"
    ? `unpack2x16float(${u})`
    : `vec2<f32>(bitcast<f32>(${u} << 16u), bitcast<f32>(${u} & 0xffff0000u))`;
}

/**
 * `loadW(i)`: the i-th group of `vec` weights (i in vec units), widened to f32; eight 16-bit
 * weights come back as a `Wide8` pair of vec4s. `array` and `name` give another binding's loader
 * (vec up to 4).
 */
export function weightLoader(dtype: WeightDtype, vec: number, array = "W", name = "loadW"): string {
  if (vec === 8) {
    return [
      "struct Wide8 { lo: vec4<f32>, hi: vec4<f32> }",
      "fn loadW(i: u32) -> Wide8 {",
      "  let u = W[i];",
      `  return Wide8(vec4<f32>(${widen(dtype, "u.x")}, ${widen(dtype, "u.y")}), vec4<f32>(${
        widen(dtype, "u.z")
      }, ${widen(dtype, "u.w")}));`,
      "}",
    ].join("\n");
  }
  const t = f32Vec(vec);
  let body: string;
  if (dtype === "f32") body = `return ${array}[i];`;
  else if (vec === 2) body = `return ${widen(dtype, `${array}[i]`)};`;
  else {
    body = `let u = ${array}[i];\n  return vec4<f32>(${widen(dtype, "u.x")}, ${
      widen(dtype, "u.y")
    });`;
  }
  return `fn ${name}(i: u32) -> ${t} {\n  ${body}\n}`;
}

/** The shared top of a kernel: header comment, bindings, shape constants and `loadW`. */
export function kernelPrelude(
  title: string,
  shape: GemmShape,
  dtype: WeightDtype,
  vec: number,
): string {
  const batches = shape.xOffsets.length;
  return [
    `// ${title}`,
    `// Y[b][r, c] = sum_k X[b][r, k] * W[b][c, k] for r < m, c < ${shape.n}, k < ${shape.k}, b < ${batches}`,
    `// weights stored as ${dtype}, loaded ${vec} at a time; X read ${xVec(vec)} at a time`,
    "",
    "struct Params { m: u32 }",
    "@group(0) @binding(0) var<uniform> params: Params;",
    `@group(0) @binding(1) var<storage, read> X: array<${f32Vec(vec)}>;`,
    `@group(0) @binding(2) var<storage, read> W: array<${storedVec(dtype, vec)}>;`,
    "@group(0) @binding(3) var<storage, read_write> Y: array<f32>;",
    "",
    `const N = ${shape.n}u; // output columns per batch`,
    `const KV = ${shape.k / vec}u; // reduction length in weight vectors`,
    `const X_STRIDE = ${shape.xRowStride / xVec(vec)}u; // X row stride in X vectors`,
    `const Y_STRIDE = ${shape.yRowStride}u; // Y row stride in elements`,
    `const W_BATCH = ${(shape.n * shape.k) / vec}u; // W batch stride in vectors`,
    `const W_OFFSET = ${shape.wOffset / vec}u;`,
    "",
    weightLoader(dtype, vec),
    "",
  ].join("\n");
}

/**
 * Statements that set `xOffset` (vectors) and `yOffset` (elements) for batch `b`: constants
 * for one batch, a lookup otherwise.
 */
export function batchOffsets(shape: GemmShape, vec: number, indent: string): string {
  const xs = shape.xOffsets.map((x) => x / xVec(vec));
  if (xs.length === 1) {
    return `${indent}let xOffset = ${xs[0]}u;\n${indent}let yOffset = ${shape.yOffsets[0]}u;\n`;
  }
  const list = (a: number[]) => a.map((x) => `${x}u`).join(", ");
  return `${indent}var xOffsets = array<u32, ${xs.length}>(${list(xs)});\n` +
    `${indent}var yOffsets = array<u32, ${xs.length}>(${list(shape.yOffsets)});\n` +
    `${indent}let xOffset = xOffsets[b];\n${indent}let yOffset = yOffsets[b];\n`;
}

/** `a * b` summed over vector lanes, written for scalars too. */
export function dotExpr(vec: number, a: string, b: string): string {
  return vec === 1 ? `${a} * ${b}` : `dot(${a}, ${b})`;
}

/** A tiled kernel's entry point up to `let m`: its builtins, for a `tx x ty` workgroup. */
export function tiledMain(tx: number, ty: number): string[] {
  return [
    `@compute @workgroup_size(${tx}, ${ty})`,
    "fn main(",
    "  @builtin(workgroup_id) wg: vec3<u32>,",
    "  @builtin(local_invocation_id) lid: vec3<u32>,",
    "  @builtin(local_invocation_index) li: u32,",
    ") {",
    "  let m = params.m;",
  ];
}

/**
 * The entry point of a tiled kernel (`tile`, `outer`): its signature, then m, the batch, its
 * offsets and the tile's origin (`row0`, `col0`, with constants `BM` and `BN` declared). With
 * `split` > 1 the grid's z is batch x split and `part` says which k range is this workgroup's.
 */
export function tiledEntry(
  tx: number,
  ty: number,
  shape: GemmShape,
  vec: number,
  split = 1,
): string[] {
  return [
    ...tiledMain(tx, ty),
    ...(split > 1
      ? ["  let b = wg.z / SPLIT;", "  let part = wg.z % SPLIT;"]
      : ["  let b = wg.z;"]),
    batchOffsets(shape, vec, "  ").trimEnd(),
    "  let row0 = wg.y * BM;",
    "  let col0 = wg.x * BN;",
  ];
}

/**
 * Where each thread of a tiled kernel loads from: for its l-th X and W load, the tile row
 * (`xr`/`wr`), the k vector within the slice (`xq`/`wq`) and the global index (`xAt`/`wAt`),
 * with rows past the edge clamped. `slice` is the WGSL expression of vectors per slice row.
 */
export function tileLoadSlots(
  xLoads: number,
  wLoads: number,
  threads: number,
  slice: string,
): string[] {
  const lines: string[] = [];
  for (let l = 0; l < xLoads; l++) {
    lines.push(`  let xr${l} = (li + ${l * threads}u) / ${slice};`);
    lines.push(`  let xq${l} = (li + ${l * threads}u) % ${slice};`);
    lines.push(`  let xAt${l} = xOffset + min(row0 + xr${l}, m - 1u) * X_STRIDE + xq${l};`);
  }
  for (let l = 0; l < wLoads; l++) {
    lines.push(`  let wr${l} = (li + ${l * threads}u) / ${slice};`);
    lines.push(`  let wq${l} = (li + ${l * threads}u) % ${slice};`);
    lines.push(
      `  let wAt${l} = W_OFFSET + b * W_BATCH + min(col0 + wr${l}, N - 1u) * KV + wq${l};`,
    );
  }
  return lines;
}
