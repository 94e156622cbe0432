/**
 * Compiles one kernel config on this GPU and exits, so that the driver's shader cache holds that
 * pipeline alone: `bench/gpu_sass.sh` runs it once per config with its own cache folder, then
 * unpacks and disassembles what the NVIDIA driver stored. Prints the config it compiled.
 *
 * With `--runs N` it then dispatches the kernel N times over m rows of random data, each run in
 * a submit of its own, and waits for them: nothing else runs on the GPU, so a profiler that
 * wraps the process sees that kernel's dispatches alone (a split-K or stream-K kernel's reduction
 * follows each of its runs). Nsight Compute is not one: it profiled none of them on the H100
 * (NOTES.md, 2026-12-07). The output is not checked here; the
 * kernels are the tuner's, checked by tests/kernels_test.ts.
 *
 *   deno run -A bench/sass_compile.ts <config> [--problem kimi-linear-tp4] [--dtype f16] [--stage fused]
 *     [--runs 0] [--m 4096]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { configProblem, parseConfigName, scratchBytes } from "../kernels/config.ts";
import { packWeights, parseWeightDtype, type WeightDtype } from "../kernels/dtype.ts";
import type { CompiledKernel } from "../kernels/gpu.ts";
import {
  compileKernel,
  dispatchKernel,
  kernelBindGroup,
  paramsBuffer,
  storageBuffer,
} from "../kernels/gpu.ts";
import { stageShape } from "../kernels/problem.ts";
import { openGpu } from "../tuner/gpu_device.ts";
import { findProblem } from "../tuner/problems.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";
import { shapeExtents } from "../tuner/verify.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    problem: { type: "string", default: "kimi-linear-tp4" },
    dtype: { type: "string", default: "f16" },
    stage: { type: "string", default: "fused" },
    runs: { type: "string", default: "0" },
    m: { type: "string", default: "4096" },
  },
});
if (positionals.length !== 1) {
  console.error(
    "usage: deno run -A bench/sass_compile.ts <config> [--problem p] [--dtype d] [--stage fused|batched] [--runs n] [--m rows]",
  );
  Deno.exit(2);
}
const config = parseConfigName(positionals[0]);
const runs = Number(values.runs), m = Number(values.m);
if (!Number.isInteger(runs) || runs < 0 || !Number.isInteger(m) || m < 1) {
  console.error(
    `--runs and --m: expected whole numbers (runs >= 0, m >= 1), got ${values.runs} and ${values.m}`,
  );
  Deno.exit(2);
}
let dtype: WeightDtype;
try {
  dtype = parseWeightDtype(values.dtype);
} catch (e) {
  console.error(`--dtype: ${(e as Error).message}`);
  Deno.exit(2);
}
const spec = await findProblem(values.problem);
const shape = stageShape(spec, values.stage);
const gpu = await openGpu();
const problem = configProblem(config, shape, dtype, gpu.caps);
if (problem) {
  throw new RangeError(`Expected a config this GPU runs, got ${positionals[0]}: ${problem}`);
}
const kernel = await compileKernel(gpu.device, config, shape, dtype);
console.log(`${kernel.name}: compiled for ${values.problem} ${dtype} (${values.stage} stage)`);
if (runs > 0) {
  await dispatchRuns(gpu.device, kernel, runs, m);
  console.log(`${kernel.name}: ${runs} runs at m=${m}`);
}
gpu.device.destroy();

/** Dispatches `kernel` `runs` times over m rows of random data, a submit each, and waits. */
async function dispatchRuns(device: GPUDevice, kernel: CompiledKernel, runs: number, m: number) {
  const extent = shapeExtents(kernel.shape, m);
  const random = seededRandom(7);
  const w = packWeights(randomNonZero(extent.w + (extent.w % 2), random), kernel.dtype);
  const buffers = {
    params: paramsBuffer(device, m),
    x: storageBuffer(device, randomNonZero(extent.x, random), "x"),
    w: storageBuffer(device, w, "w"),
    y: storageBuffer(device, new Float32Array(extent.y), "y"),
    scratch: device.createBuffer({
      size: Math.max(16, scratchBytes(kernel.config, kernel.shape, m)),
      usage: GPUBufferUsage.STORAGE,
    }),
  };
  const group = kernelBindGroup(device, buffers);
  for (let run = 0; run < runs; run++) {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    dispatchKernel(pass, kernel, group, m);
    pass.end();
    device.queue.submit([encoder.finish()]);
  }
  await device.queue.onSubmittedWorkDone();
}
