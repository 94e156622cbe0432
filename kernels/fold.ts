/**
 * The batched stage folded into the fused stage's reduction: one dispatch instead of two after a
 * split-K or stream-K fused GEMM (issue 9; NOTES.md, "Plan: the batched stage folded into the
 * split-K reduction"). Its first workgroups run a batched kernel of any family whose X loads are
 * rewritten to add the fused stage's partials of f_a and g_a straight from the scratch; the rest
 * add every fused output's partials into the fused Y, as the reduction does (kernels/reduce.ts).
 * Neither part reads what the other writes, so no workgroup waits for another.
 *
 * Bindings (group 0): 0 = uniform m, 1 = the split-K scratch (read as the batched kernel's X
 * vectors), 2 = the batched weights, 3 = the batched output, 4 = the fused output, 5 = the
 * scratch again (read as floats by the reduction part). Not a family of the tuner's space:
 * `bench/fold_probe.ts` times it against the two dispatches it replaces.
 *
 * @module
 */
import type { DeviceCaps, KernelConfig, OuterConfig } from "./config.ts";
import { configName, configProblem, workgroupThreads } from "./config.ts";
import type { WeightDtype } from "./dtype.ts";
import type { BufferLayout, LayoutKernel } from "./gpu.ts";
import { bufferLayout, compileLayoutKernel } from "./gpu.ts";
import { kernelGrid, kernelWgsl } from "./generate.ts";
import type { ProjectionSpec } from "./problem.ts";
import { batchedShape, fusedShape } from "./problem.ts";

/** Fused outputs each reduction thread adds, at most (sets the reduction part's workgroups). */
const PER_THREAD = 4;

/** A fold: the batched stage's config, and the fused stage's, whose partials it reads. */
export interface FoldConfig {
  batched: KernelConfig;
  /** The fused stage: a split-K or stream-K `outer` config. */
  fused: OuterConfig;
}

/**
 * A fold's name, for example
 * `fold-tile-bm32-bn32-bk32-rm4-rn2-v4-of-outer-bm64-bn64-bk16-rm8-rn4-s8`.
 */
export function foldName(c: FoldConfig): string {
  return `fold-${configName(c.batched)}-of-${configName(c.fused)}`;
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
  const hasPartials = (k: KernelConfig) => k.family === "outer" && (k.split > 1 || !!k.stream);
  if (!hasPartials(c.fused)) {
    return `a fold reads split-K or stream-K partials, and ${configName(c.fused)} leaves none`;
  }
  if (hasPartials(c.batched)) return "the folded batched kernel cannot have a reduction of its own";
  return configProblem(c.fused, fusedShape(spec), dtype, caps) ??
    configProblem(c.batched, shape, dtype, caps);
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

/**
 * The WGSL that adds the fused stage's partials: `loadX`, an X vector of the batched stage
 * (`xType`, `xWidth` floats), and `fusedAt`, one fused output. Split-K leaves `split` slabs of m
 * fused rows; stream-K leaves each tile's slab, then one partial slab per workgroup whose run
 * starts inside a tile (kernels/reduce.ts reads them the same way).
 */
function partialSums(fused: OuterConfig, k: number, xType: string, xWidth: number): string[] {
  if (!fused.stream) {
    return [
      `const FOLD_SPLIT = ${fused.split}u; // partial slabs of m fused rows in the scratch`,
      "",
      `fn loadX(i: u32) -> ${xType} {`,
      "  let slab = params.m * X_STRIDE;",
      "  var s = P[i];",
      "  for (var p = 1u; p < FOLD_SPLIT; p++) { s += P[i + p * slab]; }",
      "  return s;",
      "}",
      "",
      "fn fusedAt(at: u32) -> f32 {",
      "  let slab = params.m * F_STRIDE;",
      "  var s = PS[at];",
      "  for (var p = 1u; p < FOLD_SPLIT; p++) { s += PS[at + p * slab]; }",
      "  return s;",
      "}",
    ];
  }
  return [
    `const FBM = ${fused.bm}u; // the fused stage's tile rows`,
    `const FBN = ${fused.bn}u; // and columns`,
    `const SLICES = ${k / fused.bk}u; // k slices per tile`,
    `const GROUPS = ${fused.stream}u; // stream-K workgroups`,
    `const XW = ${xWidth}u; // floats per X vector`,
    "",
    "// Where a fused output's partials are: its tile's slab at `at`, then the partial slabs",
    "// `tiles + v` for v from `first` to `last`, at the same element `e`.",
    "struct Partials { at: u32, e: u32, first: u32, last: u32, tiles: u32 }",
    "",
    "fn partialsOf(flat: u32) -> Partials {",
    "  let rowTiles = (params.m + FBM - 1u) / FBM;",
    "  let colTiles = (FN + FBN - 1u) / FBN;",
    "  let tiles = rowTiles * colTiles;",
    "  let total = tiles * SLICES;",
    "  let chunk = (total + GROUPS - 1u) / GROUPS;",
    "  let r = flat / F_STRIDE;",
    "  let c = flat % F_STRIDE;",
    "  let tile = r / FBM * colTiles + c / FBN;",
    "  let e = r % FBM * FBN + c % FBN;",
    "  let last = (min(tile * SLICES + SLICES, total) - 1u) / chunk;",
    "  return Partials(tile * FBM * FBN + e, e, tile * SLICES / chunk + 1u, last, tiles);",
    "}",
    "",
    `fn loadX(i: u32) -> ${xType} {`,
    "  let p = partialsOf(i * XW);",
    "  var s = P[p.at / XW];",
    "  for (var v = p.first; v <= p.last; v++) { s += P[((p.tiles + v) * FBM * FBN + p.e) / XW]; }",
    "  return s;",
    "}",
    "",
    "fn fusedAt(at: u32) -> f32 {",
    "  let p = partialsOf(at);",
    "  var s = PS[p.at];",
    "  for (var v = p.first; v <= p.last; v++) { s += PS[(p.tiles + v) * FBM * FBN + p.e]; }",
    "  return s;",
    "}",
  ];
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
  const xWidth = Number(/^vec(\d)</.exec(xType)?.[1] ?? 1); // f32, vec2<f32> or vec4<f32>
  return [
    `// ${foldName(c)}: the batched stage reading the fused stage's partials, and the fused`,
    "// stage's reduction, in one dispatch",
    `@group(0) @binding(1) var<storage, read> P: array<${xType}>;`,
    "@group(0) @binding(4) var<storage, read_write> F: array<f32>;",
    "@group(0) @binding(5) var<storage, read> PS: array<f32>;",
    `const FN = ${fused.n}u; // fused output columns`,
    `const F_STRIDE = ${fused.yRowStride}u;`,
    `const BX = ${bx}u; // workgroups along x of the batched part`,
    `const THREADS = ${workgroupThreads(c.batched)}u;`,
    "",
    ...partialSums(c.fused, fused.k, xType, xWidth),
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
    "  let count = (groups.x - BX) * groups.y * groups.z * THREADS;",
    "  let first = ((wg.z * groups.y + wg.y) * (groups.x - BX) + wg.x - BX) * THREADS + li;",
    "  for (var e = first; e < params.m * FN; e += count) {",
    "    let at = e / FN * F_STRIDE + e % FN;",
    "    F[at] = fusedAt(at);",
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
