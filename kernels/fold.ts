/**
 * The batched stage folded into the fused stage's split-K reduction: one dispatch instead of two
 * after a split-K fused GEMM (issue 9; NOTES.md, "Plan: the batched stage folded into the
 * split-K reduction"). Its first workgroups run a batched kernel of any family whose X loads are
 * rewritten to add the fused stage's partial slabs of f_a and g_a straight from the scratch; the
 * rest add every fused output's partials into the fused Y, as the reduction does. Neither part
 * reads what the other writes, so no workgroup waits for another.
 *
 * Bindings (group 0): 0 = uniform m, 1 = the split-K scratch (read as the batched kernel's X
 * vectors), 2 = the batched weights, 3 = the batched output, 4 = the fused output, 5 = the
 * scratch again (read as floats by the reduction part). Not a family of the tuner's space:
 * `bench/fold_probe.ts` times it against the two dispatches it replaces.
 *
 * @module
 */
import type { DeviceCaps, KernelConfig } from "./config.ts";
import { configName, configProblem, workgroupThreads } from "./config.ts";
import type { WeightDtype } from "./dtype.ts";
import type { BufferLayout, LayoutKernel } from "./gpu.ts";
import { bufferLayout, compileLayoutKernel } from "./gpu.ts";
import { kernelGrid, kernelWgsl } from "./generate.ts";
import type { ProjectionSpec } from "./problem.ts";
import { batchedShape, fusedShape } from "./problem.ts";

/** Fused outputs each reduction thread adds, at most (sets the reduction part's workgroups). */
const PER_THREAD = 4;

/** A fold: the batched stage's config, and the fused stage's split whose partials it reads. */
export interface FoldConfig {
  batched: KernelConfig;
  /** The fused stage's split-K factor: partial slabs in the scratch. */
  split: number;
}

/** A fold's name, for example `fold-s8-tile-bm32-bn32-bk32-rm4-rn2-v4`. */
export function foldName(c: FoldConfig): string {
  return `fold-s${c.split}-${configName(c.batched)}`;
}

/** Why a fold cannot run a spec on a device, or undefined if it can. */
export function foldProblem(
  c: FoldConfig,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  caps: DeviceCaps,
): string | undefined {
  const shape = batchedShape(spec);
  if (!shape) return `${spec.name} has no batched stage`;
  if (!Number.isInteger(c.split) || c.split < 2) {
    return `a fold reads split-K partials: split ${c.split} must be an integer of at least 2`;
  }
  if (c.batched.family === "outer" && (c.batched.split > 1 || c.batched.stream)) {
    return "the folded batched kernel cannot have a reduction of its own";
  }
  return configProblem(c.batched, shape, dtype, caps);
}

/**
 * Workgroups at m rows: the batched kernel's grid, widened by the reduction part's workgroups
 * (about {@linkcode PER_THREAD} fused outputs per thread) along x.
 */
export function foldGrid(c: FoldConfig, spec: ProjectionSpec, m: number): [number, number, number] {
  const [bx, by, bz] = kernelGrid(c.batched, batchedShape(spec)!, m);
  const threads = workgroupThreads(c.batched) * by * bz * PER_THREAD;
  return [bx + Math.max(1, Math.ceil((m * fusedShape(spec).n) / threads)), by, bz];
}

/** `code` with every `X[i]` read as `loadX(i)`, comments left as they are. */
function readXThroughLoader(code: string): string {
  return code.split("\n").map((line) => {
    const comment = line.indexOf("//");
    if (comment < 0) return loaderReads(line);
    return loaderReads(line.slice(0, comment)) + line.slice(comment);
  }).join("\n");
}

/** One line's code with every `X[i]` read as `loadX(i)`. */
function loaderReads(code: string): string {
  let out = "";
  let at = 0;
  for (const match of code.matchAll(/(?<![A-Za-z0-9_])X\[/g)) {
    if (match.index! < at) continue; // inside an index already rewritten
    let depth = 1, end = match.index! + 2;
    for (; depth > 0; end++) {
      if (end >= code.length) throw new SyntaxError("Unbalanced brackets after X[");
      if (code[end] === "[") depth++;
      if (code[end] === "]") depth--;
    }
    const index = loaderReads(code.slice(match.index! + 2, end - 1));
    out += `${code.slice(at, match.index)}loadX(${index})`;
    at = end;
  }
  return out + code.slice(at);
}

/** The batched kernel as a plain function `batchedMain`, its workgroup size and parameters. */
function batchedFunction(code: string): { code: string; size: string; args: string[] } {
  const entry = /@compute @workgroup_size\(([^)]*)\)\s*fn main\(([^{]*)\)\s*\{/.exec(code);
  if (!entry) throw new SyntaxError("No compute entry point `main` in the batched kernel");
  const params = entry[2].replace(/@builtin\([a-z_]+\)\s*/g, "");
  const args = [...params.matchAll(/(\w+)\s*:/g)].map((m) => m[1]);
  const header = `fn batchedMain(${params}) {`;
  return {
    code: code.slice(0, entry.index) + header + code.slice(entry.index + entry[0].length),
    size: entry[1],
    args,
  };
}

/** The WGSL of a fold (check it with {@linkcode foldProblem}). */
export function foldWgsl(c: FoldConfig, spec: ProjectionSpec, dtype: WeightDtype): string {
  const shape = batchedShape(spec)!, fused = fusedShape(spec);
  const binding = /@group\(0\) @binding\(1\) var<storage, read> X: array<(.+)>;/;
  const source = kernelWgsl(c.batched, shape, dtype);
  const xType = binding.exec(source)?.[1];
  if (!xType) throw new SyntaxError("No X binding in the batched kernel");
  const batched = batchedFunction(readXThroughLoader(source.replace(binding, "")));
  const [bx] = kernelGrid(c.batched, shape, 1);
  return [
    `// ${foldName(c)}: the batched stage reading the fused stage's ${c.split} partials, and`,
    "// the fused stage's reduction, in one dispatch",
    `@group(0) @binding(1) var<storage, read> P: array<${xType}>;`,
    "@group(0) @binding(4) var<storage, read_write> F: array<f32>;",
    "@group(0) @binding(5) var<storage, read> PS: array<f32>;",
    `const FOLD_SPLIT = ${c.split}u; // partial slabs of m fused rows in the scratch`,
    `const FN = ${fused.n}u; // fused output columns`,
    `const F_STRIDE = ${fused.yRowStride}u;`,
    `const BX = ${bx}u; // workgroups along x of the batched part`,
    `const THREADS = ${workgroupThreads(c.batched)}u;`,
    "",
    "// An X vector of the batched stage: the sum of the fused stage's partials there.",
    `fn loadX(i: u32) -> ${xType} {`,
    "  let slab = params.m * X_STRIDE;",
    "  var s = P[i];",
    "  for (var p = 1u; p < FOLD_SPLIT; p++) { s += P[i + p * slab]; }",
    "  return s;",
    "}",
    "",
    batched.code,
    "",
    `@compute @workgroup_size(${batched.size})`,
    "fn main(",
    "  @builtin(workgroup_id) wg: vec3<u32>,",
    "  @builtin(local_invocation_id) lid: vec3<u32>,",
    "  @builtin(local_invocation_index) li: u32,",
    "  @builtin(num_workgroups) groups: vec3<u32>,",
    ") {",
    `  if (wg.x < BX) { batchedMain(${batched.args.join(", ")}); return; }`,
    "  // The reduction part: every fused output, the sum of its partials.",
    "  let m = params.m;",
    "  let slab = m * F_STRIDE;",
    "  let count = (groups.x - BX) * groups.y * groups.z * THREADS;",
    "  let first = ((wg.z * groups.y + wg.y) * (groups.x - BX) + wg.x - BX) * THREADS + li;",
    "  for (var e = first; e < m * FN; e += count) {",
    "    let at = e / FN * F_STRIDE + e % FN;",
    "    var sum = PS[at];",
    "    for (var p = 1u; p < FOLD_SPLIT; p++) { sum += PS[at + p * slab]; }",
    "    F[at] = sum;",
    "  }",
    "}",
    "",
  ].join("\n");
}

/** The layout of fold kernels: see the module documentation. */
export function foldLayout(device: GPUDevice): BufferLayout {
  const read = "read-only-storage";
  return bufferLayout(device, ["uniform", read, read, "storage", "storage", read]);
}

/** The buffers a fold binds. */
export interface FoldBuffers {
  /** 16-byte uniform holding m as its first u32. */
  params: GPUBuffer;
  /** The split-K scratch the fused stage's split kernel wrote. */
  scratch: GPUBuffer;
  /** The batched weights. */
  wb: GPUBuffer;
  /** The batched output. */
  yb: GPUBuffer;
  /** The fused output. */
  y: GPUBuffer;
}

/**
 * Compiles a fold for m rows (uncached; check it first with {@linkcode foldProblem}).
 *
 * @param prefix Put ahead of the source: the subgroups directive where the device wants it.
 */
export function compileFold(
  device: GPUDevice,
  c: FoldConfig,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  m: number,
  prefix = "",
): LayoutKernel<FoldBuffers> {
  return compileLayoutKernel(
    device,
    foldLayout(device),
    prefix + foldWgsl(c, spec, dtype),
    foldGrid(c, spec, m),
    // The scratch twice: as the batched part's X vectors and as the reduction part's floats.
    ({ params, scratch, wb, yb, y }: FoldBuffers) => [params, scratch, wb, yb, y, scratch],
  );
}
