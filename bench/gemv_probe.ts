// Probe: why a generated GEMV is slower than a plain streaming read on the same weights.
import {
  compileKernel,
  dispatchKernel,
  kernelBindGroup,
  paramsBuffer,
  storageBuffer,
} from "../kernels/gpu.ts";
import { parseConfigName } from "../kernels/config.ts";
import { packWeights } from "../kernels/dtype.ts";
import { fusedShape, kimiLinearSpec } from "../kernels/problem.ts";
import { openGpu } from "../tuner/gpu_device.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";
import { timeItems } from "../tuner/timing.ts";

const gpu = await openGpu();
const device = gpu.device;
const spec = kimiLinearSpec({ tp: 4 });
const shape = fusedShape(spec);
const r = seededRandom(1);
const dtype = (Deno.args[0] ?? "f16") as "f16" | "f32";
const w = packWeights(randomNonZero(shape.n * shape.k, r), dtype);
const copies = Math.ceil(160e6 / w.byteLength);
const ws = Array.from({ length: copies }, () => storageBuffer(device, w, "w"));
const rows = Number(Deno.env.get("ROWS") ?? 8);
const x = storageBuffer(device, randomNonZero(rows * shape.k, r), "x");
const y = device.createBuffer({ size: rows * shape.n * 4, usage: GPUBufferUsage.STORAGE });
console.log(`x and y buffers sized for ${rows} rows`);
const params = paramsBuffer(device, 1);
const groups = ws.map((w) => kernelBindGroup(device, { params, x, w, y }));
const names = Deno.args.slice(1).length ? Deno.args.slice(1) : [
  "gemv-nc4-cn1-l32-rm1-v4",
  "gemv-nc4-cn1-l32-rm1-v4-sg",
  "gemv-nc8-cn1-l32-rm1-v8",
  "gemv-nc2-cn2-l32-rm1-v8",
  "gemv-nc1-cn4-l32-rm1-v8",
  "gemv-nc4-cn1-l16-rm1-v8",
  "gemv-nc8-cn1-l8-rm1-v8",
  "gemv-nc2-cn1-l32-rm1-v4",
];
const bytes = w.byteLength;
if (Deno.env.get("BATCH")) {
  // Like the tuner: compile (and optionally check) every config, then time them in one call.
  const { makeCheckData, checkKernel } = await import("../tuner/verify.ts");
  const kernels = [];
  for (const name of names) {
    const kernel = await compileKernel(device, parseConfigName(name), shape, dtype);
    if (Deno.env.get("VERIFY")) {
      for (const m of [3, 67]) {
        console.log(
          name,
          "check",
          m,
          (await checkKernel(device, kernel, makeCheckData(device, shape, dtype, m, m))) ?? "ok",
        );
      }
    }
    kernels.push(kernel);
  }
  const ts = await timeItems(
    device,
    kernels.map((kernel) => ({
      encode: (pass: GPUComputePassEncoder, rep: number) =>
        dispatchKernel(pass, kernel, groups[rep % groups.length], 1),
    })),
    { warmup: 3, repeats: 10 },
  );
  ts.forEach((t, i) => console.log(`batched timing ${names[i]}: ${t.medianUs.toFixed(2)} us`));
  Deno.exit(0);
}
for (const name of names) {
  const kernel = await compileKernel(device, parseConfigName(name), shape, dtype);
  for (const [label, gs] of [["rotate", groups], ["same", [groups[0]]]] as const) {
    const [t] = await timeItems(device, [{
      encode: (pass, rep) => dispatchKernel(pass, kernel, gs[rep % gs.length], 1),
    }], { warmup: 3, repeats: 15 });
    console.log(
      `${name} ${label}: ${t.medianUs.toFixed(2)} us ${
        (bytes / t.medianUs / 1e6).toFixed(2)
      } TB/s spread ${t.spreadPct.toFixed(0)}%`,
    );
  }
}
