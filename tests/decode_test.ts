/**
 * The one-dispatch decode kernel (kernels/decode.ts) on the CPU adapter: both its outputs, the
 * fused segments and the batched outputs recomputed from X, match the float64 reference for
 * each weight type and row count, and nothing past row m is written.
 */
import assert from "node:assert/strict";
import type { DecodeConfig } from "../kernels/decode.ts";
import { compileDecode, decodeName, decodeProblem } from "../kernels/decode.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { WEIGHT_DTYPES } from "../kernels/dtype.ts";
import { SUBGROUPS_DIRECTIVE, wantsSubgroupsDirective } from "../kernels/gpu.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { openGpu } from "../tuner/gpu_device.ts";
import { loadProblem } from "../tuner/yaml_file.ts";
import { CAPS, gemvConfig, ROOT } from "./helpers.ts";
import { dispatchOnce, outputsOff, projectionData } from "./recompute_reference.ts";

const CONFIGS: DecodeConfig[] = [
  { gemv: gemvConfig({ nc: 4, cn: 1, lanes: 16, rm: 4, vec: 4 }), lanes: 4, cols: 16 },
  { gemv: gemvConfig({ nc: 8, cn: 2, lanes: 8, rm: 4, vec: 8 }), lanes: 8, cols: 32 },
];

/** Runs a config at m on random data; both outputs have a NaN row past m. */
async function run(
  device: GPUDevice,
  spec: ProjectionSpec,
  config: DecodeConfig,
  dtype: WeightDtype,
  m: number,
): Promise<string | undefined> {
  const { data, buffers } = projectionData(device, spec, dtype, m, 100 * m + config.cols);
  const prefix = config.gemv.subgroup && await wantsSubgroupsDirective(device)
    ? SUBGROUPS_DIRECTIVE
    : "";
  try {
    dispatchOnce(device, await compileDecode(device, config, spec, dtype, prefix), buffers);
    return await outputsOff(device, spec, dtype, m, data, buffers);
  } finally {
    for (const buffer of Object.values(buffers)) buffer.destroy();
  }
}

Deno.test("the decode kernel's fused and batched outputs match the float64 reference", async () => {
  const gpu = await openGpu();
  try {
    for (const name of ["tiny", "kimi-linear-tp8"]) {
      const spec = await loadProblem(`${ROOT}problems/${name}.yaml`);
      const configs = [
        ...CONFIGS,
        ...(gpu.caps.subgroups
          ? [{ ...CONFIGS[1], gemv: { ...CONFIGS[1].gemv, subgroup: true } }]
          : []),
      ];
      for (const config of configs) {
        // vec 8 is for 16-bit weights only.
        for (const dtype of WEIGHT_DTYPES.filter((d) => config.gemv.vec < 8 || d !== "f32")) {
          const invalid = decodeProblem(config, spec, dtype, gpu.caps);
          assert.equal(invalid, undefined, decodeName(config));
          for (const m of [1, 3]) {
            const what = `${name} ${decodeName(config)} ${dtype} m=${m}`;
            assert.equal(await run(gpu.device, spec, config, dtype, m), undefined, what);
          }
        }
      }
    }
  } finally {
    gpu.device.destroy();
  }
});

Deno.test("decodeProblem() refuses a GEMV part with row groups or a staged X", async () => {
  const spec = await loadProblem(`${ROOT}problems/tiny.yaml`);
  const [plain] = CONFIGS;
  assert.equal(decodeProblem(plain, spec, "f32", CAPS), undefined);
  const rows = { ...plain, gemv: { ...plain.gemv, rm: 2, rw: 2 } };
  assert.match(decodeProblem(rows, spec, "f32", CAPS) ?? "", /one row group/);
  const staged = { ...plain, gemv: { ...plain.gemv, xs: 16 } };
  assert.match(decodeProblem(staged, spec, "f32", CAPS) ?? "", /no xs/);
});
