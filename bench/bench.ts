/**
 * `deno task bench`: times the dispatcher on this GPU per bucket and weight type, against the
 * floor, the untuned defaults, the best single config, the unfused projections and (with
 * `--torch`, on the GPU machine) PyTorch; prints a table, writes JSON and an SVG chart under
 * bench/results/.
 *
 * Every variant runs through `createProjection`, with weights rotated over copies whose total
 * is past the L2, inside one process and one heater-warmed session, and the variants of a weight
 * type are timed in the same submits, interleaved, so ratios come from one measurement.
 * Each run waits for the one before (chain.ts), as the tuner's runs do, and timings taken while
 * the GPU's clock moved are measured again (tuner/clock_probe.ts).
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { CacheEntry } from "../cache/schema.ts";
import { cacheFileName, problemKey } from "../cache/schema.ts";
import type { Projection, ProjectionOptions } from "../dispatch/projection.ts";
import { createProjection } from "../dispatch/create.ts";
import type { Precision, WeightDtype } from "../kernels/dtype.ts";
import { parseWeightLabel } from "../kernels/dtype.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { batchedInputWidth, fusedWidth, projectionFlops, weightBytes } from "../kernels/problem.ts";
import { DEFAULT_BUCKETS } from "../tuner/problems.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";
import { formatTable } from "../tuner/report.ts";
import { timeItems } from "../tuner/timing.ts";
import { cacheWith } from "./cache_with.ts";
import { ceilingsOf } from "./ceilings.ts";
import { mergeReports, readReport } from "./report_file.ts";
import type { Row } from "./row.ts";
import { chainedInput, openSession } from "./session.ts";

const USAGE = `Usage: deno task bench [options]

Times the tuned projection (and the baselines: the default configs, unfused, the best single
config, the fused GEMM alone; --torch adds PyTorch) per m bucket on this GPU, with the tuner's
timing, and writes a JSON report and a chart under --out.

Options:
  --problem <p>     problem name or YAML file (default kimi-linear-tp4)
  --dtype <list>    weight types, comma-separated (default f32,f16,bf16); f16-fast is f16
                    with precision "fast" (its own tuning: deno task tune --precision fast)
  --buckets <list>  m buckets, comma-separated (default the tuner's 15)
  --torch           also run bench/torch_bench.py (needs python3 with torch and CUDA)
  --out <dir>       where the report goes (default bench/results); a report there of the same
                    problem and GPU keeps its rows of the weight types this run does not time
  --cache-dir <d>   the tuned cache folder (default cache)
  --rotate-mb <n>   weight megabytes to rotate through, beyond the L2 (default 160)
  --repeats <n>     timed samples per item (default 15)
  -h, --help        show this help
`;

/** The command line's values; a bad flag prints the usage and exits 2, --help prints it. */
function parseBenchArgs(argv: string[]) {
  const options = {
    problem: { type: "string", default: "kimi-linear-tp4" },
    dtype: { type: "string", default: "f32,f16,bf16" },
    buckets: { type: "string" },
    torch: { type: "boolean", default: false },
    out: { type: "string", default: "bench/results" },
    "cache-dir": { type: "string", default: "cache" },
    "rotate-mb": { type: "string", default: "160" },
    repeats: { type: "string", default: "15" },
    help: { type: "boolean", short: "h", default: false },
  } as const;
  try {
    const { values } = parseArgs({ args: argv, options });
    if (values.help) {
      console.log(USAGE);
      Deno.exit(0);
    }
    return values;
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${USAGE}`);
    Deno.exit(2);
  }
}

const args = parseBenchArgs(Deno.args);
// Checked before the session opens, so that a bad label stops the run before its minutes.
const weightTypes = args.dtype.split(",").map(parseWeightType);

const session = await openSession(args.problem, args["cache-dir"]);
const { gpu, probe, spec, fingerprint, cachePath, cache } = session;
const device = gpu.device;
const base = `${args.out}/${cacheFileName(fingerprint).replace(/\.json$/, "")}-${spec.name}`;
// Read before timing, so that a file that is not a report stops the run before its minutes.
const earlier = await readReport(`${base}.json`).catch((e: Error) => {
  console.error(e.message);
  Deno.exit(1);
});
let worstDriftPct = 0;
const ceilings = ceilingsOf(gpu.adapter.info.description);
const buckets = args.buckets ? args.buckets.split(",").map(Number) : DEFAULT_BUCKETS;
const maxM = Math.max(...buckets);
const random = seededRandom(7);
// Each run waits for the one before, as in a model; the links' own cost is taken off.
const { x, chain, link } = await chainedInput(session, maxM, random, Number(args.repeats));
const torch = args.torch ? await runTorch(spec, buckets) : [];
console.error(
  `GPU: ${fingerprint.description}; cache ${cache ? cachePath : "none (tuned = default)"}`,
);

const rows: Row[] = [];
const summaries: string[] = [];
for (const weightType of weightTypes) {
  const measured = await benchWeightType(weightType);
  rows.push(...measured.rows);
  summaries.push(measured.summary);
}
await session.close();
chain.destroy();
console.log(`chain link: ${link.medianUs.toFixed(2)} us per run, taken off every time`);
if (probe) {
  console.log(
    `clock probe: ${probe.referenceUs.toFixed(2)} us per run; settled ${probe.settles} times in ${
      (probe.settleMs / 1000).toFixed(1)
    } s; worst drift of a kept timing ${worstDriftPct.toFixed(1)}%`,
  );
}
await report(rows, summaries);

/** A `--dtype` label's weight type and precision; a bad label prints why and exits 2. */
function parseWeightType(label: string) {
  try {
    return { label, ...parseWeightLabel(label) };
  } catch (e) {
    console.error(`--dtype ${label}: ${(e as Error).message}`);
    Deno.exit(2);
  }
}

/**
 * Every column of every bucket for one weight type: the tuned projection, the defaults, the
 * unfused projection, the fused stage alone and the best single pair, timed in shared submits.
 */
async function benchWeightType(
  { label, dtype, precision }: ReturnType<typeof parseWeightType>,
): Promise<{ rows: Row[]; summary: string }> {
  const weights = {
    fused: randomNonZero(fusedWidth(spec) * spec.k, random),
    batched: spec.batched
      ? randomNonZero(spec.batched.inputs.length * spec.batched.n * batchedInputWidth(spec), random)
      : undefined,
  };
  const bytes = weightBytes(spec, dtype);
  const copies = Math.max(1, Math.min(12, Math.ceil(Number(args["rotate-mb"]) * 1e6 / bytes)));
  const entry = cache?.entries[problemKey(spec, dtype, precision)];
  const options: ProjectionOptions = { weights, dtype, precision, cache: cache ?? false };
  const runnable = await runnableBuckets(label, options);
  // The best single pair is chosen first; then every variant is timed in the same submits, so
  // that a drift of the clock between variants cannot make one of them look faster.
  const bestSingle = entry
    ? await bestSingleConfig(entry, weights, dtype, precision, copies, runnable)
    : undefined;
  const variants: Variant[] = [
    { spec, options },
    { spec, options: { weights, dtype, precision, cache: false } }, // the untuned defaults
    ...(entry
      ? [
        { spec, options: { ...options, mode: "unfused" as const } },
        fusedStageVariant(entry, weights.fused, dtype, precision),
        ...(bestSingle ? [bestSingle.variant] : []),
      ]
      : []),
  ];
  const timed = await timeVariants(variants, copies);
  const [tuned, defaults, unfused, fusedStage, single] = timed;
  const rowsAt = runnable.filter((m) => defaults.times.has(m));
  if (rowsAt.length < runnable.length) {
    const over = runnable.filter((m) => !defaults.times.has(m)).join(", ");
    console.error(`${label}: m = ${over} left out: over the untuned defaults' row limit`);
  }
  const mine = rowsAt.map((m): Row => {
    const t = tuned.times.get(m)!;
    const config = tuned.projection.config(m);
    const peer = torch.find((r) => r.m === m && r.dtype === dtype);
    return {
      dtype: label,
      m,
      tunedUs: t,
      mode: config.source === "default" ? "default" : config.mode,
      fusedConfig: config.fused,
      batchedConfig: config.batched,
      fusedStageUs: fusedStage?.times.get(m) ?? null,
      defaultUs: defaults.times.get(m)!,
      bestSingleUs: single?.times.get(m) ?? null,
      // Only where the unfused variant ran unfused: a bucket with no tuned unfused configs runs
      // fused in mode "unfused", and its time is not the unfused projection's.
      unfusedUs: unfused?.projection.config(m).mode === "unfused"
        ? unfused.times.get(m) ?? null
        : null,
      floorUs: floorUs(m, bytes),
      tflops: projectionFlops(spec, m) / t / 1e6,
      gbps: (bytes + 4 * m * (spec.k + fusedWidth(spec))) / t / 1e3,
      torchAfterUs: peer?.after_us,
      torchGemmUs: peer?.gemm_us,
    };
  });
  for (const v of timed) v.projections.forEach((p) => p.destroy());
  return { rows: mine, summary: summaryOf(label, mine, bestSingle?.name) };
}

/**
 * The buckets the tuned projection can run on this device: those over its row limit (a buffer
 * past the device's binding size) are left out with a line saying so.
 */
async function runnableBuckets(label: string, options: ProjectionOptions): Promise<number[]> {
  const projection = await createProjection(device, spec, options);
  const limit = projection.maxRows;
  projection.destroy();
  const over = buckets.filter((m) => m > limit);
  if (over.length) {
    console.error(`${label}: m = ${over.join(", ")} left out: over this device's ${limit} rows`);
  }
  return buckets.filter((m) => m <= limit);
}

/** The larger of memory and FP32 time at this GPU's ceilings; null for a GPU without them. */
function floorUs(m: number, bytes: number): number | null {
  if (!ceilings) return null;
  const outputs = fusedWidth(spec) +
    (spec.batched ? spec.batched.outputs.length * spec.batched.n : 0);
  return Math.max(
    (bytes + 4 * m * (spec.k + outputs)) / ceilings.bytesPerS * 1e6,
    projectionFlops(spec, m) / ceilings.flops * 1e6,
  );
}

/** One weight type's summary line: geometric means of the tuned speed-ups, and fusion's. */
function summaryOf(label: string, mine: Row[], bestSingleName: string | undefined): string {
  const geo = (f: (r: Row) => number | null) => {
    const ratios = mine.map(f).filter((v): v is number => v !== null && Number.isFinite(v));
    return ratios.length
      ? Math.exp(ratios.reduce((s, r) => s + Math.log(r), 0) / ratios.length)
      : NaN;
  };
  const fusion = mine.map((r) => (r.unfusedUs ?? NaN) / r.tunedUs).filter(Number.isFinite);
  return `${label}: tuned vs best single config (${bestSingleName ?? "-"}) geomean ${
    geo((r) => r.bestSingleUs && r.bestSingleUs / r.tunedUs).toFixed(2)
  }x; vs defaults ${geo((r) => r.defaultUs / r.tunedUs).toFixed(2)}x; fused vs unfused at m=1 ${
    ratio(mine[0]?.unfusedUs, mine[0]?.tunedUs)
  }, lowest over buckets ${fusion.length ? `${Math.min(...fusion).toFixed(2)}x` : "-"}`;
}

function ratio(a: number | null | undefined, b: number | null | undefined): string {
  return a && b ? `${(a / b).toFixed(2)}x` : "-";
}

/** A projection to time: its problem, options, and the buckets it is timed at (default all). */
interface Variant {
  spec: ProjectionSpec;
  options: ProjectionOptions;
  only?: number[];
}

/**
 * Times variants at their buckets in shared submits, one bucket at a time (each variant's runs
 * interleaved with the others' round by round); `copies` projections of each rotate the weights.
 * One bucket a submit, as the tuner times: in one submit of every bucket, each round put the first
 * bucket's items right after the last bucket's, a GEMM of thousands of rows.
 */
async function timeVariants(variants: Variant[], copies: number) {
  const made: { projections: Projection[]; only: number[] }[] = [];
  for (const v of variants) {
    const projections: Projection[] = [];
    for (let i = 0; i < copies; i++) {
      projections.push(await createProjection(device, v.spec, v.options));
    }
    // A bucket over the device's row limit for this projection cannot run: left out.
    made.push({
      projections,
      only: (v.only ?? buckets).filter((m) => m <= projections[0].maxRows),
    });
  }
  const times = made.map(() => new Map<number, number>());
  for (const m of buckets) {
    const at = made.flatMap((v, i) => (v.only.includes(m) ? [i] : []));
    if (at.length === 0) continue;
    const timings = await timeItems(device, at.map((i) => chained(made[i].projections, m)), {
      warmup: 3,
      repeats: Number(args.repeats),
      probe,
    });
    worstDriftPct = Math.max(worstDriftPct, ...timings.map((t) => t.driftPct ?? 0));
    at.forEach((i, j) => times[i].set(m, timings[j].medianUs - link.medianUs));
  }
  return made.map((v, i) => ({
    projection: v.projections[0],
    projections: v.projections,
    times: times[i],
  }));
}

/** A timed item: the next of the projections at m, then the chain link. */
function chained(projections: Projection[], m: number) {
  return {
    encode: (pass: GPUComputePassEncoder, rep: number) => {
      const out = projections[rep % projections.length].dispatch(pass, x, m);
      chain.link(pass, out.batched ?? out.fused);
    },
  };
}

/** Times one variant at its buckets (the best single pair's candidates, one after another). */
async function timeVariant(variant: Variant, copies: number) {
  return (await timeVariants([variant], copies))[0];
}

/** The fused GEMM alone, with the tuned fused configs (a spec without the batched stage). */
function fusedStageVariant(
  entry: CacheEntry,
  fused: Float32Array,
  dtype: WeightDtype,
  precision: Precision,
): Variant {
  const alone: ProjectionSpec = { ...spec, name: `${spec.name}-fused`, batched: undefined };
  const file = cacheWith(
    fingerprint,
    alone,
    dtype,
    precision,
    (m) => ({ fused: entry.buckets[m].fused.config, batched: null }),
    Object.keys(entry.buckets),
  );
  return { spec: alone, options: { weights: { fused }, dtype, precision, cache: file } };
}

/**
 * The best single (fused, batched) config pair for all buckets, as a variant to time with the
 * others: every distinct tuned winner, timed at every bucket of `scored`; the pair with the
 * lowest geometric mean time wins. GEMV winners are
 * not timed past 64 rows, where they re-read the weights once per few rows.
 */
async function bestSingleConfig(
  entry: CacheEntry,
  weights: ProjectionOptions["weights"],
  dtype: WeightDtype,
  precision: Precision,
  copies: number,
  scored: number[],
) {
  const pairs = new Map<string, { fused: string; batched: string | null }>();
  for (const b of Object.values(entry.buckets)) {
    pairs.set(`${b.fused.config} + ${b.batched?.config ?? "-"}`, {
      fused: b.fused.config,
      batched: b.batched?.config ?? null,
    });
  }
  let best: { name: string; variant: Variant; score: number } | undefined;
  for (const [name, pair] of pairs) {
    const gemv = pair.fused.startsWith("gemv") || (pair.batched ?? "").startsWith("gemv");
    const usable = scored.filter((m) => !gemv || m <= 64);
    const file = cacheWith(
      fingerprint,
      spec,
      dtype,
      precision,
      () => pair,
      Object.keys(entry.buckets),
    );
    const variant = { spec, options: { weights, dtype, precision, cache: file }, only: usable };
    const v = await timeVariant(variant, copies);
    v.projections.forEach((p) => p.destroy());
    const times = new Map(scored.map((m) => [m, v.times.get(m) ?? Infinity]));
    const score = [...times.values()].reduce((s, t) => s + Math.log(t), 0);
    if (!best || score < best.score) best = { name, variant, score };
  }
  return best;
}

/** Runs the PyTorch peer (bench/torch_bench.py) for a Kimi Linear problem. */
async function runTorch(s: ProjectionSpec, ms: number[]) {
  const tp = /^kimi-linear-tp(\d+)$/.exec(s.name)?.[1];
  if (!tp) return [];
  const out = await new Deno.Command("python3", {
    args: ["bench/torch_bench.py", tp, ms.join(","), "bf16,f16,f32"],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.startsWith("{")).map((
    l,
  ) => JSON.parse(l) as { m: number; dtype: WeightDtype; after_us: number; gemm_us: number });
}

/** Prints the table and summaries; writes JSON and the SVG chart. */
async function report(all: Row[], lines: string[]) {
  const f = (
    v: number | null | undefined,
    d = 1,
  ) => (v === null || v === undefined || !Number.isFinite(v) ? "-" : v.toFixed(d));
  console.log(formatTable(
    [
      "dtype",
      "m",
      "tuned us",
      "mode",
      "TFLOP/s",
      "GB/s",
      "floor us",
      "% floor",
      "default",
      "best 1",
      "unfused",
      "fusion",
      "fused GEMM",
      "torch",
      "vs torch",
    ],
    all.map((r) => [
      r.dtype,
      String(r.m),
      f(r.tunedUs),
      r.mode,
      f(r.tflops, 2),
      f(r.gbps, 0),
      f(r.floorUs),
      r.floorUs === null ? "-" : f((r.floorUs / r.tunedUs) * 100, 0),
      f(r.defaultUs),
      f(r.bestSingleUs),
      f(r.unfusedUs),
      ratio(r.unfusedUs, r.tunedUs),
      f(r.fusedStageUs),
      f(r.torchAfterUs),
      ratio(r.torchAfterUs, r.tunedUs),
    ]),
  ));
  for (const l of lines) console.log(l);
  await Deno.mkdir(args.out, { recursive: true });
  const meta = {
    problem: spec.name,
    gpu: fingerprint,
    date: new Date().toISOString(),
    deno: Deno.version.deno,
    /** Each timing is of chained runs, with this link cost per run taken off (chain.ts). */
    linkUs: link.medianUs,
    /** The clock probe's steady time per run, microseconds (tuner/clock_probe.ts). */
    probeUs: probe?.referenceUs ?? null,
    worstDriftPct,
  };
  const merged = mergeReports(earlier, { meta, summaries: lines, rows: all });
  for (const k of merged.meta.kept ?? []) {
    console.log(`kept the ${k.dtype} rows of ${k.date} from the report this one replaces`);
  }
  await Deno.writeTextFile(`${base}.json`, JSON.stringify(merged, null, 2) + "\n");
  console.log(`wrote ${base}.json`);
  try {
    // The chart library is not carried to the GPU machine: there, run bench/chart.ts later.
    const { renderChart } = await import("./chart.ts");
    await Deno.writeTextFile(
      `${base}.svg`,
      await renderChart(merged.rows, `${spec.name} on ${fingerprint.description}`),
    );
    console.log(`wrote ${base}.svg`);
  } catch (e) {
    console.log(
      `no chart (${(e as Error).message.split("\n")[0]}): deno run -A bench/chart.ts ${base}.json`,
    );
  }
}
