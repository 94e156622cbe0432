/**
 * bench/tile_fit.ts: the fastest timing per bucket, the line through time over tiles, and the
 * steady rate the line gives, from a log whose times lie on a known line.
 */
import assert from "node:assert/strict";
import { fitTiles, tilePoints } from "../../bench/tile_fit.ts";
import { fusedShape, kimiLinearSpec } from "../../kernels/problem.ts";
import type { Trial } from "../../tuner/trial_log.ts";
import { runScript, withTempDir } from "../helpers.ts";

const CONFIG = "outer-bm64-bn64-bk32-rm8-rn4-h";
const shape = fusedShape(kimiLinearSpec({ tp: 4 }));
// 2304 x 3336 for tp4: 53 tiles of 64 columns per 64 rows.
const tilesAt = (m: number) => Math.ceil(m / 64) * 53;

function trial(bucket: number, medianUs: number, over: Partial<Trial> = {}): Trial {
  return {
    generator: 2,
    target: "fused",
    bucket,
    config: CONFIG,
    outcome: "ok",
    medianUs,
    at: "",
    ...over,
  };
}

/** Times on 50 us + 0.35 us per tile, a slower repeat at 4096, and trials that must not count. */
function lineTrials(): Trial[] {
  return [
    ...[1024, 4096, 16384].map((m) => trial(m, 50 + 0.35 * tilesAt(m))),
    trial(4096, 2000),
    trial(4096, 1, { target: "batched" }),
    trial(4096, 1, { config: "outer-bm64-bn64-bk32-rm8-rn8-h" }),
    trial(4096, 1, { outcome: "verify", medianUs: undefined }),
  ];
}

Deno.test("the points are the fastest timing of the config in the stage, with its tiles", () => {
  const points = tilePoints(lineTrials(), CONFIG, "fused", shape);
  assert.deepEqual(points.map((p) => [p.m, p.tiles]), [[1024, 848], [4096, 3392], [16384, 13568]]);
  assert.equal(points[1].us, 50 + 0.35 * 3392);
});

Deno.test("the fit recovers the line the times lie on", () => {
  const fit = fitTiles(tilePoints(lineTrials(), CONFIG, "fused", shape));
  assert.ok(Math.abs(fit.fixedUs - 50) < 1e-6, `${fit.fixedUs}`);
  assert.ok(Math.abs(fit.perTileUs - 0.35) < 1e-9, `${fit.perTileUs}`);
});

Deno.test("a config that is not outer, or one tile count, is a RangeError naming it", () => {
  assert.throws(
    () => tilePoints([], "gemv-nc4-cn1-l32-rm1-v4", "fused", shape),
    (e) => e instanceof RangeError && e.message.includes('"gemv-nc4-cn1-l32-rm1-v4"'),
  );
  assert.throws(
    () => fitTiles([{ m: 64, tiles: 53, us: 70 }, { m: 64, tiles: 53, us: 71 }]),
    (e) => e instanceof RangeError && e.message.includes("[53, 53]"),
  );
});

Deno.test("the script fits from --from rows up and prints the steady rate", async () => {
  await withTempDir("tile-fit-", async (dir) => {
    const log = `${dir}/log.jsonl`;
    // 1024 rows lie 100 us over the line: with --from 4096 they are shown, not fitted.
    const trials = lineTrials().map((t) =>
      t.bucket === 1024 ? { ...t, medianUs: t.medianUs! + 100 } : t
    );
    await Deno.writeTextFile(log, trials.map((t) => JSON.stringify(t)).join("\n") + "\n");
    const run = await runScript("bench/tile_fit.ts", ["--config", CONFIG, "--from", "4096", log], {
      permissions: ["--allow-read", "--allow-env"],
    });
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trim().split("\n");
    // One tile is 2 x 64 x 64 x 2304 flops: 18.87 MFLOP in 0.35 us is 53.9 TFLOP/s.
    assert.equal(lines.at(-1), "fit: 50.0 us + 0.3500 us per tile; 53.9 TFLOP/s steady");
    assert.match(lines[2], /^us\s+446\.8\s+1237\.2\s+4798\.8$/);
    assert.match(lines[4], /^fit, us\s+346\.8\s+1237\.2\s+4798\.8$/);
  });
});
