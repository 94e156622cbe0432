/**
 * Creating a projection from outside the repository and when a kernel fails (issue 8): mod.ts
 * imports from a folder with no deno.json; compile failures are awaited together and reported
 * as one KernelCompileError naming the bucket, stage and config.
 */
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { KernelCompileError } from "../mod.ts";
import { defaultBucketConfigs } from "../dispatch/bucket_plan.ts";
import { compilePlans } from "../dispatch/create.ts";
import { deviceCaps } from "../kernels/config.ts";
import { requestTunedDevice } from "../kernels/device.ts";
import { batchedShape, fusedShape, unfusedShapes } from "../kernels/problem.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { ROOT, withTempDir } from "./helpers.ts";

Deno.test("mod.ts imports and runs from a folder with no config file", async () => {
  await withTempDir("import_anywhere_", async (dir) => {
    const mod = pathToFileURL(`${ROOT}mod.ts`).href;
    await Deno.writeTextFile(
      `${dir}/main.ts`,
      `import { createProjection, requestTunedDevice } from "${mod}";
const adapter = await navigator.gpu.requestAdapter();
const device = await requestTunedDevice(adapter!);
const spec = { name: "outside", k: 8, segments: [{ name: "q", n: 3 }, { name: "v", n: 2 }] };
const fused = new Float32Array(5 * 8).map((_, i) => (i % 8) + Math.floor(i / 8));
const proj = await createProjection(device, spec, { weights: { fused } });
const out = await proj.run(new Float32Array(8).fill(1), 1);
console.log(JSON.stringify({ q: [...out.q], v: [...out.v], source: proj.config(1).source }));
proj.destroy();
device.destroy();
`,
    );
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "main.ts"],
      cwd: dir,
      env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(run.stderr);
    assert.equal(run.code, 0, stderr);
    // Row r of the weight holds r, r+1, ..., r+7: its sum against x = 1 is 8r + 28.
    assert.deepEqual(JSON.parse(new TextDecoder().decode(run.stdout)), {
      q: [28, 36, 44],
      v: [52, 60],
      source: "default",
    });
  });
});

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
