/**
 * The measured defaults (kernels/defaults.ts) run as measured: on a device with WebGPU's default
 * limits, every Kimi Linear problem gets the measured config of every bucket and stage, not a
 * generic fallback; a shape they do not fit (the tiny problem's k = 64) still gets a valid config.
 */
import assert from "node:assert/strict";
import type { DeviceCaps } from "../kernels/config.ts";
import { configName, configProblem } from "../kernels/config.ts";
import { PORTABLE_CAPS } from "../kernels/device.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { WEIGHT_DTYPES } from "../kernels/dtype.ts";
import { batchedShape, fusedShape, kimiLinearSpec } from "../kernels/problem.ts";
import { DEFAULT_BUCKETS, defaultConfig, measuredDefault } from "../kernels/defaults.ts";
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

Deno.test('precision "fast" takes f16-math picks with f16 weights on a device with shader-f16, else the exact ones', () => {
  const shape = fusedShape(kimiLinearSpec({ tp: 4 }));
  const f16Caps = { ...PORTABLE_CAPS, shaderF16: true };
  const at = (m: number, dtype: WeightDtype, caps: DeviceCaps, stage: "fused" | "batched") =>
    configName(defaultConfig(
      stage === "fused" ? shape : batchedShape(kimiLinearSpec({ tp: 4 }))!,
      dtype,
      caps,
      m,
      stage,
      "fast",
    ));
  for (const bucket of DEFAULT_BUCKETS) {
    for (const stage of ["fused", "batched"] as const) {
      const fast = at(bucket, "f16", f16Caps, stage);
      assert.equal(fast, measuredDefault(bucket, stage, "f16", "fast"), `m=${bucket} ${stage}`);
      // From m = 32 the fast picks are f16-math kernels, which need shader-f16.
      assert.equal(fast.endsWith("-h"), bucket >= 32, `m=${bucket} ${stage}: ${fast}`);
      assert.equal(at(bucket, "f16", PORTABLE_CAPS, stage), measuredDefault(bucket, stage, "f16"));
      assert.equal(at(bucket, "bf16", f16Caps, stage), measuredDefault(bucket, stage, "bf16"));
    }
  }
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
