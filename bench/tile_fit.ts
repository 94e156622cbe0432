/**
 * How an `outer` config's time grows with its output tiles, read from trial logs: the fastest
 * median of the config at each bucket of a stage, and a straight line `time = fixed + per tile x
 * tiles` fitted by least squares through the buckets from `--from` rows up. The per-tile time
 * gives the kernel's steady rate over the whole GPU; the fixed part is what a shallow grid costs
 * (NOTES.md, "Where the mid-range time goes"). Split-K and stream-K configs count output tiles too.
 *
 *   deno run --allow-read --allow-env bench/tile_fit.ts --config outer-bm64-bn64-bk32-rm8-rn4-h \
 *     [--problem kimi-linear-tp4] [--stage fused|batched] [--from 4096] <log.jsonl[.gz]>...
 *
 * @module
 */
import { parseArgs } from "node:util";
import { outerTiles, parseConfigName } from "../kernels/config.ts";
import { type GemmShape, stageShape } from "../kernels/problem.ts";
import { findProblem } from "../tuner/problems.ts";
import { isTimed, readTrials, type Trial } from "../tuner/trial_log.ts";

/** One bucket of a config: its output tiles and its fastest median time. */
export interface TilePoint {
  m: number;
  tiles: number;
  us: number;
}

/** A straight line through time over tiles. */
export interface TileFit {
  fixedUs: number;
  perTileUs: number;
}

/**
 * The fastest timing of `config` at each bucket of `stage` in the trials, with its tiles, by m.
 *
 * @throws {RangeError} If the config is not an `outer` config.
 * @example
 * ```ts
 * import { tilePoints } from "./tile_fit.ts";
 * const shape = { k: 64, n: 128, xOffsets: [0], xRowStride: 64, wOffset: 0, yOffsets: [0], yRowStride: 128 };
 * const t = (bucket: number, medianUs: number) => ({ generator: 2, target: "fused", bucket,
 *   config: "outer-bm64-bn64-bk8-rm8-rn4", outcome: "ok" as const, medianUs, at: "" });
 * const points = tilePoints([t(128, 12), t(64, 9), t(128, 10)], "outer-bm64-bn64-bk8-rm8-rn4", "fused", shape);
 * if (JSON.stringify(points) !== '[{"m":64,"tiles":2,"us":9},{"m":128,"tiles":4,"us":10}]') {
 *   throw new Error(JSON.stringify(points));
 * }
 * ```
 */
export function tilePoints(
  trials: readonly Trial[],
  config: string,
  stage: string,
  shape: GemmShape,
): TilePoint[] {
  const c = parseConfigName(config);
  if (c.family !== "outer") {
    throw new RangeError(`Expected an outer config to count tiles of, got "${config}"`);
  }
  const best = new Map<number, number>();
  for (const t of trials.filter(isTimed)) {
    if (t.config !== config || t.target !== stage) continue;
    best.set(t.bucket, Math.min(best.get(t.bucket) ?? Infinity, t.medianUs));
  }
  return [...best].toSorted(([a], [b]) => a - b)
    .map(([m, us]) => ({ m, tiles: outerTiles(c, shape, m), us }));
}

/**
 * The least-squares line through the points.
 *
 * @throws {RangeError} With fewer than two distinct tile counts.
 * @example
 * ```ts
 * import { fitTiles } from "./tile_fit.ts";
 * const fit = fitTiles([{ m: 1, tiles: 10, us: 15 }, { m: 2, tiles: 30, us: 25 }]);
 * if (fit.fixedUs !== 10 || fit.perTileUs !== 0.5) throw new Error(JSON.stringify(fit));
 * ```
 */
export function fitTiles(points: readonly TilePoint[]): TileFit {
  if (new Set(points.map((p) => p.tiles)).size < 2) {
    throw new RangeError(
      `Expected points at two or more tile counts to fit, got ${points.length} at ` +
        `[${points.map((p) => p.tiles).join(", ")}]`,
    );
  }
  const n = points.length;
  const mx = points.reduce((s, p) => s + p.tiles, 0) / n;
  const my = points.reduce((s, p) => s + p.us, 0) / n;
  const sxy = points.reduce((s, p) => s + (p.tiles - mx) * (p.us - my), 0);
  const sxx = points.reduce((s, p) => s + (p.tiles - mx) ** 2, 0);
  const perTileUs = sxy / sxx;
  return { fixedUs: my - perTileUs * mx, perTileUs };
}

/**
 * The table: a column per bucket with tiles, time, TFLOP/s and the fitted time, then the line
 * and the steady rate its per-tile time gives (`tileFlops`: multiply-adds of one tile, times 2).
 *
 * @example
 * ```ts
 * import { fitTable } from "./tile_fit.ts";
 * const points = [{ m: 64, tiles: 2, us: 9 }, { m: 128, tiles: 4, us: 13 }];
 * const lines = fitTable(points, { fixedUs: 5, perTileUs: 2 }, 2e6, (m) => m * 1e5);
 * if (!lines.at(-1)!.includes("1.0 TFLOP/s steady")) throw new Error(lines.join("\n"));
 * ```
 */
export function fitTable(
  points: readonly TilePoint[],
  fit: TileFit,
  tileFlops: number,
  flopsAt: (m: number) => number,
): string[] {
  const row = (name: string, cells: string[]) =>
    name.padEnd(9) + cells.map((c) => c.padStart(9)).join("");
  return [
    row("m", points.map((p) => String(p.m))),
    row("tiles", points.map((p) => String(p.tiles))),
    row("us", points.map((p) => p.us.toFixed(1))),
    row("TFLOP/s", points.map((p) => (flopsAt(p.m) / p.us / 1e6).toFixed(1))),
    row("fit, us", points.map((p) => (fit.fixedUs + fit.perTileUs * p.tiles).toFixed(1))),
    `fit: ${fit.fixedUs.toFixed(1)} us + ${fit.perTileUs.toFixed(4)} us per tile; ` +
    `${(tileFlops / fit.perTileUs / 1e6).toFixed(1)} TFLOP/s steady`,
  ];
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      config: { type: "string" },
      problem: { type: "string", default: "kimi-linear-tp4" },
      stage: { type: "string", default: "fused" },
      from: { type: "string", default: "4096" },
    },
  });
  if (!values.config || !positionals.length) {
    console.error(
      "usage: deno run --allow-read --allow-env bench/tile_fit.ts --config <outer config> " +
        "[--problem p] [--stage fused|batched] [--from m] <log.jsonl[.gz]>...",
    );
    Deno.exit(2);
  }
  const spec = await findProblem(values.problem);
  const shape = stageShape(spec, values.stage);
  const trials = (await Promise.all(positionals.map(readTrials))).flat();
  const points = tilePoints(trials, values.config, values.stage, shape);
  const from = Number(values.from);
  const c = parseConfigName(values.config) as { bm: number; bn: number };
  const batches = shape.yOffsets.length;
  const lines = fitTable(
    points,
    fitTiles(points.filter((p) => p.m >= from)),
    2 * c.bm * c.bn * shape.k,
    (m) => 2 * batches * m * shape.n * shape.k,
  );
  console.log(lines.join("\n"));
}
