/**
 * The fold (kernels/fold.ts) on the CPU adapter: after a split-K or stream-K fused kernel leaves
 * its partials in the scratch, one fold dispatch writes the fused output (the reduction part) and
 * the batched output (a batched kernel of each family reading f_a and g_a as sums of the
 * partials); both match the float64 reference for each weight type and row count, nothing past
 * row m is written, and a fold that drops a partial is caught.
 */
import assert from "node:assert/strict";
import type { KernelConfig, OuterConfig } from "../kernels/config.ts";
import { scratchBytes } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import type { FoldBuffers, FoldConfig } from "../kernels/fold.ts";
import {
  compileFold,
  foldGrid,
  foldLayout,
  foldName,
  foldProblem,
  foldWgsl,
} from "../kernels/fold.ts";
import type { LayoutKernel } from "../kernels/gpu.ts";
import {
  compileKernel,
  compileLayoutKernel,
  dispatchPartials,
  kernelBindGroup,
  storageBuffer,
  SUBGROUPS_DIRECTIVE,
  wantsSubgroupsDirective,
} from "../kernels/gpu.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { fusedShape } from "../kernels/problem.ts";
import { openGpu } from "../tuner/gpu_device.ts";
import { loadProblem } from "../tuner/yaml_file.ts";
import { gemvConfig, ROOT, tileConfig } from "./helpers.ts";
import { outputsOff, projectionData } from "./recompute_reference.ts";

const gpu = await openGpu();
const spec = await loadProblem(`${ROOT}problems/tiny.yaml`);

/** An `outer` config: split-K over `split` workgroups, or stream-K over `stream`. */
function outer(split: number, bn = 32, bk = 4, stream = 0): OuterConfig {
  const config: OuterConfig = {
    family: "outer",
    bm: 32,
    bn,
    bk,
    rm: 4,
    rn: 4,
    split,
    half: false,
    double: false,
  };
  return stream ? { ...config, stream } : config;
}

/**
 * Fused stages that leave partials: split-K 2 and 4 ways, stream-K over 7 workgroups (runs that
 * start inside tiles: at m = 37, 6 tiles of 16 slices in runs of 14) and 64 (runs shorter than
 * a tile).
 */
const FUSED: OuterConfig[] = [outer(2), outer(4), outer(1, 32, 4, 7), outer(1, 32, 4, 64)];

/** Batched kernels of each family that fit the tiny problem's 16-wide batched inputs. */
const BATCHED: KernelConfig[] = [
  tileConfig({ bm: 16, bn: 16, bk: 8, rm: 2, rn: 2 }),
  gemvConfig({ nc: 4, cn: 1, lanes: 4, rm: 4, vec: 4 }),
  { ...gemvConfig({ nc: 4, cn: 2, lanes: 2, rm: 2, vec: 2 }), subgroup: gpu.caps.subgroups },
  outer(1, 16, 8),
];

/** Runs the split fused kernel then the fold at m; the first output off its reference, if any. */
async function run(
  fold: FoldConfig,
  dtype: WeightDtype,
  m: number,
  compile: (prefix: string) => LayoutKernel<FoldBuffers>,
): Promise<string | undefined> {
  const seed = 100 * m + fold.fused.split + (fold.fused.stream ?? 0);
  const { data, buffers } = projectionData(gpu.device, spec, dtype, m, seed);
  const split = await compileKernel(gpu.device, fold.fused, fusedShape(spec), dtype);
  const prefix = fold.batched.family === "gemv" && fold.batched.subgroup &&
      await wantsSubgroupsDirective(gpu.device)
    ? SUBGROUPS_DIRECTIVE
    : "";
  const kernel = compile(prefix);
  const size = scratchBytes(fold.fused, fusedShape(spec), m) / 4;
  const scratch = storageBuffer(gpu.device, new Float32Array(size).fill(NaN), "scratch");
  try {
    const encoder = gpu.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    dispatchPartials(pass, split, kernelBindGroup(gpu.device, { ...buffers, scratch }), m);
    kernel.dispatch(pass, kernel.bindGroup({ ...buffers, scratch }));
    pass.end();
    gpu.device.queue.submit([encoder.finish()]);
    return await outputsOff(gpu.device, spec, dtype, m, data, buffers);
  } finally {
    for (const buffer of [scratch, ...Object.values(buffers)]) buffer.destroy();
  }
}

Deno.test("a fold writes the fused and batched outputs of split-K or stream-K partials, for every family", async () => {
  let checked = 0;
  for (const batched of BATCHED) {
    for (const fused of FUSED) {
      for (const dtype of ["f32", "f16"] as const) {
        const fold = { batched, fused };
        if (foldProblem(fold, spec, dtype, gpu.caps)) continue;
        for (const m of [3, 37]) {
          const off = await run(
            fold,
            dtype,
            m,
            (prefix) => compileFold(gpu.device, fold, spec, dtype, m, prefix),
          );
          assert.equal(off, undefined, `${JSON.stringify(fold)} ${dtype} m=${m}`);
          checked++;
        }
      }
    }
  }
  assert.ok(checked >= 24, `checked only ${checked} folds`);
});

Deno.test("a fold that drops the last partial of its batched input is caught", async () => {
  const drops = [
    [FUSED[1], "p < FOLD_SPLIT; p++) { s += P[", "p < FOLD_SPLIT - 1u; p++) { s += P["],
    [FUSED[2], "v <= p.last; v++) { s += P[", "v < p.last; v++) { s += P["],
  ] as const;
  for (const [fused, from, to] of drops) {
    const fold = { batched: BATCHED[0], fused };
    const code = foldWgsl(fold, spec, "f32");
    assert.ok(code.includes(from), `${foldName(fold)} has its partials loop`);
    const off = await run(fold, "f32", 37, () =>
      compileLayoutKernel(
        gpu.device,
        foldLayout(gpu.device),
        code.replace(from, to),
        foldGrid(fold, spec, 37),
        ({ params, scratch, wb, yb, y }) => [params, scratch, wb, yb, y, scratch],
      ));
    assert.match(off ?? "", /^batched Y/, foldName(fold));
  }
});

Deno.test("foldProblem() rejects a fused stage with no partials, an invalid one, and a batched kernel with its own reduction", () => {
  assert.match(
    foldProblem({ batched: BATCHED[0], fused: outer(1) }, spec, "f32", gpu.caps) ?? "",
    /leaves none/,
  );
  assert.match(
    foldProblem({ batched: outer(2), fused: FUSED[1] }, spec, "f32", gpu.caps) ?? "",
    /reduction of its own/,
  );
  assert.match(
    foldProblem({ batched: BATCHED[0], fused: outer(2, 32, 48) }, spec, "f32", gpu.caps) ?? "",
    /power of two/,
    "the fused config is checked too",
  );
  const plain: ProjectionSpec = { name: "plain", k: 64, segments: [{ name: "a", n: 8 }] };
  assert.match(
    foldProblem({ batched: BATCHED[0], fused: FUSED[0] }, plain, "f32", gpu.caps) ?? "",
    /no batched/,
  );
});

Deno.test("dispatchPartials() refuses a kernel that leaves no partials, and a missing scratch", async () => {
  const { buffers } = projectionData(gpu.device, spec, "f32", 3, 1);
  try {
    const plain = await compileKernel(gpu.device, outer(1), fusedShape(spec), "f32");
    const split = await compileKernel(gpu.device, outer(2), fusedShape(spec), "f32");
    const pass = gpu.device.createCommandEncoder().beginComputePass();
    const groups = kernelBindGroup(gpu.device, buffers);
    const refusal = (pattern: RegExp) => (e: unknown) =>
      e instanceof RangeError && pattern.test(e.message);
    assert.throws(() => dispatchPartials(pass, plain, groups, 3), refusal(/leaves none/));
    assert.throws(() => dispatchPartials(pass, split, groups, 3), refusal(/0 bytes of scratch/));
    pass.end();
  } finally {
    for (const buffer of Object.values(buffers)) buffer.destroy();
  }
});
