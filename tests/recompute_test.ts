/**
 * The recompute kernel (kernels/recompute.ts) on the CPU adapter: the batched stage computed
 * from X alone matches the float64 reference for each weight type and row count, leaves the
 * rows past m untouched, and a kernel recomputing the wrong input is caught.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { WeightDtype } from "../kernels/dtype.ts";
import { packWeights, roundWeights, WEIGHT_DTYPES } from "../kernels/dtype.ts";
import { KernelCompileError, paramsBuffer, readBuffer, storageBuffer } from "../kernels/gpu.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { batchedInputWidth, fusedWidth } from "../kernels/problem.ts";
import type { RecomputeConfig } from "../kernels/recompute.ts";
import {
  compileRecompute,
  recomputeName,
  recomputeProblem,
  recomputeWgsl,
} from "../kernels/recompute.ts";
import { openGpu } from "../tuner/gpu_device.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";
import { loadProblem } from "../tuner/yaml_file.ts";
import { batchedReference, dispatchOnce, firstOff } from "./recompute_reference.ts";

const problem = (name: string) =>
  loadProblem(fileURLToPath(new URL(`../problems/${name}.yaml`, import.meta.url)));
const CONFIGS: RecomputeConfig[] = [
  { threads: 64, lanes: 4, cols: 16, rows: 4 },
  { threads: 256, lanes: 8, cols: 128, rows: 4 },
];

/** Runs a config's kernel at m on random data; the output has a NaN row past m. */
async function run(
  device: GPUDevice,
  spec: ProjectionSpec,
  config: RecomputeConfig,
  dtype: WeightDtype,
  m: number,
  wgsl = recomputeWgsl(config, spec, dtype),
): Promise<string | undefined> {
  const random = seededRandom(1000 * m + config.threads);
  const b = spec.batched!, kb = batchedInputWidth(spec);
  const x = randomNonZero(m * spec.k, random);
  const w = randomNonZero(fusedWidth(spec) * spec.k, random);
  const wb = randomNonZero(b.inputs.length * b.n * kb, random);
  const width = b.n * b.inputs.length;
  const kernel = await compileRecompute(device, config, spec, dtype, wgsl);
  const bound = {
    params: paramsBuffer(device, m),
    x: storageBuffer(device, x, "x"),
    w: storageBuffer(device, packWeights(w, dtype), "w"),
    wb: storageBuffer(device, packWeights(wb, dtype), "wb"),
    y: storageBuffer(device, new Float32Array((m + 1) * width).fill(NaN), "y"),
  };
  try {
    dispatchOnce(device, kernel, bound);
    const ref = batchedReference(spec, m, x, roundWeights(w, dtype), roundWeights(wb, dtype));
    const off = firstOff(await readBuffer(device, bound.y), ref.values, (i) => ref.bounds[i]);
    return off && `Y${off}`;
  } finally {
    for (const buffer of Object.values(bound)) buffer.destroy();
  }
}

Deno.test("the recompute kernel matches the float64 reference and writes only rows < m", async () => {
  const gpu = await openGpu();
  try {
    for (const name of ["tiny", "kimi-linear-tp8"]) {
      const spec = await problem(name);
      for (const config of CONFIGS) {
        assert.equal(recomputeProblem(config, spec, gpu.caps), undefined, recomputeName(config));
        for (const dtype of WEIGHT_DTYPES) {
          for (const m of [1, 3]) {
            const what = `${name} ${recomputeName(config)} ${dtype} m=${m}`;
            assert.equal(await run(gpu.device, spec, config, dtype, m), undefined, what);
          }
        }
      }
    }
  } finally {
    gpu.device.destroy();
  }
});

Deno.test("a recompute kernel reading the wrong input, too many threads or not compiling is caught", async () => {
  const gpu = await openGpu();
  try {
    const spec = await problem("tiny");
    const swapped = { ...spec, batched: { ...spec.batched!, inputs: ["g", "f"] } };
    const config = CONFIGS[0];
    const wrong = recomputeWgsl(config, swapped, "f32");
    assert.match(await run(gpu.device, spec, config, "f32", 2, wrong) ?? "", /expected/);
    const big = { ...config, threads: gpu.caps.maxInvocations * 2 };
    assert.match(recomputeProblem(big, spec, gpu.caps) ?? "", /threads exceed/);
    assert.match(recomputeProblem({ ...config, lanes: 3 }, spec, gpu.caps) ?? "", /multiple/);
    // A name defined twice (a GEMV constant once shadowed this kernel's weights, `RW`, in the
    // decode kernel): a compile error naming the kernel, not a dispatch of nothing read as NaN.
    const twice = `const RW = 1u;\n${recomputeWgsl(config, spec, "f32")}`;
    const refused = await compileRecompute(gpu.device, config, spec, "f32", twice).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(refused instanceof KernelCompileError, String(refused));
    assert.equal(refused.config, recomputeName(config));
    assert.match(refused.detail, /redefinition of `RW`/);
  } finally {
    gpu.device.destroy();
  }
});
