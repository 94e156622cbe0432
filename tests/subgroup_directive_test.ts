/**
 * The WGSL prelude per target, on Deno's side: naga refuses `enable subgroups;`, so subgroup
 * kernels compile without it here, and the generated WGSL never carries it (only
 * `compileKernel` adds it, on devices that take it: Chrome's side is in browser_test.ts).
 */
import assert from "node:assert/strict";
import { kernelWgsl } from "../kernels/generate.ts";
import { SUBGROUPS_DIRECTIVE, wantsSubgroupsDirective } from "../kernels/gpu.ts";
import { fusedShape, kimiLinearSpec } from "../kernels/problem.ts";
import { checkSubgroupKernels } from "./browser/subgroup_check.ts";
import { gemvConfig, moduleGpu } from "./helpers.ts";

const gpu = await moduleGpu();

Deno.test("kernelWgsl() of a subgroup kernel has no enable directive", () => {
  const code = kernelWgsl(
    gemvConfig({ subgroup: true, lanes: 8 }),
    fusedShape(kimiLinearSpec({ tp: 8 })),
    "f32",
  );
  assert.match(code, /subgroupShuffleXor/);
  assert.ok(!code.includes(SUBGROUPS_DIRECTIVE.trim()), "no directive in the generated WGSL");
  assert.match(code, /^\/\/ split-k GEMV gemv-nc4-cn1-l8-rm1-v4-sg\n/, "starts with its header");
});

Deno.test("wantsSubgroupsDirective() is false where naga refuses the directive, and cached", async () => {
  const answer = wantsSubgroupsDirective(gpu.device);
  assert.equal(wantsSubgroupsDirective(gpu.device), answer, "one probe per device");
  assert.equal(await answer, false);
});

Deno.test("subgroup kernels compile without the directive in Deno and match the reference", async () => {
  if (!gpu.caps.subgroups) {
    console.log("this adapter has no subgroups: nothing to compile");
    return;
  }
  const report = await checkSubgroupKernels(gpu.device, gpu.caps.subgroupMinSize);
  assert.equal(report.directive, false);
  assert.equal(report.checks.length, 40);
  assert.deepEqual(report.checks.filter((c) => c.problem !== null), []);
});
