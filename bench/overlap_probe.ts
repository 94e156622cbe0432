/**
 * Probe for the decode plan in NOTES.md ("a simpler form of the same plan"): does the GPU,
 * through wgpu, overlap the fused GEMV with a following kernel that does not depend on it?
 *
 * With the tuned m = 1 configs of a problem, each timed run is: the fused GEMV (X -> fused Y),
 * then the batched GEMV reading either the fused Y (dependent: today's plan) or a buffer of its
 * own (independent: what a recompute kernel would be), then a chain link from the batched
 * output back to X, so each run waits for the one before as in a model (bench/chain.ts). The
 * link's own time is taken off. If "fused + independent" reads about "fused alone", the two
 * kernels overlap and the recompute plan can hide the batched stage. Then the recompute kernel
 * (kernels/recompute.ts) in a few configs: alone, and after the fused GEMV, which is the whole
 * projection in the recompute plan; and the one-dispatch decode kernel (kernels/decode.ts) with
 * the tuned GEMV widened to 256-1024 threads. The decode and recompute kernels are checked by
 * tests/decode_test.ts and tests/recompute_test.ts, not here. Results: NOTES.md.
 *
 *   source .gpu/setup.sh && deno run --cached-only -A bench/overlap_probe.ts \
 *     [--problem kimi-linear-tp4] [--dtype f16] [--m 1]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { problemKey } from "../cache/schema.ts";
import { parseConfigName } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { packWeights } from "../kernels/dtype.ts";
import type { CompiledKernel, KernelBindGroup, LayoutKernel } from "../kernels/gpu.ts";
import {
  compileKernel,
  dispatchKernel,
  kernelBindGroup,
  paramsBuffer,
  storageBuffer,
} from "../kernels/gpu.ts";
import { batchedShape, fusedShape } from "../kernels/problem.ts";
import type { RecomputeConfig } from "../kernels/recompute.ts";
import { compileRecompute, recomputeName, recomputeProblem } from "../kernels/recompute.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";
import { timeItems } from "../tuner/timing.ts";
import { shapeExtents } from "../tuner/verify.ts";
import { chainedInput, openSession } from "./session.ts";
import type { DecodeConfig } from "../kernels/decode.ts";
import { compileDecode, decodeName, decodeProblem } from "../kernels/decode.ts";
import type { GemvConfig } from "../kernels/config.ts";
import { SUBGROUPS_DIRECTIVE, wantsSubgroupsDirective } from "../kernels/gpu.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    problem: { type: "string", default: "kimi-linear-tp4" },
    dtype: { type: "string", default: "f16" },
    m: { type: "string", default: "1" },
    copies: { type: "string", default: "10" },
  },
});
const session = await openSession(args.problem);
const { gpu, probe, spec, cache } = session;
const device = gpu.device;
const dtype = args.dtype as WeightDtype;
const m = Number(args.m);
const copies = Number(args.copies);
const tuned = cache?.entries[problemKey(spec, dtype, "exact")]?.buckets[String(m)];
if (!tuned?.batched) {
  throw new Error(`No tuned ${spec.name} ${dtype} entry with a batched stage at m=${m}`);
}

const random = seededRandom(11);
const fused = fusedShape(spec), batched = batchedShape(spec)!;
const fe = shapeExtents(fused, m), be = shapeExtents(batched, m);
const params = paramsBuffer(device, m);
const { x, chain, link } = await chainedInput(session, m, random, 15);
const yFused = storageBuffer(device, new Float32Array(fe.y), "fused y");
const ownX = storageBuffer(device, randomNonZero(fe.y, random), "batched x of its own");
const yBatched = storageBuffer(device, new Float32Array(be.y), "batched y");
const weights = (n: number, label: string) =>
  Array.from(
    { length: copies },
    (_, i) => storageBuffer(device, packWeights(randomNonZero(n, random), dtype), `${label} ${i}`),
  );
const groups = (w: GPUBuffer[], input: GPUBuffer, y: GPUBuffer): KernelBindGroup[] =>
  w.map((wi) => kernelBindGroup(device, { params, x: input, w: wi, y }));
const fusedW = weights(fe.w + (fe.w % 2), "fused w");
const fusedGroups = groups(fusedW, x, yFused);
const batchedW = weights(be.w + (be.w % 2), "batched w");
const dependent = groups(batchedW, yFused, yBatched);
const independent = groups(batchedW, ownX, yBatched);
const fusedKernel = await compileKernel(device, parseConfigName(tuned.fused.config), fused, dtype);
const batchedKernel = await compileKernel(
  device,
  parseConfigName(tuned.batched.config),
  batched,
  dtype,
);

// The recompute kernels: X, the fused and the batched weights in, the batched output out.
const recomputes: RecomputeConfig[] = [256, 1024].flatMap((threads) =>
  [8, 32].flatMap((lanes) =>
    [128, 1024].map((cols) => ({ threads, lanes, cols, rows: Math.max(1, m) }))
  )
).filter((c) => recomputeProblem(c, spec, gpu.caps) === undefined);
type Record = (pass: GPUComputePassEncoder, rep: number) => void;
/** Records a kernel with the weight copy of each run, `buffers(i)` being copy i's buffers. */
const rotating = <B>(kernel: LayoutKernel<B>, buffers: (i: number) => B): Record => {
  const bindGroups = fusedW.map((_, i) => kernel.bindGroup(buffers(i)));
  return (pass, rep) => kernel.dispatch(pass, bindGroups[rep % bindGroups.length]);
};
const recomputeRuns = await Promise.all(recomputes.map(async (config) =>
  rotating(
    await compileRecompute(device, config, spec, dtype),
    (i) => ({ params, x, w: fusedW[i], wb: batchedW[i], y: yBatched }),
  )
));

// The one-dispatch decode kernels: the tuned fused GEMV widened to 256-1024 threads, with a
// recompute part beside it.
const tunedGemv = parseConfigName(tuned.fused.config) as GemvConfig;
const prefix = tunedGemv.subgroup && await wantsSubgroupsDirective(device)
  ? SUBGROUPS_DIRECTIVE
  : "";
const decodes: DecodeConfig[] = [256, 512, 1024].flatMap((threads) =>
  [8, 32].flatMap((lanes) =>
    [128, 512].map((cols) => ({
      gemv: { ...tunedGemv, nc: threads / tunedGemv.lanes, rm: Math.max(tunedGemv.rm, m) },
      lanes,
      cols,
    }))
  )
).filter((c) => decodeProblem(c, spec, dtype, gpu.caps) === undefined);
const decodeRuns = await Promise.all(decodes.map(async (config) =>
  rotating(
    await compileDecode(device, config, spec, dtype, prefix),
    (i) => ({ params, x, w: fusedW[i], y: yFused, wb: batchedW[i], yb: yBatched }),
  )
));

/** A stage: a kernel and its bind groups, or a function that records the recompute kernel. */
type Step =
  | [CompiledKernel, KernelBindGroup[]]
  | Record;
const run = (steps: Step[], last: GPUBuffer) => ({
  encode: (pass: GPUComputePassEncoder, rep: number) => {
    for (const step of steps) {
      if (typeof step === "function") step(pass, rep);
      else dispatchKernel(pass, step[0], step[1][rep % step[1].length], m);
    }
    chain.link(pass, last);
  },
});
const cases: [string, ReturnType<typeof run>][] = [
  ["fused alone", run([[fusedKernel, fusedGroups]], yFused)],
  ["batched alone", run([[batchedKernel, independent]], yBatched)],
  [
    "fused + dependent batched",
    run([[fusedKernel, fusedGroups], [batchedKernel, dependent]], yBatched),
  ],
  [
    "fused + independent batched",
    run([[fusedKernel, fusedGroups], [batchedKernel, independent]], yBatched),
  ],
  ...recomputes.flatMap((config, i): [string, ReturnType<typeof run>][] => [
    [`${recomputeName(config)} alone`, run([recomputeRuns[i]], yBatched)],
    [
      `fused + ${recomputeName(config)}`,
      run([[fusedKernel, fusedGroups], recomputeRuns[i]], yBatched),
    ],
  ]),
  ...decodes.map((config, i): [string, ReturnType<typeof run>] => [
    decodeName(config),
    run([decodeRuns[i]], yBatched),
  ]),
];
const timing = { warmup: 3, repeats: 15, probe };
const timings = await timeItems(device, cases.map(([, item]) => item), timing);
const configs = `${tuned.fused.config} + ${tuned.batched.config}`;
console.log(`${spec.name} ${dtype} m=${m}: ${configs}`);
console.log(`chain link ${link.medianUs.toFixed(2)} us, taken off`);
cases.forEach(([name], i) => {
  const t = timings[i];
  console.log(
    `${name.padEnd(50)} ${(t.medianUs - link.medianUs).toFixed(2)} us (spread ${
      t.spreadPct.toFixed(1)
    }%)`,
  );
});
await session.close();
chain.destroy();
device.destroy();
