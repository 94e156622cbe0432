/**
 * Probe for NOTES.md's "Plan: the batched stage folded into the split-K reduction": at each
 * bucket, the whole projection as three dispatches (a split-K fused kernel, its reduction, the
 * tuned batched kernel) against two (the same split kernel, then a fold of kernels/fold.ts doing
 * the reduction and the batched stage side by side), and the tuned projection as the cache has
 * it. Each run is chained to the one before through X as in the bench (bench/chain.ts; the link's
 * own time is taken off) with the weights rotated past the L2. The split-K fused configs are the
 * tuned one where it is split-K and the measured default's (dispatch/defaults.ts). Before timing,
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
import { configName, parseConfigName } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { packWeights } from "../kernels/dtype.ts";
import { compileFold, foldName, foldProblem } from "../kernels/fold.ts";
import { kernelGrid } from "../kernels/generate.ts";
import type { CompiledKernel } from "../kernels/gpu.ts";
import {
  compileKernel,
  dispatchKernel,
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

/** The rows of one weight type and bucket: name, us, and the fold's check. */
async function probeBucket(dtype: WeightDtype, m: number): Promise<string[][]> {
  const tuned = cache?.entries[problemKey(spec, dtype, "exact")]?.buckets[String(m)];
  if (!tuned?.batched) throw new Error(`No tuned ${spec.name} ${dtype} entry at m=${m}`);
  const fe = shapeExtents(fused, m), be = shapeExtents(batched, m);
  const splits = [
    ...new Set([tuned.fused.config, configName(defaultConfig(fused, dtype, gpu.caps, m))]),
  ]
    .map(parseConfigName)
    .filter((c) => c.family === "outer" && c.split > 1 && !c.stream);
  const batchedConfig = parseConfigName(tuned.batched.config);
  const params = paramsBuffer(device, m);
  const { x, chain, link } = await chainedInput(session, m, random, 15);
  const yFused = storageBuffer(device, new Float32Array(fe.y), "fused y");
  const yBatched = storageBuffer(device, new Float32Array(be.y), "batched y");
  const scratch = device.createBuffer({
    size: 8 * m * fused.yRowStride * 4,
    usage: GPUBufferUsage.STORAGE,
  });
  const weights = (n: number) =>
    Array.from(
      { length: copies },
      () => storageBuffer(device, packWeights(randomNonZero(n + (n % 2), random), dtype), "w"),
    );
  const fusedW = weights(fe.w), batchedW = weights(be.w);
  const fusedGroups = fusedW.map((w) =>
    kernelBindGroup(device, { params, x, w, y: yFused, scratch })
  );
  const batchedGroups = batchedW.map((w) =>
    kernelBindGroup(device, { params, x: yFused, w, y: yBatched })
  );
  const batchedKernel = await compileKernel(device, batchedConfig, batched, dtype);
  const stage = (kernel: CompiledKernel, groups: typeof fusedGroups): Encode => (pass, rep) =>
    dispatchKernel(pass, kernel, groups[rep % groups.length], m);
  const cases: [string, Encode][] = [];
  const tunedFused = await compileKernel(device, parseConfigName(tuned.fused.config), fused, dtype);
  cases.push([
    `tuned: ${tuned.fused.config} + ${tuned.batched.config}`,
    (pass, rep) => {
      stage(tunedFused, fusedGroups)(pass, rep);
      stage(batchedKernel, batchedGroups)(pass, rep);
    },
  ]);
  const prefix = batchedConfig.family === "gemv" && batchedConfig.subgroup &&
      await wantsSubgroupsDirective(device)
    ? SUBGROUPS_DIRECTIVE
    : "";
  const checks: string[] = [];
  for (const config of splits) {
    if (config.family !== "outer") continue;
    const split = await compileKernel(device, config, fused, dtype);
    const three: Encode = (pass, rep) => {
      stage(split, fusedGroups)(pass, rep);
      stage(batchedKernel, batchedGroups)(pass, rep);
    };
    cases.push([`3 dispatches: ${configName(config)} + ${tuned.batched.config}`, three]);
    const fold = { batched: batchedConfig, split: config.split };
    const problem = foldProblem(fold, spec, dtype, gpu.caps);
    if (problem) {
      checks.push(`${foldName(fold)}: ${problem}`);
      continue;
    }
    const kernel = compileFold(device, fold, spec, dtype, m, prefix);
    const groups = batchedW.map((wb) =>
      kernel.bindGroup({ params, scratch, wb, yb: yBatched, y: yFused })
    );
    const two: Encode = (pass, rep) => {
      pass.setPipeline(split.pipeline);
      pass.setBindGroup(0, fusedGroups[rep % fusedGroups.length].split!);
      pass.dispatchWorkgroups(...kernelGrid(config, fused, m));
      kernel.dispatch(pass, groups[rep % groups.length]);
    };
    const outputs = async (encode: Encode) => {
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      encode(pass, 0);
      pass.end();
      device.queue.submit([encoder.finish()]);
      return [await readBuffer(device, yFused), await readBuffer(device, yBatched)];
    };
    const [want, got] = [await outputs(three), await outputs(two)];
    const diff = Math.max(relativeDiff(want[0], got[0]), relativeDiff(want[1], got[1]));
    checks.push(`${foldName(fold)}: outputs within ${diff.toExponential(1)} of the 3 dispatches'`);
    if (diff > 1e-4) continue; // not timed: it computes something else
    cases.push([`2 dispatches: ${configName(config)} + ${foldName(fold)}`, two]);
  }
  const items = cases.map(([, encode]) => ({
    encode: (pass: GPUComputePassEncoder, rep: number) => {
      encode(pass, rep);
      chain.link(pass, yBatched);
    },
  }));
  const timings = await timeItems(device, items, { warmup: 3, repeats: 15, probe });
  for (const line of checks) console.error(`${dtype} m=${m} ${line}`);
  chain.destroy();
  for (const b of [params, x, yFused, yBatched, scratch, ...fusedW, ...batchedW]) b.destroy();
  return cases.map(([name], i) => [
    dtype,
    String(m),
    (timings[i].medianUs - link.medianUs).toFixed(2),
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
