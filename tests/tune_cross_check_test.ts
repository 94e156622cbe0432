/**
 * The cross-check of tune() (tuner/tune.ts) on the software GPU: after the search, each bucket
 * times the winners of the buckets either side that it did not try, and keeps the fastest.
 */
import assert from "node:assert/strict";
import type { SearchSpace } from "../kernels/space.ts";
import { neighbourWinners } from "../tuner/cross_check.ts";
import { random } from "../tuner/strategies.ts";
import { readTrials, TrialLog } from "../tuner/trial_log.ts";
import { tune } from "../tuner/tune.ts";
import { loadProblem } from "../tuner/yaml_file.ts";
import { ROOT, tinyTuneOptions, withGpuAndTempDir } from "./helpers.ts";

const spec = await loadProblem(`${ROOT}problems/tiny.yaml`);

Deno.test({
  name: "each bucket times its neighbours' winners after the search and keeps the fastest",
  fn: async () => {
    await withGpuAndTempDir("tune_cross_", async (gpu, dir) => {
      // Four tile configs that suit m = 8 and 16; one random trial per bucket and stage.
      const space: SearchSpace = {
        tile: { bm: [16], bn: [16, 32], bk: [8], rm: [2, 4], rn: [2], vec: [4] },
      };
      const log = await TrialLog.open(`${dir}/log.jsonl`);
      const result = await tune({
        ...tinyTuneOptions(gpu, log, space, spec),
        buckets: [8, 16],
        strategy: random,
        maxTrials: 1,
        seed: 1,
      });
      const trials = (await readTrials(log.path)).filter((t) =>
        t.target === "fused" && t.outcome === "ok" && t.bucket !== null
      );
      const timedAt = (m: number) => trials.filter((t) => t.bucket === m);
      const winner = (m: number) => result.entry.buckets[String(m)].fused.config;
      assert.equal(timedAt(8).length, 2, "m=8 timed its own pick and m=16's winner");
      for (const [m, other] of [[8, 16], [16, 8]]) {
        const got = timedAt(m);
        assert.ok(
          got.some((t) => t.config === winner(other)),
          `m=${m} timed the winner at m=${other}: ${JSON.stringify(got.map((t) => t.config))}`,
        );
        const fastest = got.reduce((a, b) => (b.medianUs! < a.medianUs! ? b : a));
        assert.equal(winner(m), fastest.config, `m=${m} kept the fastest it timed`);
      }
    });
  },
});

Deno.test("below 64 rows a stream-K winner's tile is offered split over k instead", () => {
  const winner = "outer-bm64-bn64-bk16-rm8-rn4-sk396";
  const tile = "outer-bm32-bn64-bk16-rm8-rn4";
  // The candidates of a 32-row bucket: no stream-K there.
  const valid = new Set([
    tile,
    `${tile}-s2`,
    `${tile}-s4`,
    `${tile}-s8`,
    "gemv-nc2-cn4-l16-rm4-v4-sg",
  ]);
  assert.deepEqual(
    neighbourWinners(32, [{ m: 64, winner }], valid, new Set([`${tile}-s4`])),
    [tile, `${tile}-s2`, `${tile}-s8`],
    "every split the bucket has, less those it tried",
  );
  // From 64 rows up the stream-K form itself is offered, scaled.
  const above = neighbourWinners(
    128,
    [{ m: 64, winner }],
    new Set(["outer-bm128-bn64-bk16-rm8-rn4-sk396"]),
    new Set(),
  );
  assert.deepEqual(above, ["outer-bm128-bn64-bk16-rm8-rn4-sk396"]);
});
