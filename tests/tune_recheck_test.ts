/**
 * The recheck of tune() (tuner/tune.ts, tuner/recheck.ts) on the software GPU: where a stage's
 * fastest configs were timed in different runs, they are timed again together and ranked so.
 */
import assert from "node:assert/strict";
import type { SearchSpace } from "../kernels/space.ts";
import { RECHECK_TOP } from "../tuner/recheck.ts";
import { readTrials, TrialLog } from "../tuner/trial_log.ts";
import { tune } from "../tuner/tune.ts";
import { loadProblem } from "../tuner/yaml_file.ts";
import { ROOT, tinyTuneOptions, withGpuAndTempDir } from "./helpers.ts";

const spec = await loadProblem(`${ROOT}problems/tiny.yaml`);

Deno.test({
  name: "a run that adds configs to a log times the fastest again together, and reruns rank so",
  fn: async () => {
    await withGpuAndTempDir("tune_recheck_", async (gpu, dir) => {
      const tile = { bm: [16], bn: [16, 32], bk: [8], rm: [2], rn: [2], vec: [4] };
      const first: SearchSpace = { tile };
      const wider: SearchSpace = { tile: { ...tile, rm: [2, 4] } };
      const log = await TrialLog.open(`${dir}/log.jsonl`);
      const options = { ...tinyTuneOptions(gpu, log, first, spec), maxTrials: 100 };
      await tune(options);
      const rechecks = async () =>
        (await readTrials(log.path)).filter((t) => t.target === "recheck:fused");
      assert.equal((await rechecks()).length, 0, "one run's timings: nothing to recheck");

      // Two configs from the first run, two new ones: the first three mix runs.
      const result = await tune({ ...options, space: wider });
      const again = await rechecks();
      assert.equal(again.length, RECHECK_TOP, JSON.stringify(again.map((t) => t.config)));
      const fused = result.entry.buckets["16"].fused;
      const fastest = again.filter((t) => t.outcome === "ok")
        .reduce((a, b) => (b.medianUs! < a.medianUs! ? b : a));
      assert.equal(fused.config, fastest.config, "the winner is the recheck's fastest");
      assert.equal(fused.medianUs, fastest.medianUs, "with the recheck's time");

      // A rerun that times nothing new ranks as the recheck did, and rechecks nothing.
      const rerun = (await tune({ ...options, space: wider })).entry.buckets["16"].fused;
      assert.equal((await rechecks()).length, RECHECK_TOP, "no second recheck");
      assert.deepEqual([rerun.config, rerun.medianUs], [fused.config, fused.medianUs]);
    });
  },
});
