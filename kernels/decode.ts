/**
 * The whole projection at decode sizes in one dispatch (issue 9, item 2): the fused GEMV's
 * workgroups and the recompute workgroups of kernels/recompute.ts, side by side in one grid.
 * The recompute workgroups compute the batched output from X alone, so no workgroup waits for
 * another and no second, dependent dispatch follows the GEMV. Both parts share the workgroup
 * size: the GEMV part's `nc x lanes` threads.
 *
 * Bindings (group 0): 0 = uniform m, 1 = X, 2 = the fused weights, 3 = the fused output (the
 * GEMV's bindings), 4 = X again, 5 = the fused weights again (read as vec4s by the recompute
 * part), 6 = the batched weights, 7 = the batched output. Rows up to the GEMV's `rm`.
 *
 * Measured on the H100 (tp4, m = 1): 16.9 us at best against 11.8 us for the two dependent
 * dispatches, since each recompute workgroup reads the whole f_a or g_a weight block through one
 * SM (NOTES.md). Not a family of the tuner's space; bench/overlap_probe.ts times it.
 *
 * The waiting form (`wait` set) orders the two parts instead: the GEMV's workgroups in reversed
 * column order, so that those writing the batched inputs (f_a, g_a: the last columns) start
 * first and count themselves on a counter (binding 8) when done; and the batched workgroups,
 * after the GEMV's or (`first`) before them, which poll the counter up to `wait` times and copy
 * their inputs from the fused output, or recompute them from X if the count did not come
 * (WebGPU does not promise that an earlier workgroup progresses while a later one spins, so the
 * wait is bounded). The last batched workgroup resets the counter for the next dispatch; two
 * more counters (never reset) count the batched workgroups that waited and that recomputed.
 * Measured on an H100 and an H200 (NOTES.md): every batched workgroup waited, and the whole
 * projection took 0.3-0.6 us more than the two dispatches with 16-bit weights at m = 1, 0.3-0.6
 * less in f32; not in the tuner's space either.
 *
 * @module
 */
import type { DeviceCaps, GemvConfig } from "./config.ts";
import { configName, configProblem } from "./config.ts";
import type { WeightDtype } from "./dtype.ts";
import { gemvWgsl } from "./gemv.ts";
import type { BufferLayout, LayoutKernel } from "./gpu.ts";
import { bufferLayout, compileLayoutKernel } from "./gpu.ts";
import type { ProjectionSpec } from "./problem.ts";
import { fusedShape, fusedWidth, segmentOffsets } from "./problem.ts";
import type { RecomputeConfig } from "./recompute.ts";
import {
  recomputeBlock,
  recomputeDecls,
  recomputeGrid,
  recomputeInput,
  recomputeOutput,
  recomputeProblem,
  recomputeStart,
} from "./recompute.ts";

/** A one-dispatch decode kernel's knobs: its GEMV part, and its recompute part's own. */
export interface DecodeConfig {
  gemv: GemvConfig;
  /** Threads per recomputed input column (the recompute part's `lanes`). */
  lanes: number;
  /** Batched output columns per recompute workgroup. */
  cols: number;
  /**
   * The waiting form's polls of the counter before a batched workgroup recomputes its input;
   * unset for the recompute form (0 always recomputes: for tests).
   */
  wait?: number;
  /** The waiting form's batched workgroups come first in the grid, not after the GEMV's. */
  first?: boolean;
}

/** Counters of the waiting form (binding 8), in u32s: see {@linkcode DecodeCounter}. */
export const DECODE_COUNTERS = 4;

/**
 * The waiting form's counters: GEMV workgroups done writing batched inputs and batched
 * workgroups done reading them (both back to 0 after each dispatch), then batched workgroups that
 * waited and that recomputed (cumulative).
 */
export enum DecodeCounter {
  Producers = 0,
  Readers = 1,
  Waited = 2,
  Recomputed = 3,
}

/** The recompute part of a decode config, as a config of kernels/recompute.ts. */
export function recomputePart(c: DecodeConfig): RecomputeConfig {
  return { threads: c.gemv.nc * c.gemv.lanes, lanes: c.lanes, cols: c.cols, rows: c.gemv.rm };
}

/** A config's name, for example `decode-l8-c128-gemv-nc8-cn1-l32-rm1-v4-sg`. */
export function decodeName(c: DecodeConfig): string {
  const wait = c.wait === undefined ? "" : `w${c.wait}-${c.first ? "first-" : ""}`;
  return `decode-${wait}l${c.lanes}-c${c.cols}-${configName(c.gemv)}`;
}

/** Why a config cannot run a spec on a device, or undefined if it can. */
export function decodeProblem(
  c: DecodeConfig,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  caps: DeviceCaps,
): string | undefined {
  if (c.wait !== undefined && !(Number.isInteger(c.wait) && c.wait >= 0)) {
    return `wait must be a non-negative integer, got ${c.wait}`;
  }
  return configProblem(c.gemv, fusedShape(spec), dtype, caps) ??
    recomputeProblem(recomputePart(c), spec, caps);
}

/** Workgroups of the GEMV part: one per `nc x cn` fused output columns. */
function gemvGroups(c: DecodeConfig, spec: ProjectionSpec): number {
  return Math.ceil(fusedShape(spec).n / (c.gemv.nc * c.gemv.cn));
}

/**
 * The GEMV workgroups that write batched inputs, in the waiting form's reversed order: those
 * from the last fused column block down to the block of the first batched input column.
 */
export function decodeProducers(c: DecodeConfig, spec: ProjectionSpec): number {
  const offsets = segmentOffsets(spec);
  const first = Math.min(...spec.batched!.inputs.map((name) => offsets.get(name)!));
  return gemvGroups(c, spec) - Math.floor(first / (c.gemv.nc * c.gemv.cn));
}

/**
 * Workgroups: the batched part's and the GEMV's. The recompute form puts the batched part first
 * (it runs longest); the waiting form puts it after the GEMV's, or first with `first`.
 */
export function decodeGrid(c: DecodeConfig, spec: ProjectionSpec): [number, number, number] {
  const [rx, ry] = recomputeGrid(recomputePart(c), spec);
  return [rx * ry + gemvGroups(c, spec), 1, 1];
}

/** The WGSL of a config (check it with {@linkcode decodeProblem}). */
export function decodeWgsl(c: DecodeConfig, spec: ProjectionSpec, dtype: WeightDtype): string {
  if (c.wait !== undefined) return waitingWgsl(c, spec, dtype);
  const part = recomputePart(c);
  const [rx, ry] = recomputeGrid(part, spec);
  return [
    `// ${decodeName(c)}: the fused GEMV and the batched stage recomputed, one dispatch`,
    gemvWgsl(c.gemv, fusedShape(spec), dtype, false),
    recomputeDecls(part, spec, dtype, { x: 4, w: 5, wb: 6, y: 7 }),
    "",
    recomputeBlock(part, spec),
    "",
    `@compute @workgroup_size(${part.threads})`,
    "fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {",
    `  if (wg.x < ${rx * ry}u) {`,
    `    recomputeBlock(li, vec3<u32>(wg.x % ${rx}u, wg.x / ${rx}u, 0u));`,
    "  } else {",
    `    gemvBlock(vec3<u32>(wg.x - ${rx * ry}u, 0u, 0u), li);`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/**
 * `fn waitBlock(t, wg)`: a batched workgroup of the waiting form. Thread 0 polls the counter; the
 * workgroup then copies its input from the fused output or recomputes it, counts itself, and
 * computes its output columns.
 */
function waitBlock(part: RecomputeConfig, spec: ProjectionSpec): string[] {
  const rows = Array.from({ length: part.rows }, (_, r) => r);
  const c = DecodeCounter;
  return [
    "fn waitBlock(t: u32, wg: vec3<u32>) {",
    ...recomputeStart(part, spec),
    "  if (t == 0u) {",
    "    var seen = 0u;",
    "    for (var poll = 0u; poll < R_POLLS; poll++) {",
    `      seen = atomicLoad(&RC[${c.Producers}]);`,
    "      if (seen >= R_PRODUCERS) { break; }",
    "    }",
    "    rReady = select(0u, 1u, seen >= R_PRODUCERS);",
    "  }",
    "  let ready = workgroupUniformLoad(&rReady);",
    "  storageBarrier(); // acquire: the GEMV workgroups' writes, released before they counted",
    "  if (ready == 1u) {",
    "    // 1: the input's columns for every row, as the GEMV part wrote them",
    `    for (var j = t; j < R_KB4 * 4u; j += ${part.threads}u) {`,
    ...rows.map((r) =>
      `      rA[${r}u * R_KB4 + j / 4u][j % 4u] = Y[min(${r}u, m - 1u) * R_FY_STRIDE + column0 + j];`
    ),
    "    }",
    "    workgroupBarrier();",
    "  } else {",
    ...recomputeInput(part, spec, "    "),
    "  }",
    "  if (t == 0u) {",
    `    atomicAdd(&RC[select(${c.Recomputed}u, ${c.Waited}u, ready == 1u)], 1u);`,
    `    if (atomicAdd(&RC[${c.Readers}], 1u) == R_BATCHED - 1u) { // the last reader resets`,
    `      atomicSub(&RC[${c.Producers}], R_PRODUCERS);`,
    `      atomicStore(&RC[${c.Readers}], 0u);`,
    "    }",
    "  }",
    ...recomputeOutput(part, spec),
    "}",
  ];
}

/** The waiting form's WGSL (see the module documentation). */
function waitingWgsl(c: DecodeConfig, spec: ProjectionSpec, dtype: WeightDtype): string {
  const part = recomputePart(c);
  const [rx, ry] = recomputeGrid(part, spec);
  const gemvs = gemvGroups(c, spec);
  return [
    `// ${decodeName(c)}: the fused GEMV, then the batched stage waiting for its inputs`,
    gemvWgsl(c.gemv, fusedShape(spec), dtype, false),
    recomputeDecls(part, spec, dtype, { x: 4, w: 5, wb: 6, y: 7 }),
    `@group(0) @binding(8) var<storage, read_write> RC: array<atomic<u32>, ${DECODE_COUNTERS}>;`,
    `const R_FY_STRIDE = ${fusedWidth(spec)}u; // the fused output's row stride`,
    `const R_PRODUCERS = ${decodeProducers(c, spec)}u; // GEMV workgroups writing batched inputs`,
    `const R_BATCHED = ${rx * ry}u; // batched workgroups`,
    `const R_POLLS = ${c.wait}u;`,
    "var<workgroup> rReady: u32;",
    "",
    ...waitBlock(part, spec),
    "",
    `@compute @workgroup_size(${part.threads})`,
    "fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {",
    // g: the GEMV part's workgroup (with `first`, the batched ones wrap past gemvs).
    `  let g = wg.x - ${c.first ? rx * ry : 0}u;`,
    `  if (g < ${gemvs}u) {`,
    `    gemvBlock(vec3<u32>(${gemvs - 1}u - g, 0u, 0u), li);`,
    "    if (g < R_PRODUCERS) {",
    "      storageBarrier(); // release this workgroup's outputs before counting it",
    `      if (li == 0u) { atomicAdd(&RC[${DecodeCounter.Producers}], 1u); }`,
    "    }",
    "  } else {",
    `    let i = ${c.first ? "wg.x" : `wg.x - ${gemvs}u`};`,
    `    waitBlock(li, vec3<u32>(i % ${rx}u, i / ${rx}u, 0u));`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/** The layout of decode kernels (see the module documentation); `wait` adds the counters. */
export function decodeLayout(device: GPUDevice, wait = false): BufferLayout {
  const read = "read-only-storage";
  return bufferLayout(device, [
    "uniform",
    read,
    read,
    "storage",
    read,
    read,
    read,
    "storage",
    ...(wait ? ["storage" as const] : []),
  ]);
}

/** The buffers a decode kernel binds. */
export interface DecodeBuffers {
  /** 16-byte uniform holding m as its first u32. */
  params: GPUBuffer;
  x: GPUBuffer;
  /** The fused weights. */
  w: GPUBuffer;
  /** The fused output. */
  y: GPUBuffer;
  /** The batched weights. */
  wb: GPUBuffer;
  /** The batched output. */
  yb: GPUBuffer;
  /** The waiting form's counters: {@linkcode DECODE_COUNTERS} u32s, zero before the first use. */
  counters?: GPUBuffer;
}

/** A compiled decode kernel: its bind groups, and its dispatch into a pass. */
export type DecodeKernel = LayoutKernel<DecodeBuffers>;

/**
 * Compiles a config for a spec (uncached; check it first with {@linkcode decodeProblem}).
 *
 * @param prefix Put ahead of the source: the subgroups directive where the device wants it.
 */
export function compileDecode(
  device: GPUDevice,
  c: DecodeConfig,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  prefix = "",
): DecodeKernel {
  const wait = c.wait !== undefined;
  return compileLayoutKernel(
    device,
    decodeLayout(device, wait),
    prefix + decodeWgsl(c, spec, dtype),
    decodeGrid(c, spec),
    // X and the fused weights twice: as the GEMV part and as the recompute part reads them.
    ({ params, x, w, y, wb, yb, counters }: DecodeBuffers) => {
      if (!wait) return [params, x, w, y, x, w, wb, yb];
      if (!counters) throw new TypeError(`${decodeName(c)} binds counters, but none were given`);
      return [params, x, w, y, x, w, wb, yb, counters];
    },
  );
}
