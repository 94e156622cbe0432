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
async function timePass(
  encode: (pass: GPUComputePassEncoder, r: number) => void,
  runs: number,
  samples = 9,
) {
  const qs = device.createQuerySet({ type: "timestamp", count: 2 * samples });
  const rb = device.createBuffer({
    size: 16 * samples,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const mb = device.createBuffer({
    size: 16 * samples,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const e = device.createCommandEncoder();
  {
    const p = e.beginComputePass();
    for (let r = 0; r < 20; r++) encode(p, r);
    p.end();
  }
  for (let s = 0; s < samples; s++) {
    const p = e.beginComputePass({
      timestampWrites: {
        querySet: qs,
        beginningOfPassWriteIndex: 2 * s,
        endOfPassWriteIndex: 2 * s + 1,
      },
    });
    for (let r = 0; r < runs; r++) encode(p, s * runs + r);
    p.end();
  }
  e.resolveQuerySet(qs, 0, 2 * samples, rb, 0);
  e.copyBufferToBuffer(rb, 0, mb, 0, 16 * samples);
  device.queue.submit([e.finish()]);
  await mb.mapAsync(GPUMapMode.READ);
  const t = new BigUint64Array(mb.getMappedRange().slice(0));
  mb.unmap();
  const us = Array.from(
    { length: samples },
    (_, s) => Number(t[2 * s + 1] - t[2 * s]) / 1000 / runs,
  ).sort((a, b) => a - b);
  return us[Math.floor(samples / 2)];
}
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
    const loop = await timePass(
      (pass, rep) => dispatchKernel(pass, kernel, gs[rep % gs.length], 1),
      16,
    );
    console.log(
      `${name} ${label}: ${t.medianUs.toFixed(2)} us ${
        (bytes / t.medianUs / 1e6).toFixed(2)
      } TB/s spread ${t.spreadPct.toFixed(0)}%; 16/pass loop ${loop.toFixed(2)} us`,
    );
  }
}
