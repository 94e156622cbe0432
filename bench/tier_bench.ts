/**
 * The dispatcher on the device a user made: the same projection and weights on a device from
 * `requestTunedDevice(adapter)` and on one from a plain `adapter.requestDevice()` (WebGPU's
 * default limits, no subgroups), timed in one run with GPU timestamps, weights rotated past
 * the L2 and with the L2 warm, in alternating rounds (median round) after both GPUs' heaters ran
 * for 3 s, so that the GPU clock's rise hits both alike. Both devices also ask for "timestamp-query", which the kernels
 * do not use, so that they can be timed.
 *
 *   deno run -A bench/tier_bench.ts [--problem kimi-linear-tp4] [--dtype f16] [--buckets 1,4,16]
 *
 * Prints a table and writes bench/results/<gpu>-<problem>-tiers.json.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { adapterFingerprint, cacheFileName } from "../cache/schema.ts";
import { createProjection, requestTunedDevice } from "../mod.ts";
import type { Projection, WeightDtype } from "../mod.ts";
import { batchedInputWidth, fusedWidth, weightBytes } from "../kernels/problem.ts";
import { isSoftwareAdapter } from "../tuner/gpu_device.ts";
import { GpuHeater } from "../tuner/heater.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";
import { timeItems } from "../tuner/timing.ts";
import { loadProblem } from "../tuner/yaml_file.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    problem: { type: "string", default: "kimi-linear-tp4" },
    dtype: { type: "string", default: "f16" },
    buckets: { type: "string", default: "1,4,16" },
    "rotate-mb": { type: "string", default: "160" },
    repeats: { type: "string", default: "30" },
    rounds: { type: "string", default: "5" },
  },
});
const spec = await loadProblem(
  new URL(`../problems/${args.problem}.yaml`, import.meta.url).pathname,
);
const dtype = args.dtype as WeightDtype;
const buckets = args.buckets.split(",").map(Number);
const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) throw new Error("Cannot time tiers: no WebGPU adapter");
const software = isSoftwareAdapter(adapter);
const timestamps: GPUFeatureName[] = adapter.features.has("timestamp-query")
  ? ["timestamp-query"]
  : [];
const devices: [string, GPUDevice][] = [
  ["requestTunedDevice", await requestTunedDevice(adapter, { requiredFeatures: timestamps })],
  ["plain requestDevice", await adapter.requestDevice({ requiredFeatures: timestamps })],
];
const random = seededRandom(11);
const weights = {
  fused: randomNonZero(fusedWidth(spec) * spec.k, random),
  batched: spec.batched
    ? randomNonZero(spec.batched.inputs.length * spec.batched.n * batchedInputWidth(spec), random)
    : undefined,
};
const xValues = randomNonZero(Math.max(...buckets) * spec.k, random);
const rotate = Math.max(1, Math.ceil(Number(args["rotate-mb"]) * 1e6 / weightBytes(spec, dtype)));

interface Row {
  device: string;
  m: number;
  rotatedUs: number;
  l2WarmUs: number;
  source: string;
  tier: string | null;
  fused: string;
  batched: string | null;
  reason: string | null;
}
/** A device's projections (weight copies), input, heater and warnings. */
interface Setup {
  name: string;
  device: GPUDevice;
  projections: Projection[];
  x: GPUBuffer;
  heater?: GpuHeater;
  warnings: string[];
}
const setups: Setup[] = [];
for (const [name, device] of devices) {
  const warnings: string[] = [];
  const onWarning = (w: string) => warnings.push(w);
  const projections: Projection[] = [];
  for (let i = 0; i < rotate; i++) {
    projections.push(await createProjection(device, spec, { weights, dtype, onWarning }));
  }
  const x = device.createBuffer({
    size: xValues.byteLength,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(x, 0, xValues as Float32Array<ArrayBuffer>);
  // A software adapter has no clock to raise; heating it only slows it down.
  const heater = software ? undefined : new GpuHeater(device);
  setups.push({ name, device, projections, x, heater, warnings });
}
// The GPU clock idles low and rises under load: heat the GPU for a while, then time the devices
// in alternating rounds so that a clock change hits both alike, and keep each one's median
// round. Only the device being timed heats (two devices' work would share the GPU).
const heatOnly = async (s: Setup) => {
  for (const o of setups.filter((o) => o !== s)) {
    o.heater?.stop();
    await o.device.queue.onSubmittedWorkDone();
  }
  s.heater?.start();
};
await heatOnly(setups[0]);
if (!software) await new Promise((r) => setTimeout(r, 3000));
const time = (s: Setup, copies: number) =>
  timeItems(
    s.device,
    buckets.map((m) => ({
      encode: (pass: GPUComputePassEncoder, rep: number) => {
        s.projections[rep % copies].dispatch(pass, s.x, m);
      },
    })),
    { warmup: 5, repeats: Number(args.repeats) },
  );
const rounds = new Map(
  setups.map((s) => [s.name, { rotated: [] as number[][], warm: [] as number[][] }]),
);
for (let round = 0; round < Number(args.rounds); round++) {
  for (const s of setups) {
    await heatOnly(s);
    rounds.get(s.name)!.rotated.push((await time(s, rotate)).map((t) => t.medianUs));
    rounds.get(s.name)!.warm.push((await time(s, 1)).map((t) => t.medianUs));
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows: Row[] = [];
for (const s of setups) {
  const r = rounds.get(s.name)!;
  buckets.forEach((m, i) => {
    const c = s.projections[0].config(m);
    rows.push({
      device: s.name,
      m,
      rotatedUs: median(r.rotated.map((round) => round[i])),
      l2WarmUs: median(r.warm.map((round) => round[i])),
      source: c.source,
      tier: c.tier,
      fused: c.fused,
      batched: c.batched,
      reason: c.reason,
    });
  });
  await s.heater?.destroy();
  s.projections.forEach((p) => p.destroy());
  s.x.destroy();
  console.error(
    `${s.name}: ${s.warnings.length} warning(s)${s.warnings.length ? `: ${s.warnings[0]}` : ""}`,
  );
}

console.log(
  `${adapter.info.description}, ${spec.name} ${dtype}, weights rotated over ${rotate} copies`,
);
console.log(
  "| m | device | rotated us | L2-warm us | plain / tuned (rotated) | source | tier | fused | batched |",
);
console.log("|---|---|---|---|---|---|---|---|---|");
for (const r of rows) {
  const tuned = rows.find((t) => t.m === r.m && t.device === "requestTunedDevice")!;
  console.log(
    `| ${r.m} | ${r.device} | ${r.rotatedUs.toFixed(1)} | ${r.l2WarmUs.toFixed(1)} | ${
      (r.rotatedUs / tuned.rotatedUs).toFixed(2)
    }x | ${r.source} | ${r.tier ?? "-"} | ${r.fused} | ${r.batched ?? "-"} |`,
  );
}
const gpuName = cacheFileName(adapterFingerprint(adapter.info)).replace(/\.json$/, "");
const out = new URL(`results/${gpuName}-${spec.name}-${dtype}-tiers.json`, import.meta.url);
await Deno.writeTextFile(
  out,
  JSON.stringify({ gpu: adapter.info.description, rows }, null, 2) + "\n",
);
console.error(`wrote ${out.pathname}`);
for (const [, device] of devices) device.destroy();
