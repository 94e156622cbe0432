/**
 * The cross-check's rule, shared by the tuner (tune.ts) and its replay (replay.ts): after the
 * search, each bucket times the winners of the buckets either side that it did not try, each
 * also scaled to this bucket's rows (see {@linkcode rowScaled}), again while that changes a
 * winner, up to {@linkcode CROSS_CHECK_PASSES} passes. The search runs smallest bucket first and
 * starts from the winner below; the winner above is only known afterwards. No Deno API here.
 *
 * @module
 */
import { configName, MAX_SPLIT, parseConfigName } from "../kernels/config.ts";

/** Most passes of a cross-check; each times only winners new to a bucket. */
export const CROSS_CHECK_PASSES = 4;

/**
 * A winner as it would be at `factor` times its bucket's rows: its rows per workgroup (`bm`, or
 * a GEMV's `rm`) times `factor`, and for split-K configs also with the split divided by it (the
 * same number of workgroups per tile column). On the H100 (tp4, m = 32) the winner at 64 rows,
 * `outer-bm64-bn64-bk16-rm8-rn4-s4`, is not valid at 32 (tiles no taller than 32 rows) and the
 * best there was `outer-bm32-bn64-bk16-rm8-rn4-s8`, which the search found in half the seeds.
 * A stream-K winner is also offered without stream-K, at every split (1 to `MAX_SPLIT`): below 64
 * rows, where stream-K is not tried, its split-K kin is what competes with the GEMVs (the H100's
 * tp2 f16 tune of 2026-12-05 ended on a GEMV at m = 32, 58.5 us, after m = 64 went to
 * `outer-bm64-bn64-bk16-rm8-rn4-sk396`; `outer-bm32-bn64-bk16-rm8-rn4-s8` took 47.9 us there
 * with bf16 weights). At fewer rows a double-buffered winner's own tile is also offered split
 * `1 / factor` times more: on the H200 (tp4 f32) m = 4096's `outer-bm128-bn64-bk8-rm8-rn8-db`
 * split 2 was the best config at m = 2048, 8% under the best unsplit one. A GEMV is also offered
 * with its row groups (`rw`) scaled instead, where that leaves at least one: the same work a
 * thread, more or fewer threads over the same columns.
 *
 * @example
 * ```ts
 * import { rowScaled } from "./cross_check.ts";
 * const got = rowScaled("outer-bm64-bn64-bk16-rm8-rn4-s4", 0.5);
 * if (got.join() !== "outer-bm32-bn64-bk16-rm8-rn4-s4,outer-bm32-bn64-bk16-rm8-rn4-s8") {
 *   throw new Error(got.join());
 * }
 * if (!rowScaled("outer-bm128-bn64-bk8-rm8-rn8-db", 0.5).includes("outer-bm128-bn64-bk8-rm8-rn8-s2-db")) {
 *   throw new Error("the same tile split twice");
 * }
 * if (!rowScaled("outer-bm64-bn64-bk16-rm8-rn4-sk396", 0.5).includes("outer-bm32-bn64-bk16-rm8-rn4-s8")) {
 *   throw new Error("a stream-K winner's split-K kin");
 * }
 * if (!rowScaled("outer-bm128-bn64-bk32-rm4-rn8-sk264-dp-h-sp", 0.5).includes("outer-bm64-bn64-bk32-rm4-rn8-s2-h-sp")) {
 *   throw new Error("a data-parallel stream-K winner's split-K kin");
 * }
 * if (rowScaled("gemv-nc4-cn2-l32-rm2-v8-sg", 2).join() !== "gemv-nc4-cn2-l32-rm4-v8-sg,gemv-nc4-cn2-l32-rm2-v8-sg-rw2") {
 *   throw new Error("a GEMV's rows, per thread or in row groups");
 * }
 * if (rowScaled("gemv-nc4-cn2-l32-rm2-v8-sg", 0.5).join() !== "gemv-nc4-cn2-l32-rm1-v8-sg") {
 *   throw new Error("no row groups under one");
 * }
 * ```
 */
export function rowScaled(name: string, factor: number): string[] {
  const c = parseConfigName(name);
  if (c.family === "gemv") {
    const rw = (c.rw ?? 1) * factor;
    return [
      configName({ ...c, rm: c.rm * factor }),
      ...(rw >= 1 ? [configName({ ...c, rw })] : []),
    ];
  }
  if (c.family === "tile") return [configName({ ...c, bm: c.bm * factor })];
  const scaled = { ...c, bm: c.bm * factor };
  if (c.stream) {
    // Stream-K runs from 64 rows to STREAM_ROWS only: past them its kin is the same tile, plain
    // or split over k (the cross-check times those of the bucket's candidates).
    const { stream: _stream, dp: _dp, ...tile } = scaled;
    const kin = [];
    for (let split = 1; split <= MAX_SPLIT; split *= 2) kin.push(configName({ ...tile, split }));
    return [configName(scaled), ...kin];
  }
  const kin = [configName(scaled), configName({ ...scaled, split: Math.max(1, c.split / factor) })];
  // A double-buffered winner at fewer rows: the same tile, split more, runs as many workgroups as
  // it did (for single-buffered tiles the form above does as well; offering both cost the replays
  // of the exhaustive logs evaluations and no regret).
  if (factor < 1 && c.double) kin.push(configName({ ...c, split: c.split / factor }));
  return kin;
}

/** A neighbouring bucket's rows and its winner's name, if it has one. */
export interface Neighbour {
  m: number;
  winner?: string;
}

/**
 * The configs a bucket of `m` rows times in a cross-check pass: each neighbour's winner and its
 * {@linkcode rowScaled} forms, those valid here and not tried here yet, once each.
 *
 * @example
 * ```ts
 * import { neighbourWinners } from "./cross_check.ts";
 * const valid = new Set(["tile-bm16-bn32-bk8-rm2-rn2-v4", "tile-bm32-bn32-bk8-rm2-rn2-v4"]);
 * const got = neighbourWinners(16, [{ m: 32, winner: "tile-bm32-bn32-bk8-rm2-rn2-v4" }], valid, new Set());
 * if (got.join() !== "tile-bm32-bn32-bk8-rm2-rn2-v4,tile-bm16-bn32-bk8-rm2-rn2-v4") {
 *   throw new Error(got.join());
 * }
 * ```
 */
export function neighbourWinners(
  m: number,
  neighbours: Neighbour[],
  valid: ReadonlySet<string>,
  tried: ReadonlySet<string>,
): string[] {
  const names = neighbours.flatMap(({ m: theirs, winner }) =>
    winner ? [winner, ...rowScaled(winner, m / theirs)] : []
  );
  return [...new Set(names)].filter((name) => valid.has(name) && !tried.has(name));
}
