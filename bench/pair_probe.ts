/**
 * Probe for NOTES.md's open question "at m = 1-2 the bench reads the tuned projection slower
 * than the defaults": times the whole projection at small m, as the bench does (each run
 * chained to the one before, weights rotated past the L2, the link's own time taken off), with
 * every mix of the tuned and the default config of each stage, then the fused stage alone with
 * each, and the tuned and default pairs unchained (runs free to overlap).
 *
 *   source .gpu/setup.sh && deno run --cached-only -A bench/pair_probe.ts \
 *     [--problem kimi-linear-tp4] [--dtype f16,f32] [--buckets 1,2,4]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { problemKey } from "../cache/schema.ts";
import { createProjection } from "../dispatch/create.ts";
import { defaultConfig } from "../kernels/defaults.ts";
import type { Projection, ProjectionOptions } from "../dispatch/projection.ts";
import { configName } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { batchedInputWidth, batchedShape, fusedShape, fusedWidth } from "../kernels/problem.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";
import { formatTable } from "../tuner/report.ts";
import { timeItems } from "../tuner/timing.ts";
import { cacheWith } from "./cache_with.ts";
import { chainedInput, openSession } from "./session.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    problem: { type: "string", default: "kimi-linear-tp4" },
    dtype: { type: "string", default: "f16,f32" },
    buckets: { type: "string", default: "1,2,4" },
    copies: { type: "string", default: "10" },
  },
});
const session = await openSession(args.problem);
const { gpu, probe, spec, fingerprint, cache } = session;
const device = gpu.device;
const buckets = args.buckets.split(",").map(Number);
const copies = Number(args.copies);
const random = seededRandom(7);
const timing = { warmup: 3, repeats: 15, probe };
const { x, chain, link } = await chainedInput(session, Math.max(...buckets), random, 15);

/** Median us per run of each projection set at m, chained (link off) or free to overlap. */
async function timeAt(sets: Projection[][], m: number, chained: boolean): Promise<number[]> {
  const items = sets.map((ps) => ({
    encode: (pass: GPUComputePassEncoder, rep: number) => {
      const out = ps[rep % ps.length].dispatch(pass, x, m);
      if (chained) chain.link(pass, out.batched ?? out.fused);
    },
  }));
  const timings = await timeItems(device, items, timing);
  return timings.map((t) => t.medianUs - (chained ? link.medianUs : 0));
}

/** `copies` projections of `s` that run the given configs at m. */
async function projectionsOf(
  s: ProjectionSpec,
  options: ProjectionOptions,
  pair: { fused: string; batched: string | null },
  m: number,
): Promise<Projection[]> {
  const file = cacheWith(fingerprint, s, options.dtype!, "exact", () => pair, [String(m)]);
  const out: Projection[] = [];
  for (let i = 0; i < copies; i++) {
    out.push(await createProjection(device, s, { ...options, cache: file }));
  }
  return out;
}

const rows: string[][] = [];
for (const dtype of args.dtype.split(",") as WeightDtype[]) {
  const entry = cache?.entries[problemKey(spec, dtype, "exact")];
  if (!entry) throw new Error(`No tuned entry for ${spec.name} ${dtype}`);
  const weights = {
    fused: randomNonZero(fusedWidth(spec) * spec.k, random),
    batched: randomNonZero(
      spec.batched!.inputs.length * spec.batched!.n * batchedInputWidth(spec),
      random,
    ),
  };
  const alone: ProjectionSpec = { ...spec, name: `${spec.name}-fused`, batched: undefined };
  for (const m of buckets) {
    const tuned = entry.buckets[String(m)];
    const T = { f: tuned.fused.config, b: tuned.batched!.config };
    const D = {
      f: configName(defaultConfig(fusedShape(spec), dtype, gpu.caps, m)),
      b: configName(defaultConfig(batchedShape(spec)!, dtype, gpu.caps, m, "batched")),
    };
    const options = { weights, dtype };
    const pairs = [[T.f, T.b], [D.f, D.b], [T.f, D.b], [D.f, T.b]];
    const whole = await Promise.all(
      pairs.map(([f, b]) => projectionsOf(spec, options, { fused: f, batched: b }, m)),
    );
    const fusedOnly = await Promise.all(
      [T.f, D.f].map((f) =>
        projectionsOf(alone, { weights: { fused: weights.fused }, dtype }, {
          fused: f,
          batched: null,
        }, m)
      ),
    );
    const chained = await timeAt([...whole, ...fusedOnly], m, true);
    const free = await timeAt(whole.slice(0, 2), m, false);
    rows.push([
      dtype,
      String(m),
      ...[...chained, ...free].map((us) => us.toFixed(2)),
      `${T.f} + ${T.b}`,
      `${D.f} + ${D.b}`,
    ]);
    for (const p of [...whole, ...fusedOnly].flat()) p.destroy();
  }
}
console.log(`link ${link.medianUs.toFixed(2)} us (taken off the chained columns)`);
console.log(formatTable(
  [
    "dtype",
    "m",
    "TT",
    "DD",
    "T+Db",
    "Df+T",
    "fused T",
    "fused D",
    "TT free",
    "DD free",
    "tuned (T)",
    "default (D)",
  ],
  rows,
));
await session.close();
chain.destroy();
