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
 * @module
 */
import type { DeviceCaps, GemvConfig } from "./config.ts";
import { configName, configProblem } from "./config.ts";
import type { WeightDtype } from "./dtype.ts";
import { gemvWgsl } from "./gemv.ts";
import type { BufferLayout, LayoutKernel } from "./gpu.ts";
import { bufferLayout, compileLayoutKernel } from "./gpu.ts";
import type { ProjectionSpec } from "./problem.ts";
import { fusedShape } from "./problem.ts";
import type { RecomputeConfig } from "./recompute.ts";
import { recomputeBlock, recomputeDecls, recomputeGrid, recomputeProblem } from "./recompute.ts";

/** A one-dispatch decode kernel's knobs: its GEMV part, and its recompute part's own. */
export interface DecodeConfig {
  gemv: GemvConfig;
  /** Threads per recomputed input column (the recompute part's `lanes`). */
  lanes: number;
  /** Batched output columns per recompute workgroup. */
  cols: number;
}

/** The recompute part of a decode config, as a config of kernels/recompute.ts. */
export function recomputePart(c: DecodeConfig): RecomputeConfig {
  return { threads: c.gemv.nc * c.gemv.lanes, lanes: c.lanes, cols: c.cols, rows: c.gemv.rm };
}

/** A config's name, for example `decode-l8-c128-gemv-nc8-cn1-l32-rm1-v4-sg`. */
export function decodeName(c: DecodeConfig): string {
  return `decode-l${c.lanes}-c${c.cols}-${configName(c.gemv)}`;
}

/** Why a config cannot run a spec on a device, or undefined if it can. */
export function decodeProblem(
  c: DecodeConfig,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  caps: DeviceCaps,
): string | undefined {
  if ((c.gemv.rw ?? 1) > 1) return "a decode GEMV has one row group (rw 1)";
  if (c.gemv.xs) return "a decode GEMV reads X from storage (no xs)";
  return configProblem(c.gemv, fusedShape(spec), dtype, caps) ??
    recomputeProblem(recomputePart(c), spec, caps);
}

/** Workgroups: the recompute part's first (they run longest), then the GEMV's columns. */
export function decodeGrid(c: DecodeConfig, spec: ProjectionSpec): [number, number, number] {
  const [rx, ry] = recomputeGrid(recomputePart(c), spec);
  const shape = fusedShape(spec);
  return [rx * ry + Math.ceil(shape.n / (c.gemv.nc * c.gemv.cn)), 1, 1];
}

/** The WGSL of a config (check it with {@linkcode decodeProblem}). */
export function decodeWgsl(c: DecodeConfig, spec: ProjectionSpec, dtype: WeightDtype): string {
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

/** The layout of decode kernels: see the module documentation. */
export function decodeLayout(device: GPUDevice): BufferLayout {
  const read = "read-only-storage";
  return bufferLayout(device, ["uniform", read, read, "storage", read, read, read, "storage"]);
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
}

/** A compiled decode kernel: its bind groups, and its dispatch into a pass. */
export type DecodeKernel = LayoutKernel<DecodeBuffers>;

/**
 * Compiles a config for a spec (uncached; check it first with {@linkcode decodeProblem}).
 *
 * @param prefix Put ahead of the source: the subgroups directive where the device wants it.
 * @throws {KernelCompileError} With the compiler's messages.
 */
export function compileDecode(
  device: GPUDevice,
  c: DecodeConfig,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  prefix = "",
): Promise<DecodeKernel> {
  return compileLayoutKernel(
    device,
    decodeLayout(device),
    decodeName(c),
    prefix + decodeWgsl(c, spec, dtype),
    decodeGrid(c, spec),
    // X and the fused weights twice: as the GEMV part and as the recompute part reads them.
    ({ params, x, w, y, wb, yb }: DecodeBuffers) => [params, x, w, y, x, w, wb, yb],
  );
}
