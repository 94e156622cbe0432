/**
 * Subgroup kernels against the float64 reference, through kernels/gpu.ts directly: the check
 * that `enable subgroups;` is prepended where the device's compiler wants it (Chrome's Tint)
 * and left out where it refuses it (Deno's naga). Runs the tuner's own verifier (output
 * poisoned with NaN, every element compared, nothing written outside the outputs) on `-sg`
 * gemv configs for the fused and the batched (strided in-place read) stage of Kimi Linear tp8.
 * No DOM and no Deno API: tests/browser/subgroup_page.ts runs it in a browser, and
 * tests/subgroup_directive_test.ts in Deno.
 *
 * @module
 */
import type { GemvConfig } from "../../kernels/config.ts";
import { configName, configProblem, deviceCaps } from "../../kernels/config.ts";
import type { WeightDtype } from "../../kernels/dtype.ts";
import { compileKernel, wantsSubgroupsDirective } from "../../kernels/gpu.ts";
import { batchedShape, fusedShape, kimiLinearSpec } from "../../kernels/problem.ts";
import { checkKernel, destroyCheckData, makeCheckData } from "../../tuner/verify.ts";

/** One subgroup kernel at one m. */
export interface SubgroupKernelCheck {
  config: string;
  stage: "fused" | "batched";
  dtype: WeightDtype;
  m: number;
  /** `null` if the kernel matched the reference, else why not. */
  problem: string | null;
}

/** What {@linkcode checkSubgroupKernels} found. */
export interface SubgroupReport {
  /** The device has the "subgroups" feature and the adapter reports a subgroup size. */
  subgroups: boolean;
  subgroupMinSize: number;
  /** Whether subgroup kernels were compiled with `enable subgroups;` in front. */
  directive: boolean;
  checks: SubgroupKernelCheck[];
}

/**
 * Compiles and checks a few `-sg` gemv kernels on a device (none if it has no subgroups).
 *
 * @param subgroupMinSize The adapter's smallest subgroup size (`adapter.info.subgroupMinSize`).
 */
export async function checkSubgroupKernels(
  device: GPUDevice,
  subgroupMinSize: number,
): Promise<SubgroupReport> {
  const caps = deviceCaps(device, subgroupMinSize);
  const report: SubgroupReport = {
    subgroups: caps.subgroups,
    subgroupMinSize,
    directive: await wantsSubgroupsDirective(device),
    checks: [],
  };
  if (!caps.subgroups) return report;
  // As many lanes as the smallest subgroup (so one subgroup reduces each column), at most 32.
  const lanes = Math.min(subgroupMinSize, 32);
  const knobbed: GemvConfig = {
    family: "gemv",
    nc: Math.max(1, 32 / lanes),
    cn: 2,
    lanes,
    rm: 2,
    vec: 4,
    subgroup: true,
    dot: true,
    rw: 2,
  };
  const configs: GemvConfig[] = [
    { family: "gemv", nc: Math.max(1, 64 / lanes), cn: 1, lanes, rm: 1, vec: 4, subgroup: true },
    { family: "gemv", nc: Math.max(1, 32 / lanes), cn: 2, lanes, rm: 2, vec: 4, subgroup: true },
    // Scalar accumulators, two row groups (the second one's rows at m = 3 partly past m) and a
    // trip of two iterations: each knob's code through the browser's compiler too; then X
    // staged in workgroup memory, 32 k vectors a trip, in one copy and in two taking turns:
    // barriers in a loop, which Tint's uniformity analysis must accept.
    { ...knobbed, unroll: 2 },
    { ...knobbed, xs: 32 },
    { ...knobbed, xs: 32, xd: true },
  ];
  const spec = kimiLinearSpec({ tp: 8 });
  const stages = [["fused", fusedShape(spec)], ["batched", batchedShape(spec)!]] as const;
  let seed = 1;
  for (const dtype of ["f32", "f16"] as const) {
    for (const [stage, shape] of stages) {
      for (const m of [1, 3]) {
        const data = makeCheckData(device, shape, dtype, m, seed++);
        try {
          for (const config of configs) {
            const check: SubgroupKernelCheck = {
              config: configName(config),
              stage,
              dtype,
              m,
              problem: configProblem(config, shape, dtype, caps) ?? null,
            };
            if (check.problem === null) {
              try {
                const kernel = await compileKernel(device, config, shape, dtype);
                check.problem = await checkKernel(device, kernel, data) ?? null;
              } catch (e) {
                check.problem = e instanceof Error ? e.message : String(e);
              }
            }
            report.checks.push(check);
          }
        } finally {
          destroyCheckData(data);
        }
      }
    }
  }
  return report;
}
