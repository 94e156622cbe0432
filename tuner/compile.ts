/**
 * Compiling kernels for the tuner. Like `compileKernel` of kernels/gpu.ts, with two
 * differences: the validation error scope is pushed and popped around the synchronous calls
 * only, so compiles started together (tune.ts starts a bucket's compiles at once) cannot pop
 * each other's scopes and take each other's errors; and tests can alter the generated WGSL
 * (`mutate`) to inject a kernel that does not compile, computes wrong results, or runs too long.
 *
 * @module
 */
import type { KernelConfig } from "../kernels/config.ts";
import { configName } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { kernelWgsl } from "../kernels/generate.ts";
import type { CompiledKernel } from "../kernels/gpu.ts";
import { KernelCompileError, kernelLayout } from "../kernels/gpu.ts";
import type { GemmShape } from "../kernels/problem.ts";

/**
 * Rewrites the WGSL of a config before it is compiled: a test-only hook (see
 * tests/tune_faults_test.ts). Gets the config's name and the generated code.
 */
export type WgslMutation = (config: string, code: string) => string;

/**
 * Compiles a config (validate it first with `configProblem`).
 *
 * @throws {KernelCompileError} With the compiler's messages.
 */
export async function compileForTuning(
  device: GPUDevice,
  config: KernelConfig,
  shape: GemmShape,
  dtype: WeightDtype,
  mutate?: WgslMutation,
): Promise<CompiledKernel> {
  const name = configName(config);
  const generated = kernelWgsl(config, shape, dtype);
  const code = mutate ? mutate(name, generated) : generated;
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code, label: name });
  const pending = device.createComputePipelineAsync({
    label: name,
    layout: kernelLayout(device).pipeline,
    compute: { module, entryPoint: "main" },
  });
  const scope = device.popErrorScope(); // before any await: no other compile can push between
  let pipeline: GPUComputePipeline | undefined;
  let failure = "";
  try {
    pipeline = await pending;
  } catch (e) {
    failure = e instanceof Error ? e.message : String(e);
  }
  const scoped = await scope;
  if (!pipeline || scoped) {
    const info = await module.getCompilationInfo();
    const messages = info.messages.filter((m) => m.type === "error").map((m) =>
      `${m.lineNum}:${m.linePos} ${m.message}`
    );
    throw new KernelCompileError(
      name,
      [...messages, scoped?.message ?? failure].filter(Boolean).join("; "),
    );
  }
  return { name, config, shape, dtype, pipeline };
}
