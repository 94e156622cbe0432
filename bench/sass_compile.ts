/**
 * Compiles one kernel config on this GPU and exits, so that the driver's shader cache holds that
 * pipeline alone: `bench/gpu_sass.sh` runs it once per config with its own cache folder, then
 * unpacks and disassembles what the NVIDIA driver stored. Prints the config and its WGSL's size.
 *
 *   deno run -A bench/sass_compile.ts <config> [--problem kimi-linear-tp4] [--dtype f16] [--stage fused]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { configProblem, parseConfigName } from "../kernels/config.ts";
import { parseWeightDtype, type WeightDtype } from "../kernels/dtype.ts";
import { compileKernel } from "../kernels/gpu.ts";
import { stageShape } from "../kernels/problem.ts";
import { openGpu } from "../tuner/gpu_device.ts";
import { findProblem } from "../tuner/problems.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    problem: { type: "string", default: "kimi-linear-tp4" },
    dtype: { type: "string", default: "f16" },
    stage: { type: "string", default: "fused" },
  },
});
if (positionals.length !== 1) {
  console.error(
    "usage: deno run -A bench/sass_compile.ts <config> [--problem p] [--dtype d] [--stage fused|batched]",
  );
  Deno.exit(2);
}
const config = parseConfigName(positionals[0]);
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
gpu.device.destroy();
