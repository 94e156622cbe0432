/**
 * Probe for the mid-range (NOTES.md, "The bench after stream-K with double buffering"): where
 * does a split-K or stream-K kernel's time go, the first pass or the reduction? Each config is
 * timed whole (both dispatches), and for a kernel with a reduction its first pass alone and its
 * reduction alone, at one m of the fused stage, with the weights rotated over copies past the
 * L2 and each run chained to the one before (bench/chain.ts; the link's time is taken off). The
 * kernels are the tuner's, checked by tests/kernels_test.ts, not here. Beside each reduction:
 * its traffic (the scratch read, Y written) at the HBM rate of bench/ceilings.ts.
 *
 *   source .gpu/setup.sh && deno run --cached-only -A bench/stream_probe.ts \
 *     [--problem kimi-linear-tp4] [--dtype f32] [--m 1024] [--configs a,b,...]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parseConfigName, scratchBytes } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { packWeights } from "../kernels/dtype.ts";
import type { CompiledKernel, KernelBindGroup } from "../kernels/gpu.ts";
import {
  compileKernel,
  dispatchFirstPass,
  dispatchKernel,
  dispatchReduction,
  kernelBindGroup,
  paramsBuffer,
  storageBuffer,
} from "../kernels/gpu.ts";
import { fusedShape } from "../kernels/problem.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";
import { timeItems } from "../tuner/timing.ts";
import { shapeExtents } from "../tuner/verify.ts";
import { ceilingsOf } from "./ceilings.ts";
import { chainedInput, openSession } from "./session.ts";

const TILE = "outer-bm128-bn64-bk8-rm8-rn8";
const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    problem: { type: "string", default: "kimi-linear-tp4" },
    dtype: { type: "string", default: "f32" },
    m: { type: "string", default: "1024" },
    configs: {
      type: "string",
      default: [`${TILE}-sk396-db`, `${TILE}-sk264-db`, `${TILE}-s2-db`, `${TILE}-db`].join(","),
    },
    copies: { type: "string", default: "6" },
  },
});
const session = await openSession(args.problem);
const { gpu, probe, spec } = session;
const device = gpu.device;
const dtype = args.dtype as WeightDtype;
const m = Number(args.m);
const shape = fusedShape(spec);
const extent = shapeExtents(shape, m);
const random = seededRandom(5);
const { x, chain, link } = await chainedInput(session, m, random, 15);
const params = paramsBuffer(device, m);
const y = storageBuffer(device, new Float32Array(extent.y), "y");
const configs = args.configs.split(",").map((name) => parseConfigName(name));
const scratchSize = Math.max(16, ...configs.map((c) => scratchBytes(c, shape, m)));
const scratch = device.createBuffer({ size: scratchSize, usage: GPUBufferUsage.STORAGE });
const groups: KernelBindGroup[] = Array.from({ length: Number(args.copies) }, (_, i) => {
  const w = packWeights(randomNonZero(extent.w + (extent.w % 2), random), dtype);
  return kernelBindGroup(device, { params, x, w: storageBuffer(device, w, `w ${i}`), y, scratch });
});

/** Records the first pass, the reduction, or both, of a kernel with each run's weight copy. */
function part(kernel: CompiledKernel, which: "whole" | "first" | "reduce") {
  return {
    encode(pass: GPUComputePassEncoder, rep: number) {
      const group = groups[rep % groups.length];
      if (which === "whole") dispatchKernel(pass, kernel, group, m);
      if (which === "first") dispatchFirstPass(pass, kernel, group, m);
      if (which === "reduce") dispatchReduction(pass, kernel, group, m);
      chain.link(pass, y);
    },
  };
}

const cases: { name: string; item: ReturnType<typeof part>; bytes?: number }[] = [];
for (const config of configs) {
  const kernel = await compileKernel(device, config, shape, dtype);
  cases.push({ name: `${kernel.name} whole`, item: part(kernel, "whole") });
  if (!kernel.reduce) continue;
  const bytes = scratchBytes(config, shape, m) + 4 * m * shape.n;
  cases.push({ name: `${kernel.name} first pass`, item: part(kernel, "first") });
  cases.push({ name: `${kernel.name} reduction`, item: part(kernel, "reduce"), bytes });
}
const timings = await timeItems(device, cases.map((c) => c.item), {
  warmup: 3,
  repeats: 15,
  probe,
});
const hbm = ceilingsOf(gpu.adapter.info.description)?.bytesPerS;
console.log(
  `${spec.name} ${dtype} fused stage at m=${m}; chain link ${
    link.medianUs.toFixed(2)
  } us, taken off`,
);
console.log(`${"kernel".padEnd(52)} ${"us".padStart(8)}  spread  scratch + Y at HBM rate`);
cases.forEach(({ name, bytes }, i) => {
  const t = timings[i];
  const floor = bytes && hbm
    ? `${(bytes / hbm * 1e6).toFixed(1)} us (${(bytes / 1e6).toFixed(1)} MB)`
    : "";
  console.log(
    `${name.padEnd(52)} ${(t.medianUs - link.medianUs).toFixed(1).padStart(8)}  ${
      t.spreadPct.toFixed(1).padStart(5)
    }%  ${floor}`,
  );
});
await session.close();
chain.destroy();
device.destroy();
