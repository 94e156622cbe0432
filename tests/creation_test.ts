/**
 * Creating a projection when a kernel fails (issue 8): compile failures are awaited together and
 * reported as one KernelCompileError naming the bucket, stage and config. (mod.ts imported from
 * outside the repository: tests/spawn/import_test.ts.)
 */
import assert from "node:assert/strict";
import { KernelCompileError } from "../mod.ts";
import { defaultBucketConfigs } from "../dispatch/bucket_plan.ts";
import { compilePlans } from "../dispatch/create.ts";
import { deviceCaps } from "../kernels/config.ts";
import { requestTunedDevice } from "../kernels/device.ts";
import { batchedShape, fusedShape, unfusedShapes } from "../kernels/problem.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";

Deno.test("a kernel that fails to compile is one KernelCompileError naming bucket, stage, config", async () => {
  const adapter = await navigator.gpu.requestAdapter();
  const device = await requestTunedDevice(adapter!);
  try {
    const spec: ProjectionSpec = {
      name: "fails",
      k: 64,
      segments: [{ name: "a", n: 32 }, { name: "b", n: 16 }],
      batched: { inputs: ["b"], outputs: ["c"], n: 8 },
    };
    const shapes = {
      fused: fusedShape(spec),
      batched: batchedShape(spec),
      unfused: unfusedShapes(spec),
    };
    const configs = defaultBucketConfigs(shapes, "f32", deviceCaps(device), "test");
    // Break the batched kernel of the largest bucket: the error names the first bucket and
    // stage (in bucket order, fused before batched) that needed it.
    const broken = configs[configs.length - 1].batched!;
    const first = configs.find((c) => c.fused === broken || c.batched === broken)!;
    const stage = first.fused === broken ? "fused" : "batched";
    const mutate = (name: string, code: string) => name === broken ? `${code}\nnot wgsl` : code;
    await assert.rejects(compilePlans(device, "f32", shapes, configs, mutate), (e: unknown) => {
      assert.ok(e instanceof KernelCompileError, String(e));
      assert.equal(e.config, broken);
      assert.deepEqual(e.where, { bucket: first.bucket, stage });
      assert.match(
        e.message,
        new RegExp(`"${broken}" for stage "${stage}" of bucket m=${first.bucket}:`),
      );
      return true;
    });
    // Without the fault every bucket compiles.
    const plans = await compilePlans(device, "f32", shapes, configs);
    assert.deepEqual(plans.map((p) => p.steps.length), configs.map(() => 2));
  } finally {
    device.destroy();
  }
});
