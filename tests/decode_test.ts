/**
 * The one-dispatch decode kernel (kernels/decode.ts) on the CPU adapter: both its outputs, the
 * fused segments and the batched outputs recomputed from X, match the float64 reference for
 * each weight type and row count, and nothing past row m is written. The waiting form is right
 * whether its batched workgroups wait for the GEMV or recompute, twice in a row on the same
 * counters, which its last workgroup resets.
 */
import assert from "node:assert/strict";
import type { DecodeConfig } from "../kernels/decode.ts";
import {
  compileDecode,
  DecodeCounter,
  decodeName,
  decodeProblem,
  decodeProducers,
  recomputePart,
} from "../kernels/decode.ts";
import { recomputeGrid } from "../kernels/recompute.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { WEIGHT_DTYPES } from "../kernels/dtype.ts";
import { readBuffer, SUBGROUPS_DIRECTIVE, wantsSubgroupsDirective } from "../kernels/gpu.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { openGpu } from "../tuner/gpu_device.ts";
import { loadProblem } from "../tuner/yaml_file.ts";
import { gemvConfig, ROOT } from "./helpers.ts";
import { dispatchOnce, outputsOff, projectionData } from "./recompute_reference.ts";

const CONFIGS: DecodeConfig[] = [
  { gemv: gemvConfig({ nc: 4, cn: 1, lanes: 16, rm: 4, vec: 4 }), lanes: 4, cols: 16 },
  { gemv: gemvConfig({ nc: 8, cn: 2, lanes: 8, rm: 4, vec: 8 }), lanes: 8, cols: 32 },
];

/**
 * Runs a config at m on random data `times` times (both outputs have a NaN row past m): the first
 * output off its reference, and the counters after the runs.
 */
async function run(
  device: GPUDevice,
  spec: ProjectionSpec,
  config: DecodeConfig,
  dtype: WeightDtype,
  m: number,
  times = 1,
): Promise<{ off: string | undefined; counters: Uint32Array }> {
  const { data, buffers } = projectionData(device, spec, dtype, m, 100 * m + config.cols);
  const prefix = config.gemv.subgroup && await wantsSubgroupsDirective(device)
    ? SUBGROUPS_DIRECTIVE
    : "";
  try {
    const kernel = compileDecode(device, config, spec, dtype, prefix);
    for (let i = 0; i < times; i++) dispatchOnce(device, kernel, buffers);
    return {
      off: await outputsOff(device, spec, dtype, m, data, buffers),
      counters: new Uint32Array((await readBuffer(device, buffers.counters!)).buffer),
    };
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
            assert.equal((await run(gpu.device, spec, config, dtype, m)).off, undefined, what);
          }
        }
      }
    }
  } finally {
    gpu.device.destroy();
  }
});

Deno.test("the waiting decode kernel is right when it waits and when it recomputes", async () => {
  const gpu = await openGpu();
  try {
    for (const name of ["tiny", "kimi-linear-tp8"]) {
      const spec = await loadProblem(`${ROOT}problems/${name}.yaml`);
      // wait 0 never polls, so every batched workgroup recomputes; with 2^24 polls (tens of ms on
      // the CPU adapter) the GEMV workgroups, which start first, finish before most give up.
      // With the batched workgroups first, the CPU adapter's threads may all be polling before
      // any GEMV workgroup starts: whether they wait or recompute, the outputs must be right.
      const cases: [DecodeConfig, boolean | undefined][] = [
        [{ ...CONFIGS[0], wait: 0 }, false],
        [{ ...CONFIGS[1], wait: 1 << 24 }, true],
        [{ ...CONFIGS[0], wait: 64, first: true }, undefined],
      ];
      for (const [config, waits] of cases) {
        assert.ok(decodeProducers(config, spec) >= 1, decodeName(config));
        const [rx, ry] = recomputeGrid(recomputePart(config), spec);
        const batched = rx * ry;
        // vec 8 is for 16-bit weights only.
        for (const dtype of config.gemv.vec < 8 ? ["f32", "f16"] as const : ["f16"] as const) {
          assert.equal(decodeProblem(config, spec, dtype, gpu.caps), undefined, decodeName(config));
          for (const m of [1, 3]) {
            const what = `${name} ${decodeName(config)} ${dtype} m=${m}`;
            const { off, counters } = await run(gpu.device, spec, config, dtype, m, 2);
            assert.equal(off, undefined, what);
            assert.equal(counters[DecodeCounter.Producers], 0, `${what}: producers reset`);
            assert.equal(counters[DecodeCounter.Readers], 0, `${what}: readers reset`);
            const waited = counters[DecodeCounter.Waited];
            assert.equal(waited + counters[DecodeCounter.Recomputed], 2 * batched, what);
            if (waits !== undefined) {
              assert.ok(waits ? waited > 0 : waited === 0, `${what}: ${waited} waited`);
            }
          }
        }
      }
    }
  } finally {
    gpu.device.destroy();
  }
});
