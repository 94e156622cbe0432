/**
 * The batched stage recomputed from X (the decode plan in NOTES.md, issue 9): each workgroup
 * computes the whole `kb`-wide batched input (f_a or g_a) of every row from X and the fused
 * weights' columns of that input into workgroup memory, then its share of the batched output
 * (f_b or g_b) from it. Nothing reads the fused stage's output, so this kernel does not wait for
 * the fused GEMV: the two can run side by side. Rows up to `rows` per dispatch (decode sizes).
 *
 * Bindings (group 0): 0 = uniform m, 1 = X (f32), 2 = the fused weights, 3 = the batched
 * weights (both stored as the weight type), 4 = the batched output (f32). Not yet a family of
 * the tuner's space: {@linkcode recomputeWgsl} and its checks come first.
 *
 * @module
 */
import type { DeviceCaps } from "./config.ts";
import type { WeightDtype } from "./dtype.ts";
import type { BufferLayout } from "./gpu.ts";
import { bufferLayout } from "./gpu.ts";
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
  const shared = 4 * c.rows * kb * (c.lanes + 1);
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

/** The WGSL of a config (see the module documentation; check it with `recomputeProblem`). */
export function recomputeWgsl(
  c: RecomputeConfig,
  spec: ProjectionSpec,
  dtype: WeightDtype,
): string {
  const b = spec.batched!;
  const kb = batchedInputWidth(spec);
  const offsets = segmentOffsets(spec);
  const inputs = b.inputs.map((name) => `${offsets.get(name)}u`).join(", ");
  const perPass = c.threads / c.lanes;
  return [
    `// ${recomputeName(c)}: ${b.outputs.join(", ")} from X, recomputing ${b.inputs.join(", ")}`,
    `// weights stored as ${dtype}; rows up to ${c.rows}`,
    "",
    "struct Params { m: u32 }",
    "@group(0) @binding(0) var<uniform> params: Params;",
    "@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;",
    `@group(0) @binding(2) var<storage, read> W: array<${storedVec(dtype, 4)}>;`,
    `@group(0) @binding(3) var<storage, read> WB: array<${storedVec(dtype, 4)}>;`,
    "@group(0) @binding(4) var<storage, read_write> Y: array<f32>;",
    "",
    `const K4 = ${spec.k / 4}u; // X row and fused weight column, in vec4s`,
    `const KB = ${kb}u; // batched input width`,
    `const N = ${b.n}u; // batched output columns per input`,
    `const Y_STRIDE = ${b.n * b.inputs.length}u;`,
    `const ROWS = ${c.rows}u;`,
    `const LANES = ${c.lanes}u;`,
    `const THREADS = ${c.threads}u;`,
    `const PER_PASS = ${perPass}u; // input columns recomputed at once`,
    `const COLS = ${c.cols}u;`,
    "",
    weightLoader(dtype, 4),
    weightLoader(dtype, 4, "WB", "loadWB"),
    "",
    "var<workgroup> part: array<f32, ROWS * KB * LANES>;",
    "var<workgroup> a: array<f32, ROWS * KB>;",
    "",
    `@compute @workgroup_size(${c.threads})`,
    "fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {",
    "  let m = min(params.m, ROWS);",
    "  let batch = wg.y;",
    `  var inputs = array<u32, ${b.inputs.length}>(${inputs});`,
    "  let column0 = inputs[batch]; // the input's first column in the fused output",
    "  let lane = t % LANES;",
    "  // 1: the input's KB columns for every row, LANES threads per column, partial sums kept",
    "  for (var step = 0u; step < (KB + PER_PASS - 1u) / PER_PASS; step++) {",
    "    let j = step * PER_PASS + t / LANES;",
    "    if (j < KB) {",
    "      var acc = array<f32, ROWS>(); // explicit: naga does not re-zero a bare var per iteration (gfx-rs/wgpu#9489)",
    "      for (var i = lane; i < K4; i += LANES) {",
    "        let w = loadW((column0 + j) * K4 + i);",
    "        for (var r = 0u; r < m; r++) { acc[r] += dot(X[r * K4 + i], w); }",
    "      }",
    "      for (var r = 0u; r < ROWS; r++) { part[(r * KB + j) * LANES + lane] = acc[r]; }",
    "    }",
    "  }",
    "  workgroupBarrier();",
    "  for (var q = t; q < ROWS * KB; q += THREADS) {",
    "    var s = 0.0;",
    "    for (var l = 0u; l < LANES; l++) { s += part[q * LANES + l]; }",
    "    a[q] = s;",
    "  }",
    "  workgroupBarrier();",
    "  // 2: this workgroup's output columns, a thread per column",
    "  let end = min((wg.x + 1u) * COLS, N);",
    "  for (var col = wg.x * COLS + t; col < end; col += THREADS) {",
    "    var acc = array<f32, ROWS>();",
    "    for (var i = 0u; i < KB / 4u; i++) {",
    "      let w = loadWB((batch * N + col) * (KB / 4u) + i);",
    "      for (var r = 0u; r < m; r++) {",
    "        let at = r * KB + 4u * i;",
    "        acc[r] += dot(vec4<f32>(a[at], a[at + 1u], a[at + 2u], a[at + 3u]), w);",
    "      }",
    "    }",
    "    for (var r = 0u; r < m; r++) { Y[r * Y_STRIDE + batch * N + col] = acc[r]; }",
    "  }",
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
export interface RecomputeKernel {
  bindGroup(buffers: RecomputeBuffers): GPUBindGroup;
  dispatch(pass: GPUComputePassEncoder, group: GPUBindGroup): void;
}

/**
 * Compiles a config for a spec (uncached; check it first with {@linkcode recomputeProblem}).
 *
 * @param wgsl The source, the config's own by default (a test swaps in a wrong one).
 */
export function compileRecompute(
  device: GPUDevice,
  c: RecomputeConfig,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  wgsl = recomputeWgsl(c, spec, dtype),
): RecomputeKernel {
  const layout = recomputeLayout(device);
  const pipeline = device.createComputePipeline({
    layout: layout.pipeline,
    compute: { module: device.createShaderModule({ code: wgsl }), entryPoint: "main" },
  });
  const grid = recomputeGrid(c, spec);
  return {
    bindGroup: ({ params, x, w, wb, y }) =>
      device.createBindGroup({
        layout: layout.bindGroup,
        entries: [params, x, w, wb, y].map((buffer, binding) => ({
          binding,
          resource: { buffer },
        })),
      }),
    dispatch: (pass, group) => {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(...grid);
    },
  };
}
