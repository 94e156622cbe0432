// Probe: the fastest plain read of the m = 1 weights' bytes, timed as the tuner times kernels
// (each run waits for the one before; inputs rotated past the L2), beside the tuned m = 1 GEMVs
// on weights of the same size and an empty dependent dispatch. Prints one line per item, sorted
// per size, and the best read per size. NOTES.md, "the read floor of a chained dispatch".
//   deno run -A bench/read_probe.ts [f16 GEMV config] [f32 GEMV config]
import { compileKernel, dispatchKernel, kernelBindGroup, paramsBuffer } from "../kernels/gpu.ts";
import { storageBuffer } from "../kernels/gpu.ts";
import { parseConfigName } from "../kernels/config.ts";
import { packWeights } from "../kernels/dtype.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { fusedShape, kimiLinearSpec } from "../kernels/problem.ts";
import { openGpu } from "../tuner/gpu_device.ts";
import { GpuHeater } from "../tuner/heater.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";
import type { TimedItem } from "../tuner/timing.ts";
import { timeItems } from "../tuner/timing.ts";

const { device } = await openGpu();
const heater = new GpuHeater(device);
heater.start();
const S = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
const shape = fusedShape(kimiLinearSpec({ tp: 4 }));
const random = seededRandom(1);
/** READ_PROBE_SMALL=1: tiny sizes, for a check on a software adapter. */
const small = Deno.env.get("READ_PROBE_SMALL") === "1";
const PAST_L2 = small ? 4e6 : 200e6;

/** Copies of `bytes` of random data, together past the L2 (at least 200 MB). */
function rotated(bytes: number): GPUBuffer[] {
  const chunk = new Uint32Array(1 << 22).map(() => (random() * 2 ** 32) >>> 0);
  return Array.from({ length: Math.max(2, Math.ceil(PAST_L2 / bytes)) }, () => {
    const b = device.createBuffer({ size: bytes, usage: S });
    for (let at = 0; at < bytes; at += chunk.byteLength) {
      device.queue.writeBuffer(b, at, chunk, 0, Math.min(chunk.length, (bytes - at) / 4));
    }
    return b;
  });
}

/** WebGPU's default limit of workgroups per grid dimension (a larger grid fails the submit). */
const MAX_GRID = device.limits.maxComputeWorkgroupsPerDimension;
const out = device.createBuffer({ size: 1 << 22, usage: S });
function pipeline(code: string): GPUComputePipeline {
  const module = device.createShaderModule({ code });
  return device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
}
const HEAD = `@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;`;
const KEEP = "  if (acc.x == 1.5e38) { o[g.x % 1024u] = acc.y; } // never true: keeps the loads";
const sum = (n: number) => Array.from({ length: n }, (_, u) => `v${u}`).join(" + ");

/** Grid-stride read: `unroll` loads per thread per trip, all issued before they are summed. */
function gridStride(unroll: number): string {
  const loads = Array.from(
    { length: unroll },
    (_, u) => `    let v${u} = src[min(i + ${u}u * stride, total - 1u)];`,
  );
  return `${HEAD}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let total = arrayLength(&src);
  let stride = nw.x * 256u;
  var acc = vec4<f32>(0.0);
  for (var i = g.x; i < total; i += stride * ${unroll}u) {
${loads.join("\n")}
    acc += ${sum(unroll)};
  }
${KEEP}
}`;
}

/** One-shot read: each thread loads `per` vectors, neighbours at neighbouring addresses. */
function cover(wg: number, per: number): string {
  const loads = Array.from(
    { length: per },
    (_, u) => `  let v${u} = src[min(base + ${u * wg}u, total - 1u)];`,
  );
  return `${HEAD}
@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(workgroup_id) w: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let total = arrayLength(&src);
  let base = w.x * ${wg * per}u + li;
${loads.join("\n")}
  let acc = ${sum(per)};
${KEEP}
}`;
}

interface Row {
  label: string;
  mb: number;
  item: TimedItem;
}
const rows: Row[] = [];
const empty = pipeline(`${HEAD}
@compute @workgroup_size(1) fn main(@builtin(global_invocation_id) g: vec3u) {
  let acc = src[0];
${KEEP}
}`);
const tiny = device.createBuffer({ size: 16, usage: S });
const emptyGroup = device.createBindGroup({
  layout: empty.getBindGroupLayout(0),
  entries: [{ binding: 0, resource: { buffer: tiny } }, { binding: 1, resource: { buffer: out } }],
});
rows.push({
  label: "empty dispatch, 1 workgroup",
  mb: 0,
  item: {
    encode: (pass) => {
      pass.setPipeline(empty);
      pass.setBindGroup(0, emptyGroup);
      pass.dispatchWorkgroups(1);
    },
  },
});

const readers = [
  ...[1, 2, 4, 8].map((u) => ({ name: `grid-stride u${u}`, p: pipeline(gridStride(u)), u })),
  ...[64, 128, 256].flatMap((wg) =>
    [1, 2, 4, 8].map((per) => ({
      name: `cover wg${wg} x${per}`,
      p: pipeline(cover(wg, per)),
      wg,
      per,
    }))
  ),
];
const sizes = [2, 4, 16].map((f) => shape.n * shape.k * f);
for (const bytes of small ? [1 << 20] : sizes) {
  const srcs = rotated(bytes);
  const vecs = bytes / 16;
  for (const r of readers) {
    const groups = srcs.map((s) =>
      device.createBindGroup({
        layout: r.p.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: { buffer: s } }, {
          binding: 1,
          resource: { buffer: out },
        }],
      })
    );
    const grids = "u" in r
      ? (small ? [16] : [132, 264, 528, 1056, 2112, 4224, 8448])
      : [Math.ceil(vecs / (r.wg! * r.per!))].filter((g) => g <= MAX_GRID);
    for (const grid of grids) {
      rows.push({
        label: `${r.name} ${grid} wgs`,
        mb: bytes / 1e6,
        item: {
          encode: (pass, rep) => {
            pass.setPipeline(r.p);
            pass.setBindGroup(0, groups[rep % groups.length]);
            pass.dispatchWorkgroups(grid);
          },
        },
      });
    }
  }
}

/** The tuned m = 1 fused GEMV of `dtype` on rotated weights of the fused shape. */
async function gemvRow(name: string, dtype: WeightDtype): Promise<Row> {
  const kernel = await compileKernel(device, parseConfigName(name), shape, dtype);
  const w = packWeights(randomNonZero(shape.n * shape.k, random), dtype);
  const x = storageBuffer(device, randomNonZero(shape.k, random), "x");
  const y = device.createBuffer({ size: shape.n * 4, usage: S });
  const params = paramsBuffer(device, 1);
  const groups = Array.from(
    { length: Math.ceil(PAST_L2 / w.byteLength) },
    () => kernelBindGroup(device, { params, x, w: storageBuffer(device, w, "w"), y }),
  );
  return {
    label: `GEMV ${dtype} ${name}`,
    mb: w.byteLength / 1e6,
    item: { encode: (pass, rep) => dispatchKernel(pass, kernel, groups[rep % groups.length], 1) },
  };
}
rows.push(await gemvRow(Deno.args[0] ?? "gemv-nc2-cn1-l16-rm1-v8-sg", "f16"));
rows.push(await gemvRow(Deno.args[1] ?? "gemv-nc2-cn1-l32-rm1-v4-sg", "f32"));

heater.stop();
device.pushErrorScope("validation");
for (const round of [1, 2]) {
  const times = await timeItems(device, rows.map((r) => r.item), { warmup: 3, repeats: 15 });
  console.log(`\nround ${round} (${rows.length} items, interleaved, chained runs)`);
  const order = rows.map((r, i) => ({ ...r, t: times[i] })).sort((a, b) =>
    a.mb - b.mb || a.t.medianUs - b.t.medianUs
  );
  for (const r of order) {
    const rate = r.mb ? `${(r.mb / r.t.medianUs).toFixed(2)} TB/s` : "";
    console.log(
      `${r.mb.toFixed(1).padStart(6)} MB  ${r.t.medianUs.toFixed(2).padStart(8)} us  ${
        rate.padEnd(10)
      } spread ${r.t.spreadPct.toFixed(0).padStart(2)}%  ${r.label}`,
    );
  }
}
const error = await device.popErrorScope();
if (error) console.log(`validation error (the timings above are void): ${error.message}`);
await heater.destroy();
