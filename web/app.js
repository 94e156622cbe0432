// The example page: runs the dispatcher bundle on this browser's WebGPU adapter and checks every
// output against a float64 CPU reference. Query parameters: ?tp=8&seed=1&rows=1,3,64.
// Results go to the page, to <pre id="results"> and to window.__results (for tests/browser_test.ts).
import { createProjection, kimiLinearSpec, requestTunedDevice } from "../dist/projection.js";

const query = new URLSearchParams(location.search);
const TP = Number(query.get("tp") ?? 8);
const SEED = Number(query.get("seed") ?? 1);
const ROWS = (query.get("rows") ?? "1,3,64").split(",").map(Number);
/** Timed repeats of each run after the first. */
const REPEATS = 3;
/**
 * Largest max |error| / max |reference| an output may have with f32 weights. f32 accumulation
 * over k = 2304 terms is off by about 1e-6 of that scale; a wrong index or a missed term is
 * off by 1e-2 or more.
 */
const TOLERANCE = 1e-4;

const results = {
  finished: false,
  passed: false,
  seed: SEED,
  dtype: "f32",
  tolerance: TOLERANCE,
  spec: null,
  adapter: null,
  device: null,
  createMs: null,
  runs: [],
  checks: [],
  errors: [],
};
globalThis.__results = results;

const $ = (selector) => document.querySelector(selector);

function showResults() {
  $("#results").textContent = JSON.stringify(results, null, 2);
}

/** Records an error on the page and in the results. */
function reportError(where, error) {
  const message = error instanceof Error
    ? `${error.name}: ${error.message}`
    : String(error?.message ?? error);
  results.errors.push(`${where}: ${message}`);
  const li = document.createElement("li");
  li.textContent = `${where}: ${message}`;
  $("#errors").append(li);
  showResults();
}

globalThis.addEventListener("error", (e) => reportError("uncaught error", e.error ?? e.message));
globalThis.addEventListener(
  "unhandledrejection",
  (e) => reportError("unhandled rejection", e.reason),
);

/** mulberry32: floats in [0, 1) from a 32-bit seed, so every run sees the same data. */
function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `length` values uniform in [-scale, scale). */
function randomValues(length, random, scale) {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = (2 * random() - 1) * scale;
  return out;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/**
 * The projection in float64: the fused output is x · W^T over the concatenated segments, and
 * each batched output reads its input segment's columns of the fused output.
 *
 * @returns Each output as a `[m, n]` Float64Array, by name.
 */
function reference(spec, weights, x, m) {
  const { k } = spec;
  const width = spec.segments.reduce((sum, s) => sum + s.n, 0);
  const fused = new Float64Array(m * width);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < width; c++) {
      let sum = 0;
      for (let t = 0; t < k; t++) sum += x[r * k + t] * weights.fused[c * k + t];
      fused[r * width + c] = sum;
    }
  }
  const out = {};
  let offset = 0;
  const offsets = {};
  for (const s of spec.segments) {
    offsets[s.name] = offset;
    const y = new Float64Array(m * s.n);
    for (let r = 0; r < m; r++) {
      for (let c = 0; c < s.n; c++) y[r * s.n + c] = fused[r * width + offset + c];
    }
    out[s.name] = y;
    offset += s.n;
  }
  const b = spec.batched;
  if (b) {
    b.inputs.forEach((input, i) => {
      const kb = spec.segments.find((s) => s.name === input).n;
      const y = new Float64Array(m * b.n);
      for (let r = 0; r < m; r++) {
        for (let c = 0; c < b.n; c++) {
          let sum = 0;
          for (let t = 0; t < kb; t++) {
            sum += fused[r * width + offsets[input] + t] * weights.batched[(i * b.n + c) * kb + t];
          }
          y[r * b.n + c] = sum;
        }
      }
      out[b.outputs[i]] = y;
    });
  }
  return out;
}

/** Max absolute error and max absolute error relative to the largest reference value. */
function compare(got, expected) {
  let maxAbs = 0, scale = 0;
  for (let i = 0; i < expected.length; i++) {
    const error = Math.abs(got[i] - expected[i]);
    maxAbs = Number.isNaN(error) ? Infinity : Math.max(maxAbs, error); // NaN fails
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  if (got.length !== expected.length) maxAbs = Infinity;
  return { maxAbs, maxRel: scale > 0 ? maxAbs / scale : maxAbs };
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.append(td);
}

function renderAdapter(adapter, device) {
  const info = adapter.info;
  const rows = [
    ["vendor", info.vendor],
    ["architecture", info.architecture],
    ["device", info.device],
    ["description", info.description],
    ["fallback adapter", String(info.isFallbackAdapter ?? adapter.isFallbackAdapter)],
    ["subgroup sizes", `${info.subgroupMinSize ?? "?"} to ${info.subgroupMaxSize ?? "?"}`],
    ["device features", [...device.features].sort().join(", ")],
    [
      "device limits",
      `${device.limits.maxComputeInvocationsPerWorkgroup} invocations, ` +
      `${device.limits.maxComputeWorkgroupStorageSize} B workgroup memory, ` +
      `${device.limits.maxStorageBufferBindingSize} B storage binding`,
    ],
  ];
  for (const [name, value] of rows) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = name;
    tr.append(th);
    cell(tr, value || "(empty)");
    $("#adapter").append(tr);
  }
}

async function timed(f) {
  const start = performance.now();
  const value = await f();
  return { value, ms: performance.now() - start };
}

async function openDevice() {
  if (!navigator.gpu) {
    throw new Error("navigator.gpu is missing: no WebGPU in this browser, or not a secure context");
  }
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("navigator.gpu.requestAdapter() returned null");
  // The adapter's limits, and subgroups where granted: what the tuned kernels can use.
  const device = await requestTunedDevice(adapter);
  device.lost.then((lost) => {
    if (lost.reason !== "destroyed") reportError("device lost", lost.message || lost.reason);
  });
  device.addEventListener("uncapturederror", (e) => reportError("WebGPU error", e.error));
  const info = adapter.info;
  results.adapter = {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    isFallbackAdapter: info.isFallbackAdapter ?? adapter.isFallbackAdapter ?? null,
    subgroupMinSize: info.subgroupMinSize ?? null,
    subgroupMaxSize: info.subgroupMaxSize ?? null,
  };
  results.device = { features: [...device.features].sort() };
  renderAdapter(adapter, device);
  return device;
}

async function runRows(device, proj, spec, weights, random) {
  for (const m of ROWS) {
    const x = randomValues(m * spec.k, random, 1);
    const config = proj.config(m);
    const first = await timed(() => proj.run(x, m));
    const runMs = [];
    for (let i = 0; i < REPEATS; i++) runMs.push((await timed(() => proj.run(x, m))).ms);
    const xBuffer = device.createBuffer({
      size: x.byteLength,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    device.queue.writeBuffer(xBuffer, 0, x);
    const encodeMs = [];
    for (let i = 0; i < REPEATS; i++) {
      const start = performance.now();
      const encoder = device.createCommandEncoder();
      proj.encode(encoder, xBuffer, m);
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
      encodeMs.push(performance.now() - start);
    }
    xBuffer.destroy();
    const run = {
      m,
      config,
      firstRunMs: first.ms,
      runMs: median(runMs),
      encodeSubmitDoneMs: median(encodeMs),
    };
    results.runs.push(run);
    const tr = document.createElement("tr");
    cell(tr, String(m), "num");
    cell(tr, String(config.bucket), "num");
    cell(tr, config.source);
    cell(tr, config.tier ?? "-"); // the device tier of tuned configs, where the dispatcher has tiers
    cell(tr, config.mode);
    cell(tr, config.mode === "fused" ? config.fused : config.unfused.join(", "), "code");
    cell(tr, config.batched ?? "-", "code");
    for (const ms of [run.firstRunMs, run.runMs, run.encodeSubmitDoneMs]) {
      cell(tr, ms.toFixed(1), "num");
    }
    $("#runs tbody").append(tr);

    const expected = reference(spec, weights, x, m);
    for (const [output, values] of Object.entries(expected)) {
      const got = first.value[output] ?? new Float32Array(0);
      const { maxAbs, maxRel } = compare(got, values);
      const pass = maxRel <= TOLERANCE;
      results.checks.push({ m, output, n: values.length / m, maxAbs, maxRel, pass });
      const row = document.createElement("tr");
      cell(row, String(m), "num");
      cell(row, output);
      cell(row, String(values.length / m), "num");
      cell(row, maxAbs.toExponential(2), "num");
      cell(row, maxRel.toExponential(2), "num");
      cell(row, TOLERANCE.toExponential(0), "num");
      cell(row, pass ? "pass" : "FAIL", pass ? "pass" : "fail");
      $("#checks tbody").append(row);
    }
    showResults();
  }
}

async function main() {
  const device = await openDevice();
  const spec = kimiLinearSpec({ tp: TP });
  results.spec = spec;
  const random = seededRandom(SEED);
  const width = spec.segments.reduce((sum, s) => sum + s.n, 0);
  const kb = spec.segments.find((s) => s.name === spec.batched.inputs[0]).n;
  const weights = {
    fused: randomValues(width * spec.k, random, 1 / Math.sqrt(spec.k)),
    batched: randomValues(
      spec.batched.inputs.length * spec.batched.n * kb,
      random,
      1 / Math.sqrt(kb),
    ),
  };
  $("#problem").textContent = `Problem ${spec.name}: k = ${spec.k}, outputs ` +
    `${spec.segments.map((s) => `${s.name} ${s.n}`).join(", ")}, ` +
    `${spec.batched.outputs.map((name) => `${name} ${spec.batched.n}`).join(", ")}; ` +
    `f32 weights, seed ${SEED}.`;
  const created = await timed(() => createProjection(device, spec, { weights, dtype: "f32" }));
  results.createMs = created.ms;
  const proj = created.value;
  try {
    await runRows(device, proj, spec, weights, random);
  } finally {
    proj.destroy();
  }
}

try {
  await main();
} catch (e) {
  reportError("run", e);
}
const outputs = results.spec
  ? results.spec.segments.length + (results.spec.batched?.outputs.length ?? 0)
  : 0;
const expected = ROWS.length * outputs;
results.passed = results.errors.length === 0 && results.checks.length === expected &&
  results.checks.every((c) => c.pass);
results.finished = true;
$("#status").textContent = results.passed
  ? `Done: all ${results.checks.length} outputs within tolerance (createProjection took ${
    results.createMs.toFixed(0)
  } ms).`
  : "FAILED: see the errors below, and any FAIL rows in the tables.";
$("#status").className = results.passed ? "pass" : "fail";
showResults();
