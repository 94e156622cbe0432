/**
 * Probe for NOTES.md's "Plan: the batched stage folded into the split-K reduction": at each
 * bucket, the whole projection as three dispatches (a split-K or stream-K fused kernel, its
 * reduction, the tuned batched kernel) against two (the same fused kernel, then a fold of
 * kernels/fold.ts doing the reduction and the batched stage side by side, with the tuned batched
 * config and its runner-up), and the tuned projection as the cache has it. Each run is chained to
 * the one before through X as in the bench (bench/chain.ts; the link's own time is taken off)
 * with the weights rotated past the L2. The fused configs are the tuned one and the measured
 * default's (dispatch/defaults.ts), where they leave partials to fold. Before timing,
 * each fold's outputs are compared with the three-dispatch plan's on the same data; a fold that
 * differs is reported and not timed (tests/fold_test.ts checks folds against the float64
 * reference on the CPU adapter).
 *
 *   source .gpu/setup.sh && deno run --cached-only -A bench/fold_probe.ts \
 *     [--problem kimi-linear-tp4] [--dtype f32,f16] [--buckets 32,64,128,256]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { problemKey } from "../cache/schema.ts";
import { defaultConfig } from "../dispatch/defaults.ts";
import type { KernelConfig, OuterConfig } from "../kernels/config.ts";
import { configName, parseConfigName, scratchBytes } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { packWeights } from "../kernels/dtype.ts";
import { compileFold, foldName, foldProblem } from "../kernels/fold.ts";
import type { CompiledKernel } from "../kernels/gpu.ts";
import {
  compileKernel,
  dispatchKernel,
  dispatchPartials,
  kernelBindGroup,
  paramsBuffer,
  readBuffer,
  storageBuffer,
  SUBGROUPS_DIRECTIVE,
  wantsSubgroupsDirective,
} from "../kernels/gpu.ts";
import { batchedShape, fusedShape } from "../kernels/problem.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";
import { formatTable } from "../tuner/report.ts";
import { timeItems } from "../tuner/timing.ts";
import { shapeExtents } from "../tuner/verify.ts";
import { chainedInput, openSession } from "./session.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    problem: { type: "string", default: "kimi-linear-tp4" },
    dtype: { type: "string", default: "f32,f16" },
    buckets: { type: "string", default: "32,64,128,256" },
    copies: { type: "string", default: "10" },
  },
});
const session = await openSession(args.problem);
const { gpu, probe, spec, cache } = session;
const device = gpu.device;
const copies = Number(args.copies);
const fused = fusedShape(spec), batched = batchedShape(spec)!;
const random = seededRandom(17);
type Encode = (pass: GPUComputePassEncoder, rep: number) => void;

/** Largest relative difference between two outputs (over the larger's largest magnitude). */
function relativeDiff(a: Float32Array, b: Float32Array): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(a[i]), Math.abs(b[i]));
  }
  return Number.isFinite(diff) ? diff / scale : Infinity;
}

/**
 * A bucket's buffers: X chained through the batched output, the outputs, a scratch of
 * `scratchBytes`, and the weight copies.
 */
async function bucketBuffers(dtype: WeightDtype, m: number, scratchBytes: number) {
  const fe = shapeExtents(fused, m), be = shapeExtents(batched, m);
  const params = paramsBuffer(device, m);
  const { x, chain, link } = await chainedInput(session, m, random, 15);
  const yFused = storageBuffer(device, new Float32Array(fe.y), "fused y");
  const yBatched = storageBuffer(device, new Float32Array(be.y), "batched y");
  const scratch = device.createBuffer({ size: scratchBytes, usage: GPUBufferUsage.STORAGE });
  const weights = (n: number) =>
    Array.from(
      { length: copies },
      () => storageBuffer(device, packWeights(randomNonZero(n + (n % 2), random), dtype), "w"),
    );
  const fusedW = weights(fe.w), batchedW = weights(be.w);
  return {
    params,
    chain,
    link,
    yFused,
    yBatched,
    scratch,
    batchedW,
    fusedGroups: fusedW.map((w) => kernelBindGroup(device, { params, x, w, y: yFused, scratch })),
    batchedGroups: batchedW.map((w) =>
      kernelBindGroup(device, { params, x: yFused, w, y: yBatched })
    ),
    destroy() {
      chain.destroy();
      for (const b of [params, x, yFused, yBatched, scratch, ...fusedW, ...batchedW]) b.destroy();
    },
  };
}
type Buffers = Awaited<ReturnType<typeof bucketBuffers>>;

/** The fused stage (and its reduction) then the batched stage, with the weight copy of each run. */
const stages =
  (f: CompiledKernel, bk: CompiledKernel, b: Buffers, m: number): Encode => (pass, rep) => {
    dispatchKernel(pass, f, b.fusedGroups[rep % b.fusedGroups.length], m);
    dispatchKernel(pass, bk, b.batchedGroups[rep % b.batchedGroups.length], m);
  };

/** One run of each plan, then the fused and batched outputs. */
async function outputsOf(encode: Encode, b: Buffers): Promise<Float32Array[]> {
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  encode(pass, 0);
  pass.end();
  device.queue.submit([encoder.finish()]);
  return [await readBuffer(device, b.yFused), await readBuffer(device, b.yBatched)];
}

/**
 * A split-K or stream-K fused config's three-dispatch plan (with the tuned batched kernel, the
 * first) and its fold with each batched kernel, with the folds' checks.
 */
async function partialCases(
  config: OuterConfig,
  batchedKernels: CompiledKernel[],
  dtype: WeightDtype,
  m: number,
  b: Buffers,
): Promise<{ cases: [string, Encode][]; checks: string[] }> {
  const split = await compileKernel(device, config, fused, dtype);
  const three = stages(split, batchedKernels[0], b, m);
  const cases: [string, Encode][] = [
    [`3 dispatches: ${configName(config)} + ${batchedKernels[0].name}`, three],
  ];
  const checks: string[] = [];
  for (const batchedKernel of batchedKernels) {
    const fold = await foldCase(split, batchedKernel.config, three, dtype, m, b);
    checks.push(fold.check);
    const label = `2 dispatches: ${configName(config)} + fold of ${batchedKernel.name}`;
    if (fold.encode) cases.push([label, fold.encode]);
  }
  return { cases, checks };
}

/**
 * The fused kernel then the fold of a batched config, if the fold is valid and its outputs are
 * the three-dispatch plan's; its check either way.
 */
async function foldCase(
  split: CompiledKernel,
  batchedConfig: KernelConfig,
  three: Encode,
  dtype: WeightDtype,
  m: number,
  b: Buffers,
): Promise<{ name: string; check: string; encode?: Encode }> {
  const fold = { batched: batchedConfig, fused: split.config as OuterConfig };
  const name = foldName(fold);
  const problem = foldProblem(fold, spec, dtype, gpu.caps);
  if (problem) return { name, check: `${name}: ${problem}` };
  const usesSubgroups = fold.batched.family === "gemv" && fold.batched.subgroup;
  const prefix = usesSubgroups && await wantsSubgroupsDirective(device) ? SUBGROUPS_DIRECTIVE : "";
  const kernel = compileFold(device, fold, spec, dtype, m, prefix);
  const groups = b.batchedW.map((wb) =>
    kernel.bindGroup({ params: b.params, scratch: b.scratch, wb, yb: b.yBatched, y: b.yFused })
  );
  const two: Encode = (pass, rep) => {
    dispatchPartials(pass, split, b.fusedGroups[rep % b.fusedGroups.length], m);
    kernel.dispatch(pass, groups[rep % groups.length]);
  };
  const [want, got] = [await outputsOf(three, b), await outputsOf(two, b)];
  const diff = Math.max(relativeDiff(want[0], got[0]), relativeDiff(want[1], got[1]));
  const check = `${name}: outputs within ${diff.toExponential(1)} of the 3 dispatches'`;
  return diff > 1e-4 ? { name, check } : { name, check, encode: two }; // else not timed
}

/** The rows of one weight type and bucket: the tuned plan, then each split config's two plans. */
async function probeBucket(dtype: WeightDtype, m: number): Promise<string[][]> {
  const tuned = cache?.entries[problemKey(spec, dtype, "exact")]?.buckets[String(m)];
  if (!tuned?.batched) throw new Error(`No tuned ${spec.name} ${dtype} entry at m=${m}`);
  // The tuned fused config and the default's, where they leave partials to fold.
  const names = new Set([tuned.fused.config, configName(defaultConfig(fused, dtype, gpu.caps, m))]);
  const partials = [...names].map(parseConfigName).filter((c): c is OuterConfig =>
    c.family === "outer" && (c.split > 1 || !!c.stream)
  );
  const scratch = Math.max(4, ...partials.map((c) => scratchBytes(c, fused, m)));
  const b = await bucketBuffers(dtype, m, scratch);
  const compile = (name: string, shape: typeof fused) =>
    compileKernel(device, parseConfigName(name), shape, dtype);
  // The tuned batched config first, then its runner-up: the fold changes what X costs.
  const batchedNames = [tuned.batched.config, tuned.batched.runnerUp].filter((n) => n !== null);
  const batchedKernels = await Promise.all(batchedNames.map((n) => compile(n, batched)));
  const tunedFused = await compile(tuned.fused.config, fused);
  const cases: [string, Encode][] = [[
    `tuned: ${tuned.fused.config} + ${tuned.batched.config}`,
    stages(tunedFused, batchedKernels[0], b, m),
  ]];
  for (const config of partials) {
    const split = await partialCases(config, batchedKernels, dtype, m, b);
    cases.push(...split.cases);
    for (const check of split.checks) console.error(`${dtype} m=${m} ${check}`);
  }
  const items = cases.map(([, encode]) => ({
    encode: (pass: GPUComputePassEncoder, rep: number) => {
      encode(pass, rep);
      b.chain.link(pass, b.yBatched);
    },
  }));
  const timings = await timeItems(device, items, { warmup: 3, repeats: 15, probe });
  b.destroy();
  return cases.map(([name], i) => [
    dtype,
    String(m),
    (timings[i].medianUs - b.link.medianUs).toFixed(2),
    timings[i].spreadPct.toFixed(1),
    name,
  ]);
}

const rows: string[][] = [];
for (const dtype of args.dtype.split(",") as WeightDtype[]) {
  for (const m of args.buckets.split(",").map(Number)) rows.push(...await probeBucket(dtype, m));
}
console.log(formatTable(["dtype", "m", "us", "spread %", "plan"], rows));
await session.close();
device.destroy();
