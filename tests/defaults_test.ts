/**
 * The measured defaults (dispatch/defaults.ts) run as measured: on a device with WebGPU's default
 * limits, every Kimi Linear problem gets the measured config of every bucket and stage, not a
 * generic fallback; a shape they do not fit (the tiny problem's k = 64) still gets a valid config.
 */
import assert from "node:assert/strict";
import { configName, configProblem } from "../kernels/config.ts";
import { PORTABLE_CAPS } from "../kernels/device.ts";
import { WEIGHT_DTYPES } from "../kernels/dtype.ts";
import { batchedShape, fusedShape, kimiLinearSpec } from "../kernels/problem.ts";
import { DEFAULT_BUCKETS, defaultConfig, measuredDefault } from "../dispatch/defaults.ts";
import { loadProblem } from "../tuner/yaml_file.ts";
import { ROOT } from "./helpers.ts";

Deno.test("every Kimi Linear problem gets the measured default of every bucket and stage", () => {
  for (const tp of [1, 2, 4, 8]) {
    const spec = kimiLinearSpec({ tp });
    for (const dtype of WEIGHT_DTYPES) {
      for (const bucket of DEFAULT_BUCKETS) {
        for (
          const [stage, shape] of [["fused", fusedShape(spec)], [
            "batched",
            batchedShape(spec)!,
          ]] as const
        ) {
          const chosen = configName(defaultConfig(shape, dtype, PORTABLE_CAPS, bucket, stage));
          assert.equal(
            chosen,
            measuredDefault(bucket, stage, dtype),
            `tp ${tp} ${dtype} ${stage} m=${bucket}`,
          );
        }
      }
    }
  }
});

Deno.test("16-bit weights get their own picks where they differ; rows past the last bucket its", () => {
  assert.equal(measuredDefault(1, "fused", "f32"), "gemv-nc4-cn1-l32-rm1-v4");
  assert.equal(measuredDefault(1, "fused", "bf16"), "gemv-nc2-cn1-l16-rm1-v8");
  const last = DEFAULT_BUCKETS[DEFAULT_BUCKETS.length - 1];
  assert.equal(measuredDefault(last * 4, "fused", "f16"), measuredDefault(last, "fused", "f16"));
});

Deno.test("the tiny problem (k = 64), which most measured defaults do not fit, gets valid configs", async () => {
  const spec = await loadProblem(`${ROOT}problems/tiny.yaml`);
  for (const bucket of DEFAULT_BUCKETS) {
    const c = defaultConfig(fusedShape(spec), "f32", PORTABLE_CAPS, bucket);
    assert.equal(
      configProblem(c, fusedShape(spec), "f32", PORTABLE_CAPS),
      undefined,
      `m=${bucket}`,
    );
  }
});
