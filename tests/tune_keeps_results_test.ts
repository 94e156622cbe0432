/**
 * A tuner that never loses a result (issue 10): a bucket's cache entry is the best of what is
 * known, never a slower or empty one; a bucket left without a winner fails the run with its
 * reason; timed-out trials are retried under a larger limit; buffers over the device's binding
 * limit and unsafe problem names are refused or made safe before anything is written.
 */
import assert from "node:assert/strict";
import type { BucketResult, CacheEntry } from "../cache/schema.ts";
import { loadCacheFile, saveCacheEntry } from "../cache/store.ts";
import { mergeEntries } from "../cache/merge.ts";
import { DEFAULT_SPACE } from "../kernels/space.ts";
import { planSpace, TuneInputError } from "../tuner/plan.ts";
import { logFileName, readTrials, type Trial, TrialLog } from "../tuner/trial_log.ts";
import type { SearchSpace } from "../kernels/space.ts";
import type { Gpu } from "../tuner/gpu_device.ts";
import type { Strategy } from "../tuner/search.ts";
import { configName } from "../kernels/config.ts";
import { defaultConfig } from "../kernels/defaults.ts";
import { batchedShape, fusedShape } from "../kernels/problem.ts";
import { tune } from "../tuner/tune.ts";
import { loadProblem } from "../tuner/yaml_file.ts";
import { CAPS, ROOT, stageOf, tinyTuneOptions, withGpuAndTempDir, withTempDir } from "./helpers.ts";

const tiny = await loadProblem(`${ROOT}problems/tiny.yaml`);

const PROBLEM: CacheEntry["problem"] = {
  k: 8,
  segments: [{ name: "a", n: 8 }],
  batched: null,
  dtype: "f32",
};
const FP = { vendor: "v", architecture: "", device: "d", description: "test GPU" };

function bucket(us: number, config = "tile-bm32-bn32-bk8-rm4-rn4-v4"): BucketResult {
  return { fused: stageOf(config, us), batched: null, fusedTotalUs: us, unfused: null };
}
function entry(buckets: Record<string, BucketResult>, generatorVersion = 1): CacheEntry {
  return { problem: PROBLEM, generatorVersion, tunedAt: "2026-11-24T00:00:00.000Z", buckets };
}

/** Options to tune tiny at m = 16 with two fused tiles to choose from, the baseline on. */
async function twoTileOptions(gpu: Gpu, dir: string) {
  const space: SearchSpace = {
    tile: { bm: [16], bn: [16, 32], bk: [8], rm: [2], rn: [2], vec: [4] },
  };
  const log = await TrialLog.open(`${dir}/log.jsonl`);
  return { log, options: { ...tinyTuneOptions(gpu, log, space, tiny), unfused: true } };
}

Deno.test("mergeEntries() keeps the faster result per bucket and every bucket either has", () => {
  const old = entry({ "1": bucket(5), "64": bucket(223) });
  const rerun = entry({ "1": bucket(4), "64": bucket(423), "4": bucket(9) });
  const merged = mergeEntries(old, rerun);
  assert.deepEqual(Object.keys(merged.buckets), ["1", "4", "64"]);
  assert.equal(merged.buckets["1"].fusedTotalUs, 4, "the faster new result replaces");
  assert.equal(merged.buckets["64"].fusedTotalUs, 223, "a slower rerun does not replace");
  assert.deepEqual(mergeEntries(old, entry({})).buckets, old.buckets, "an empty run loses nothing");
  // Unfused counts where it is what runs.
  const unfusedFast = { ...bucket(300), unfused: { medianUs: 100, configs: [] } };
  assert.equal(mergeEntries(entry({ "64": unfusedFast }), rerun).buckets["64"], unfusedFast);
  // A rerun cut short before its unfused baseline (H100, 2026-12-05: tp4 f16 "fast" resumed
  // with --max-seconds 100) sums its stages, which reads faster than the one-pass total: with
  // the same configs the timed bucket stays; other configs win on their stage times alone.
  const timed = { ...bucket(10), fusedTotalUs: 12, unfused: { medianUs: 40, configs: [] } };
  assert.equal(mergeEntries(entry({ "8": timed }), entry({ "8": bucket(10) })).buckets["8"], timed);
  const faster = bucket(9, "tile-bm16-bn32-bk8-rm4-rn4-v4");
  assert.equal(mergeEntries(entry({ "8": timed }), entry({ "8": faster })).buckets["8"], faster);
  const slower = bucket(11, "tile-bm16-bn32-bk8-rm4-rn4-v4");
  assert.equal(mergeEntries(entry({ "8": timed }), entry({ "8": slower })).buckets["8"], timed);
  // The rerun's own baseline replaces an untimed bucket of the same configs.
  const timedFresh = { ...timed, fusedTotalUs: 13 };
  assert.equal(
    mergeEntries(entry({ "8": bucket(10) }), entry({ "8": timedFresh })).buckets["8"],
    timedFresh,
  );
  // Another generator's timings measured other kernels: the fresh entry replaces them.
  assert.deepEqual(mergeEntries(entry({ "2": bucket(1) }, 0), rerun), rerun);
});

Deno.test({
  name: "a rerun out of time takes each bucket's unfused baseline from the log, timing nothing",
  fn: async () => {
    await withGpuAndTempDir("keeps_baseline_", async (gpu, dir) => {
      const { log, options } = await twoTileOptions(gpu, dir);
      const timed = (await tune(options)).entry.buckets["16"];
      assert.ok(timed.unfused, "the first run timed the baseline");
      const lines = (await readTrials(log.path)).length;
      const again = (await tune({ ...options, maxSeconds: 0 })).entry.buckets["16"];
      assert.deepEqual(again, timed, "the same bucket, baseline and one-pass total included");
      assert.equal((await readTrials(log.path)).length, lines, "nothing was timed");
    });
  },
});

Deno.test("mergeEntries() takes a bucket its run chose by timing the stored pair beside its own", () => {
  // Another session reads every total a few percent higher (NOTES.md): a rerun that timed the
  // stored pair and its own in one batch, its own faster there, replaces the stored bucket even
  // where its total reads higher than the stored one.
  const stored = bucket(10);
  const own = bucket(10.3, "tile-bm16-bn32-bk8-rm4-rn4-v4");
  const judged = { "8": stored };
  assert.equal(mergeEntries(entry({ "8": stored }), entry({ "8": own })).buckets["8"], stored);
  assert.equal(mergeEntries(entry({ "8": stored }), entry({ "8": own }), judged).buckets["8"], own);
  // Where the file holds another bucket by then (a second tuner wrote), the totals decide.
  const meanwhile = bucket(9, "tile-bm16-bn16-bk8-rm4-rn4-v4");
  assert.equal(
    mergeEntries(entry({ "8": meanwhile }), entry({ "8": own }), judged).buckets["8"],
    meanwhile,
  );
});

Deno.test({
  name: "tune() times the cache's pair beside its own winners in one batch and keeps the faster",
  fn: async () => {
    await withGpuAndTempDir("keeps_rival_", async (gpu, dir) => {
      const { log, options } = await twoTileOptions(gpu, dir);
      const first = (await tune(options)).entry.buckets["16"];
      const other = first.fused.runnerUp;
      assert.ok(other, "the space has a second fused config");
      // The stored pair's recorded total is far too fast to beat by the totals alone.
      const storedBucket = {
        ...first,
        fused: { ...first.fused, config: other },
        fusedTotalUs: 0.001,
        unfused: null,
      };
      const since = new Date().toISOString();
      const run = await tune({ ...options, stored: { "16": storedBucket } });
      assert.deepEqual(run.judged, { "16": storedBucket });
      const whole = (await readTrials(log.path)).filter((t) =>
        t.target === "projection:fused" && t.bucket === 16 && t.outcome === "ok"
      );
      const latest = (pair: BucketResult) =>
        whole.findLast((t) => t.config === `${pair.fused.config}+${pair.batched!.config}`);
      const mine = latest(first)!, theirs = latest(storedBucket)!;
      assert.ok(mine.at >= since && theirs.at >= since, "both pairs timed whole in this run");
      const us = (t: typeof mine) => Math.round(t.medianUs! * 1000); // ties go to the stored pair
      const faster = us(mine) < us(theirs) ? first : storedBucket;
      const got = run.entry.buckets["16"];
      assert.equal(got.fused.config, faster.fused.config, "the faster pair of the batch");
      assert.ok(
        Math.abs(got.fusedTotalUs - Math.min(mine.medianUs!, theirs.medianUs!)) < 0.01,
        "its total is that batch's timing",
      );
      const merged = mergeEntries(
        { ...run.entry, buckets: { "16": storedBucket } },
        run.entry,
        run.judged,
      );
      assert.deepEqual(merged.buckets["16"], got, "it replaces the stored bucket");
      // A plain rerun takes that batch from the log: the same bucket, nothing timed.
      const lines = (await readTrials(log.path)).length;
      const again = await tune({ ...options, stored: { "16": storedBucket } });
      assert.deepEqual(again.entry.buckets["16"], got);
      assert.deepEqual(again.judged, run.judged);
      assert.equal((await readTrials(log.path)).length, lines, "nothing was timed");
    });
  },
});

/** A stored bucket of tiny at m = 16: these stage configs, a total no run beats by totals. */
function storedPair(fused: string, batched: string): BucketResult {
  return { fused: stageOf(fused), batched: stageOf(batched), fusedTotalUs: 0.001, unfused: null };
}

/** Subgroup GEMVs only, as a probe space of that kind (bench/spaces/gemv-dot.yaml) is. */
const SUBGROUP_GEMVS: SearchSpace = {
  gemv: { nc: [2], cn: [1], lanes: [4], rm: [4], vec: [4], subgroup: [true] },
};

Deno.test({
  name: "tune() keeps the cache's configs as the tiers its own space has none of",
  fn: async () => {
    await withGpuAndTempDir("keeps_tiers_", async (gpu, dir) => {
      if (!gpu.caps.subgroups) {
        console.log("this adapter has no subgroups: every config fits every tier, nothing to keep");
        return;
      }
      const log = await TrialLog.open(`${dir}/log.jsonl`);
      const plain = "gemv-nc2-cn1-l4-rm4-v4";
      const options = tinyTuneOptions(gpu, log, SUBGROUP_GEMVS, tiny);
      const run = await tune({ ...options, stored: { "16": storedPair(plain, plain) } });
      const got = run.entry.buckets["16"];
      for (const stage of [got.fused, got.batched!]) {
        // The stored config, outside the run's space, is also timed as a candidate: where it
        // wins (llvmpipe's timings of tiny GEMVs are close), it serves every tier itself.
        if (stage.config === plain) {
          assert.deepEqual(stage.tiers, []);
          continue;
        }
        assert.match(stage.config, /-sg$/, "the run's own winner");
        assert.deepEqual(stage.tiers, [{ tier: "no-subgroups", config: plain, medianUs: 1 }]);
      }
      // Without the stored bucket a device without subgroups has no config here.
      const alone = (await tune(options)).entry.buckets["16"];
      assert.deepEqual(alone.fused.tiers, []);
    });
  },
});

Deno.test({
  name:
    "tune() times a stored split-K pair beside a space of GEMVs, its scratch made, and its fused config as a candidate",
  fn: async () => {
    await withGpuAndTempDir("keeps_split_rival_", async (gpu, dir) => {
      const log = await TrialLog.open(`${dir}/log.jsonl`);
      const space = { gemv: { ...SUBGROUP_GEMVS.gemv!, subgroup: [false] } };
      const options = { ...tinyTuneOptions(gpu, log, space, tiny), unfused: true };
      const fused = "outer-bm32-bn32-bk8-rm4-rn4-s2"; // not in a space of GEMVs
      const stored = storedPair(fused, "gemv-nc2-cn1-l4-rm4-v4");
      const run = await tune({ ...options, stored: { "16": stored } });
      const trials = await readTrials(log.path);
      const failed = trials.filter((t) => t.outcome !== "ok");
      assert.deepEqual(failed.map((t) => `${t.config}: ${t.reason}`), []);
      const got = run.entry.buckets["16"];
      if (Object.keys(run.judged).length === 0) {
        // Both stored configs won their stages (the fused one as the candidate the space lacks):
        // the run's pair is the stored one, with no other to time it against.
        assert.deepEqual([got.fused.config, got.batched?.config], [fused, stored.batched!.config]);
      } else {
        assert.deepEqual(run.judged, { "16": stored }, "the stored pair was timed in the batch");
      }
      assert.ok(got.unfused, "and the unfused baseline with it");
      // The space lacks the stored fused config: the fused stage's search timed it beside its
      // finds at its bucket (only there), so that a pair can keep it.
      const own = trials.find((t) => t.target === "fused" && t.bucket === 16 && t.config === fused);
      assert.equal(own?.outcome, "ok", "the cache's fused config was a candidate at its bucket");
      const elsewhere = (t: Trial) => t.bucket !== null && t.bucket !== 16;
      assert.ok(!trials.some((t) => t.target === "fused" && t.config === fused && elsewhere(t)));
    });
  },
});

Deno.test({
  name: "each stage's untuned default is timed beside the search's finds; no winner is slower",
  fn: async () => {
    await withGpuAndTempDir("keeps_default_", async (gpu, dir) => {
      const shapes = { fused: fusedShape(tiny), batched: batchedShape(tiny)! };
      const defaults = {
        fused: configName(defaultConfig(shapes.fused, "f32", gpu.caps, 64, "fused")),
        batched: configName(defaultConfig(shapes.batched, "f32", gpu.caps, 64, "batched")),
      };
      // On llvmpipe both are the generic 64 x 64 tile (the measured picks do not fit tiny
      // there), which suits 64 rows; the space holds it and smaller tiles.
      const space: SearchSpace = {
        tile: { bm: [16, 64], bn: [16, 64], bk: [16], rm: [4], rn: [4], vec: [4] },
      };
      // A search that asks for one config only, and not the default.
      const notDefault: Strategy = ({ candidates }) => {
        let asked = false;
        const pick = candidates.find((c) => !Object.values(defaults).includes(configName(c)));
        return {
          ask: () => asked || !pick ? [] : (asked = true, [pick]),
          tell: () => {},
        };
      };
      const log = await TrialLog.open(`${dir}/log.jsonl`);
      const options = {
        ...tinyTuneOptions(gpu, log, space, tiny),
        strategy: notDefault,
        buckets: [64],
        maxTrials: 1,
      };
      const result = (await tune(options)).entry.buckets["64"];
      const trials = await readTrials(log.path);
      for (const stage of ["fused", "batched"] as const) {
        const name = defaults[stage];
        const own = trials.find((t) => t.target === stage && t.bucket === 64 && t.config === name);
        assert.equal(own?.outcome, "ok", `${stage}: the default ${name} was timed`);
        assert.ok(result[stage]!.medianUs <= own!.medianUs!, `${stage}: no slower than it`);
      }
    });
  },
});

Deno.test("two writers of one problem and weight type both keep their buckets", async () => {
  await withTempDir("keeps_", async (dir) => {
    const path = `${dir}/gpu.json`;
    await Promise.all([
      saveCacheEntry(path, FP, "key", entry({ "1": bucket(5), "2": bucket(7) })),
      saveCacheEntry(path, FP, "key", entry({ "2": bucket(6), "4": bucket(8) })),
    ]);
    const file = await loadCacheFile(path);
    const b = file!.entries.key.buckets;
    assert.deepEqual(Object.keys(b), ["1", "2", "4"]);
    assert.equal(b["2"].fusedTotalUs, 6);
  });
});

Deno.test("planSpace() refuses buffers over the device's storage binding limit, naming them", () => {
  const spec = { name: "wide", k: 4096, segments: [{ name: "a", n: 4096 }] };
  const small = { ...CAPS, maxStorageBinding: 32 << 20 }; // 64 MiB of f32 weights do not fit
  assert.throws(
    () => planSpace(spec, "f32", [1], DEFAULT_SPACE, small),
    (e: unknown) => {
      assert.ok(e instanceof TuneInputError);
      assert.match(e.message, /the fused weights take 67108864 bytes, over .* limit of 33554432/);
      return true;
    },
  );
  // As f16 they take 32 MiB and fit; the input at m = 4096 (64 MiB) does not.
  planSpace(spec, "f16", [1], DEFAULT_SPACE, small);
  assert.throws(() => planSpace(spec, "f16", [4096], DEFAULT_SPACE, small), /the input at m=4096/);
});

Deno.test("problem names become safe log file names, keyed by shape and generator", async () => {
  const name = (problem: string, key = "k8 a=8 f16", generator = 1) =>
    logFileName(problem, key, generator);
  assert.match(await name("../../etc/x"), /^etc-x-f16-[0-9a-f]{8}\.jsonl$/);
  assert.match(await name("a b/c"), /^a-b-c-f16-/);
  assert.match(await name(".."), /^problem-f16-/);
  assert.equal(await name("p"), await name("p"), "the same problem, the same log");
  assert.notEqual(await name("p"), await name("p", "k8 a=16 f16"), "another shape");
  assert.notEqual(await name("p"), await name("p", "k8 a=8 f16", 2), "another generator");
  assert.match(await name("p", "k8 a=8 f16 fast"), /^p-f16-fast-[0-9a-f]{8}\.jsonl$/);
});
