/**
 * The batched stage recomputed from X (the decode plan in NOTES.md, issue 9): each workgroup
 * computes the whole `kb`-wide batched input (f_a or g_a) of every row from X and the fused
 * weights' columns of that input into workgroup memory, then its share of the batched output
 * (f_b or g_b) from it. Nothing reads the fused stage's output, so this kernel does not wait for
 * the fused GEMV: the two can run side by side. Rows up to `rows` per dispatch (decode sizes).
 *
 * Bindings (group 0): 0 = uniform m, 1 = X (f32), 2 = the fused weights, 3 = the batched
 * weights (both stored as the weight type), 4 = the batched output (f32). Not a family of the
 * tuner's space: on the H100 it took 22 us alone at best against the 3.3 us of the batched GEMV it
 * would replace (NOTES.md, "neither form of the one-dispatch decode plan wins"); the overlap probe
 * (bench/overlap_probe.ts) and kernels/decode.ts use it.
 *
 * @module
 */
import type { DeviceCaps } from "./config.ts";
import type { WeightDtype } from "./dtype.ts";
import type { BufferLayout, LayoutKernel } from "./gpu.ts";
import { bufferLayout, compileLayoutKernel } from "./gpu.ts";
import type { ProjectionSpec } from "./problem.ts";
import { batchedInputWidth, segmentOffsets } from "./problem.ts";
import { storedVec, weightLoader } from "./wgsl.ts";

/** A recompute kernel's knobs. */
export interface RecomputeConfig {
  /** Threads per workgroup. */
  threads: number;
  /** Threads that share one recomputed input column's dot product over k. */
  lanes: number;
  /** Batched output columns per workgroup. */
  cols: number;
  /** Most rows (m) one dispatch computes. */
  rows: number;
}

/** A config's name, for example `recompute-t256-l8-c128-r1`. */
export function recomputeName(c: RecomputeConfig): string {
  return `recompute-t${c.threads}-l${c.lanes}-c${c.cols}-r${c.rows}`;
}

/**
 * Why a config cannot run a spec on a device, or undefined if it can.
 *
 * @example
 * ```ts
 * import { recomputeProblem } from "./recompute.ts";
 * import { PORTABLE_CAPS } from "./device.ts";
 * const spec = {
 *   name: "s", k: 64, segments: [{ name: "a", n: 8 }],
 *   batched: { inputs: ["a"], n: 16, outputs: ["b"] },
 * };
 * const config = { threads: 64, lanes: 8, cols: 16, rows: 1 };
 * if (recomputeProblem(config, spec, PORTABLE_CAPS) !== undefined) throw new Error("valid");
 * if (!recomputeProblem({ ...config, lanes: 3 }, spec, PORTABLE_CAPS)) throw new Error("lanes");
 * ```
 */
export function recomputeProblem(
  c: RecomputeConfig,
  spec: ProjectionSpec,
  caps: DeviceCaps,
): string | undefined {
  if (!spec.batched) return "the problem has no batched stage";
  const kb = batchedInputWidth(spec);
  if (spec.k % 4 !== 0 || kb % 4 !== 0) {
    return `k (${spec.k}) and the batched input width (${kb}) must be multiples of 4`;
  }
  if (!(c.lanes >= 1 && c.threads % c.lanes === 0)) {
    return `threads (${c.threads}) must be a multiple of lanes (${c.lanes})`;
  }
  if (c.threads > caps.maxInvocations) {
    return `${c.threads} threads exceed the device's ${caps.maxInvocations} per workgroup`;
  }
  if ((spec.k / 4) % c.lanes !== 0) {
    return `lanes (${c.lanes}) must divide k / 4 (${spec.k / 4})`;
  }
  const shared = 4 * c.rows * (kb + c.threads);
  if (shared > caps.maxWorkgroupStorage) {
    return `${shared} bytes of workgroup memory exceed the device's ${caps.maxWorkgroupStorage}`;
  }
  if (![c.threads, c.lanes, c.cols, c.rows].every((v) => Number.isInteger(v) && v >= 1)) {
    return "threads, lanes, cols and rows must be positive integers";
  }
  return undefined;
}

/** Workgroups of a dispatch: output column blocks by batched outputs. */
export function recomputeGrid(c: RecomputeConfig, spec: ProjectionSpec): [number, number, number] {
  const b = spec.batched!;
  return [Math.ceil(b.n / c.cols), b.inputs.length, 1];
}

/** Largest divisor of `steps` up to `most`: loop trips unrolled into one. */
function unrollOf(steps: number, most = 8): number {
  for (let u = Math.min(steps, most); u > 1; u--) if (steps % u === 0) return u;
  return 1;
}

/** Largest power of two up to `most` that divides `n`. */
function pow2Divisor(n: number, most: number): number {
  let p = 1;
  while (p * 2 <= most && n % (p * 2) === 0) p *= 2;
  return p;
}

/** Threads that share one output column's dot product in the second step. */
export function outputLanes(c: RecomputeConfig, spec: ProjectionSpec): number {
  return pow2Divisor(batchedInputWidth(spec) / 4, Math.max(1, Math.floor(c.threads / c.cols)));
}

/**
 * One thread's share of a dot product of length `len` vec4s split over `lanes` threads: all
 * `unroll` loads of a trip first (so they are in flight together), then the FMAs of each row.
 * `x(r, i)` and `w(i)` are the WGSL of row r's and the weights' i-th vec4.
 */
function dotLoop(
  rows: number,
  len: number,
  lanes: number,
  lane: string,
  x: (r: number, i: string) => string,
  w: (i: string) => string,
): string[] {
  const unroll = unrollOf(len / lanes);
  const at = (u: number) => (u === 0 ? "i" : `i + ${u * lanes}u`);
  const lines = Array.from({ length: rows }, (_, r) => `    var acc${r} = 0.0;`);
  lines.push(`    for (var i = ${lane}; i < ${len}u; i += ${lanes * unroll}u) {`);
  for (let u = 0; u < unroll; u++) lines.push(`      let w${u} = ${w(at(u))};`);
  for (let u = 0; u < unroll; u++) {
    for (let r = 0; r < rows; r++) lines.push(`      acc${r} += dot(${x(r, at(u))}, w${u});`);
  }
  lines.push("    }");
  return lines;
}

/** The binding numbers of a recompute part: X, fused W, batched W, batched Y. */
export interface RecomputeBindings {
  x: number;
  w: number;
  wb: number;
  y: number;
}

/**
 * Declarations of a recompute part (bindings, constants, loaders, workgroup memory), every
 * name starting with `R`/`r` so a kernel with a GEMV part can hold both. `params` (m) is the
 * caller's.
 */
export function recomputeDecls(
  c: RecomputeConfig,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  bind: RecomputeBindings,
): string {
  const b = spec.batched!;
  const kb = batchedInputWidth(spec);
  const perPass = c.threads / c.lanes, lanes2 = outputLanes(c, spec);
  const cols2 = c.threads / lanes2;
  const vec = storedVec(dtype, 4);
  return [
    `@group(0) @binding(${bind.x}) var<storage, read> RX: array<vec4<f32>>;`,
    `@group(0) @binding(${bind.w}) var<storage, read> RW: array<${vec}>;`,
    `@group(0) @binding(${bind.wb}) var<storage, read> RWB: array<${vec}>;`,
    `@group(0) @binding(${bind.y}) var<storage, read_write> RY: array<f32>;`,
    "",
    `const R_K4 = ${spec.k / 4}u; // X row and fused weight column, in vec4s`,
    `const R_KB4 = ${kb / 4}u; // batched input width, in vec4s`,
    `const R_N = ${b.n}u; // batched output columns per input`,
    `const R_Y_STRIDE = ${b.n * b.inputs.length}u;`,
    `const R_PER_PASS = ${perPass}u; // input columns recomputed at once (${c.lanes} threads each)`,
    `const R_COLS2 = ${cols2}u; // output columns at once (${lanes2} threads each)`,
    `const R_COLS = ${c.cols}u; // output columns per workgroup`,
    "",
    weightLoader(dtype, 4, "RW", "loadRW"),
    weightLoader(dtype, 4, "RWB", "loadRWB"),
    "",
    `var<workgroup> rPart: array<f32, ${c.rows * c.threads}>;`,
    `var<workgroup> rA: array<vec4<f32>, ${(c.rows * kb) / 4}>;`,
  ].join("\n");
}

/**
 * `fn recomputeBlock(t, wg)`: workgroup `wg` of {@linkcode recomputeGrid}, thread `t`. Step 1
 * recomputes the input's `kb` columns for every row into `rA`, `lanes` threads per column;
 * step 2 computes the workgroup's output columns from `rA`, a few threads per column.
 */
export function recomputeBlock(c: RecomputeConfig, spec: ProjectionSpec): string {
  const b = spec.batched!;
  const kb = batchedInputWidth(spec), k4 = spec.k / 4;
  const offsets = segmentOffsets(spec);
  const inputs = b.inputs.map((name) => `${offsets.get(name)}u`).join(", ");
  const perPass = c.threads / c.lanes, lanes2 = outputLanes(c, spec), cols2 = c.threads / lanes2;
  const rows = Array.from({ length: c.rows }, (_, r) => r);
  const sumLanes = (lanes: number, slot: (r: number) => string) =>
    rows.map((r) =>
      `      var s${r} = 0.0;\n      for (var l = 0u; l < ${lanes}u; l++) { s${r} += rPart[${
        slot(r)
      } + l]; }`
    );
  return [
    "fn recomputeBlock(t: u32, wg: vec3<u32>) {",
    "  let m = params.m;",
    `  var inputs = array<u32, ${b.inputs.length}>(${inputs});`,
    "  let column0 = inputs[wg.y]; // the input's first column in the fused output",
    ...rows.map((r) => `  let x${r} = min(${r}u, m - 1u) * R_K4; // rows past m are clamped`),
    `  // 1: the input's ${kb} columns for every row`,
    `  let lane = t % ${c.lanes}u;`,
    `  for (var step = 0u; step < ${Math.ceil(kb / perPass)}u; step++) {`,
    "    let j = min(step * R_PER_PASS + t / " + c.lanes + "u, R_KB4 * 4u - 1u);",
    "    let wAt = (column0 + j) * R_K4;",
    ...dotLoop(
      c.rows,
      k4,
      c.lanes,
      "lane",
      (r, i) => `RX[x${r} + ${i}]`,
      (i) => `loadRW(wAt + ${i})`,
    ),
    ...rows.map((r) =>
      `    rPart[(${r}u * R_PER_PASS + t / ${c.lanes}u) * ${c.lanes}u + lane] = acc${r};`
    ),
    "    workgroupBarrier();",
    `    if (lane == 0u && step * R_PER_PASS + t / ${c.lanes}u < R_KB4 * 4u) {`,
    ...sumLanes(c.lanes, (r) => `(${r}u * R_PER_PASS + t / ${c.lanes}u) * ${c.lanes}u`),
    ...rows.map((r) => `      rA[${r}u * R_KB4 + j / 4u][j % 4u] = s${r};`),
    "    }",
    "    workgroupBarrier();",
    "  }",
    `  // 2: this workgroup's output columns, ${lanes2} threads each`,
    `  let lane2 = t % ${lanes2}u;`,
    `  for (var step = 0u; step < ${Math.ceil(c.cols / cols2)}u; step++) {`,
    `    let col = min(wg.x * R_COLS + step * R_COLS2 + t / ${lanes2}u, R_N - 1u);`,
    "    let wAt = (wg.y * R_N + col) * R_KB4;",
    ...dotLoop(
      c.rows,
      kb / 4,
      lanes2,
      "lane2",
      (r, i) => `rA[${r}u * R_KB4 + ${i}]`,
      (i) => `loadRWB(wAt + ${i})`,
    ),
    ...rows.map((r) => `    rPart[${r}u * ${c.threads}u + t] = acc${r};`),
    "    workgroupBarrier();",
    `    let own = step * R_COLS2 + t / ${lanes2}u;`,
    `    if (lane2 == 0u && own < R_COLS && wg.x * R_COLS + own < R_N) {`,
    ...sumLanes(lanes2, (r) => `${r}u * ${c.threads}u + t`),
    ...rows.map((r) =>
      `      if (${r}u < m) { RY[${r}u * R_Y_STRIDE + wg.y * R_N + col] = s${r}; }`
    ),
    "    }",
    "    workgroupBarrier();",
    "  }",
    "}",
  ].join("\n");
}

/** The WGSL of a config (see the module documentation; check it with `recomputeProblem`). */
export function recomputeWgsl(
  c: RecomputeConfig,
  spec: ProjectionSpec,
  dtype: WeightDtype,
): string {
  const b = spec.batched!;
  return [
    `// ${recomputeName(c)}: ${b.outputs.join(", ")} from X, recomputing ${b.inputs.join(", ")}`,
    `// weights stored as ${dtype}; rows up to ${c.rows}`,
    "",
    "struct Params { m: u32 }",
    "@group(0) @binding(0) var<uniform> params: Params;",
    recomputeDecls(c, spec, dtype, { x: 1, w: 2, wb: 3, y: 4 }),
    "",
    recomputeBlock(c, spec),
    "",
    `@compute @workgroup_size(${c.threads})`,
    "fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {",
    "  recomputeBlock(t, wg);",
    "}",
    "",
  ].join("\n");
}

/** The layout of recompute kernels: uniform m, X, fused W, batched W (read-only), output. */
export function recomputeLayout(device: GPUDevice): BufferLayout {
  const read = "read-only-storage";
  return bufferLayout(device, ["uniform", read, read, read, "storage"]);
}

/** The buffers a recompute kernel binds, in binding order after `params`. */
export interface RecomputeBuffers {
  /** 16-byte uniform holding m as its first u32. */
  params: GPUBuffer;
  x: GPUBuffer;
  /** The fused weights. */
  w: GPUBuffer;
  /** The batched weights. */
  wb: GPUBuffer;
  /** The batched output. */
  y: GPUBuffer;
}

/** A compiled recompute kernel: its bind groups, and its dispatch into a pass. */
export type RecomputeKernel = LayoutKernel<RecomputeBuffers>;

/**
 * Compiles a config for a spec (uncached; check it first with {@linkcode recomputeProblem}).
 *
 * @param wgsl The source, the config's own by default (a test swaps in a wrong one).
 * @throws {KernelCompileError} With the compiler's messages.
 */
export function compileRecompute(
  device: GPUDevice,
  c: RecomputeConfig,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  wgsl = recomputeWgsl(c, spec, dtype),
): Promise<RecomputeKernel> {
  return compileLayoutKernel(
    device,
    recomputeLayout(device),
    recomputeName(c),
    wgsl,
    recomputeGrid(c, spec),
    ({ params, x, w, wb, y }: RecomputeBuffers) => [params, x, w, wb, y],
  );
}
