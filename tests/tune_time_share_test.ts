/**
 * The time limit of tune() (tuner/tune.ts) shared among its searches (tuner/time_share.ts), on
 * the software GPU with a clock that moves one second per timed trial.
 */
import assert from "node:assert/strict";
import type { SearchSpace } from "../kernels/space.ts";
import { timeShareMs } from "../tuner/time_share.ts";
import { readTrials, TrialLog } from "../tuner/trial_log.ts";
import { tune } from "../tuner/tune.ts";
import { loadProblem } from "../tuner/yaml_file.ts";
import { ROOT, tinyTuneOptions, withGpuAndTempDir } from "./helpers.ts";

const spec = await loadProblem(`${ROOT}problems/tiny.yaml`);
/** 24 tile configs for each stage of tiny at every bucket from 8 rows. */
const SPACE_24: SearchSpace = {
  tile: { bm: [16], bn: [16, 32], bk: [8, 16], rm: [1, 2, 4], rn: [1, 2], vec: [4] },
};

Deno.test({
  name: "a time limit too short for every search still searches every bucket",
  fn: async () => {
    await withGpuAndTempDir("tune_share_", async (gpu, dir) => {
      // 24 tile configs per stage and bucket: three timing batches of 8 each.
      const space = SPACE_24;
      const log = await TrialLog.open(`${dir}/log.jsonl`);
      let nowMs = 0;
      await tune({
        ...tinyTuneOptions(gpu, log, space, spec),
        buckets: [8, 16],
        maxTrials: 100,
        // 48 trials of one second each, not the 96 that searching everything takes. Shared, the
        // searches get 38.4 s by their planned trials (9.6 s each at first), and each stops at
        // the first batch past its share: 16, 8, 8 and 8 trials, and a cross-check after them.
        // Unshared, the first search took all 24 and m = 16 was left with no batched trials.
        maxSeconds: 48,
        clock: () => nowMs,
        onProgress: (e) => {
          if (e.outcome === "ok") nowMs += 1000;
        },
      });
      const trials = (await readTrials(log.path)).filter((t) =>
        t.outcome === "ok" && t.bucket !== null
      );
      const count = (target: string, m: number) =>
        trials.filter((t) => t.target === target && t.bucket === m).length;
      const counts = [8, 16].flatMap((m) => ["fused", "batched"].map((t) => count(t, m)));
      assert.ok(counts[0] < 24, `the first search was cut short: ${counts}`);
      assert.ok(counts[2] >= 8 && counts[3] >= 8, `m = 16 searched both stages: ${counts}`);
    });
  },
});

Deno.test({
  name: "a run out of time before its one-pass batches names the buckets left without them",
  fn: async () => {
    await withGpuAndTempDir("tune_unbatched_", async (gpu, dir) => {
      const space: SearchSpace = {
        tile: { bm: [16], bn: [16, 32], bk: [8, 16], rm: [1, 2], rn: [1], vec: [4] },
      };
      const log = await TrialLog.open(`${dir}/log.jsonl`);
      let nowMs = 0;
      const options = {
        ...tinyTuneOptions(gpu, log, space, spec),
        buckets: [8, 16],
        unfused: true,
        clock: () => nowMs,
        onProgress: (e: { outcome?: string }) => {
          if (e.outcome === "ok") nowMs += 1000;
        },
      };
      // 30 s: the searches (32 trials of the space, one second each) fill it, so every bucket is
      // tuned and the limit has passed before the baselines.
      const short = await tune({ ...options, maxSeconds: 30 });
      assert.deepEqual(Object.keys(short.entry.buckets), ["8", "16"]);
      assert.deepEqual(short.unbatchedBuckets, [8, 16]);
      assert.equal(short.entry.buckets["8"].unfused, null);
      // The rerun, with time, resumes the searches from the log and times the batches.
      nowMs = 0;
      const again = await tune({ ...options, maxSeconds: 600 });
      assert.deepEqual(again.unbatchedBuckets, []);
      for (const m of ["8", "16"]) {
        assert.ok(again.entry.buckets[m].unfused !== null, `m = ${m} has its baseline`);
      }
    });
  },
});

Deno.test({
  name:
    "the recheck starts nothing in the last tenth of the limit, which the one-pass batches keep",
  fn: async () => {
    await withGpuAndTempDir("tune_baseline_share_", async (gpu, dir) => {
      const log = await TrialLog.open(`${dir}/log.jsonl`);
      const options = {
        ...tinyTuneOptions(gpu, log, SPACE_24, spec),
        buckets: [8, 16, 32],
        unfused: true,
      };
      // A first run of 3 trials a stage; the second, of 6, times the fastest of both runs again
      // (the recheck, 3 or 6 trials a bucket) after its 36 search trials (3 of them resumed).
      await tune({ ...options, maxTrials: 3 });
      let nowMs = 0;
      const recheckStarts = new Map<number, number>();
      const second = await tune({
        ...options,
        maxTrials: 6,
        // 46 s: the searches end at 36, the recheck may start buckets up to 41.4 s, and its
        // three buckets, 9-18 s in all, would run past the limit. The baseline's trials cost no
        // time here.
        maxSeconds: 46,
        clock: () => nowMs,
        onProgress: (e) => {
          if (e.outcome !== "ok" || /^(projection|unfused)/.test(e.target)) return;
          if (e.target.startsWith("recheck:") && !recheckStarts.has(e.bucket)) {
            recheckStarts.set(e.bucket, nowMs);
          }
          nowMs += 1000;
        },
      });
      assert.ok(recheckStarts.size > 0, "the second run rechecked");
      for (const [m, at] of recheckStarts) {
        assert.ok(at <= 46 * 0.9 * 1000, `the recheck at m = ${m} started at ${at} ms`);
      }
      assert.deepEqual(second.unbatchedBuckets, []);
      for (const m of ["8", "16", "32"]) {
        assert.ok(second.entry.buckets[m].unfused !== null, `m = ${m} has its baseline`);
      }
    });
  },
});

Deno.test("timeShareMs() refuses a plan without searches or with a bad count, naming it", () => {
  assert.throws(() => timeShareMs(100, []), /got none/);
  assert.throws(() => timeShareMs(100, [4, -1]), /got -1/);
  assert.throws(() => timeShareMs(100, [NaN]), /got NaN/);
});
