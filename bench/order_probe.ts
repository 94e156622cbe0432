/**
 * Probe for NOTES.md's open question "at m = 1 the bench reads the defaults faster than tuned,
 * the pair probe the other way round": whether an item's reading depends on the item timed
 * before it in the round. The bench times, round by round, the tuned projection right after the
 * best single pair (an `outer` tile of ~100 us at m = 1) and the defaults right after the tuned
 * one. Here the tuned (T) and default (D) projections are timed at small m, chained as the bench
 * does, in both orders after a big item (B: the largest bucket's tuned pair), without it, after
 * the tuned pair at 16384 rows (L: what precedes the first bucket in the bench's rounds), and
 * with the timing's lead-in run (`TimingOptions.leadIn`: one untimed run of the item before each
 * timed pass).
 *
 *   source .gpu/setup.sh && deno run --cached-only -A bench/order_probe.ts \
 *     [--problem kimi-linear-tp1] [--dtype f32,f16-fast] [--buckets 1,16] [--cache-dir cache]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { problemKey } from "../cache/schema.ts";
import { createProjection } from "../dispatch/create.ts";
import type { Projection, ProjectionOptions } from "../dispatch/projection.ts";
import { batchedInputWidth, fusedWidth } from "../kernels/problem.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";
import { formatTable } from "../tuner/report.ts";
import { timeItems } from "../tuner/timing.ts";
import { cacheWith } from "./cache_with.ts";
import { chainedInput, openSession } from "./session.ts";
import { parseWeightLabel } from "../kernels/dtype.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    problem: { type: "string", default: "kimi-linear-tp1" },
    dtype: { type: "string", default: "f32,f16-fast" },
    buckets: { type: "string", default: "1,16" },
    copies: { type: "string", default: "4" },
    "cache-dir": { type: "string", default: "cache" },
  },
});
const session = await openSession(args.problem, args["cache-dir"]);
const { gpu, probe, spec, fingerprint, cache } = session;
const device = gpu.device;
const buckets = args.buckets.split(",").map(Number);
const copies = Number(args.copies);
const random = seededRandom(7);
/** The bench's last bucket, whose items come just before its first bucket's in every round. */
const LARGEST = 16384;
const { x, chain, link } = await chainedInput(session, LARGEST, random, 15);

/** Median us per run of each projection set at m, chained, the link taken off, and runs a pass. */
async function timeAt(sets: { ps: Projection[]; m: number }[], leadIn: boolean) {
  const items = sets.map(({ ps, m }) => ({
    encode: (pass: GPUComputePassEncoder, rep: number) => {
      const out = ps[rep % ps.length].dispatch(pass, x, m);
      chain.link(pass, out.batched ?? out.fused);
    },
  }));
  const timings = await timeItems(device, items, { warmup: 3, repeats: 15, probe, leadIn });
  return timings.map((t) => `${(t.medianUs - link.medianUs).toFixed(2)}/${t.runsPerPass ?? "-"}`);
}

async function copiesOf(options: ProjectionOptions): Promise<Projection[]> {
  const out: Projection[] = [];
  for (let i = 0; i < copies; i++) out.push(await createProjection(device, spec, options));
  return out;
}

/** The calls made at each m, in order: which projections, in which order, with or without lead-in. */
const SEQUENCE: { sets: ("T" | "D" | "B" | "L")[]; leadIn: boolean }[] = [
  { sets: ["T", "D"], leadIn: false },
  { sets: ["T", "D"], leadIn: true },
  { sets: ["T", "D", "B"], leadIn: false },
  { sets: ["D", "T", "B"], leadIn: false },
  { sets: ["T", "D", "L"], leadIn: false },
  { sets: ["T", "D", "L"], leadIn: true },
  { sets: ["T", "D"], leadIn: false },
];

const rows: string[][] = [];
for (const label of args.dtype.split(",")) {
  const { dtype, precision } = parseWeightLabel(label);
  const entry = cache?.entries[problemKey(spec, dtype, precision)];
  if (!entry) throw new Error(`No tuned entry for ${spec.name} ${label}`);
  const weights = {
    fused: randomNonZero(fusedWidth(spec) * spec.k, random),
    batched: randomNonZero(
      spec.batched!.inputs.length * spec.batched!.n * batchedInputWidth(spec),
      random,
    ),
  };
  const base = { weights, dtype, precision };
  const T = await copiesOf({ ...base, cache: cache! });
  const D = await copiesOf({ ...base, cache: false });
  const largest = Object.keys(entry.buckets).map(Number).sort((a, b) => b - a)[0];
  const big = entry.buckets[String(largest)];
  const pair = { fused: big.fused.config, batched: big.batched?.config ?? null };
  const file = cacheWith(fingerprint, spec, dtype, precision, () => pair, buckets.map(String));
  const B = await copiesOf({ ...base, cache: file });
  for (const m of buckets) {
    const cells: string[] = [label, String(m)];
    // In this order: the first call at m is where the bench's readings went wrong.
    for (const { sets, leadIn } of SEQUENCE) {
      const named = { T: { ps: T, m }, D: { ps: D, m }, B: { ps: B, m }, L: { ps: T, m: LARGEST } };
      const got = await timeAt(sets.map((n) => named[n]), leadIn);
      cells.push(...got.filter((_, i) => sets[i] === "T" || sets[i] === "D"));
    }
    rows.push(cells);
  }
  for (const p of [...T, ...D, ...B]) p.destroy();
}
console.log(`link ${link.medianUs.toFixed(2)} us (taken off every column)`);
console.log("Each cell: median us / runs a timed pass; calls in column order at each m, T tuned,");
console.log(
  "D defaults, B the largest bucket's pair at m, L the tuned one at m = 16384 (as in the bench's rounds;",
);
console.log(
  "neither shown); '+lead': an untimed run before each pass.",
);
const header = SEQUENCE.flatMap(({ sets, leadIn }) =>
  sets.filter((n) => n === "T" || n === "D").map((n) =>
    `${n} (${sets.join("")})${leadIn ? " +lead" : ""}`
  )
);
console.log(formatTable(["dtype", "m", ...header], rows));
await session.close();
chain.destroy();
