/**
 * End to end on the software GPU: `deno task tune` for problems/tiny.yaml into a temporary
 * cache folder, then the dispatcher reading that cache file (tuned_dispatch.ts, a child process
 * like the tuner), then a rerun that resumes.
 */
import assert from "node:assert/strict";
import { loadProblem } from "../../tuner/yaml_file.ts";
import { loadCacheFile } from "../../cache/store.ts";
import { readTrials } from "../../tuner/trial_log.ts";
import { problemKey } from "../../cache/schema.ts";
import { filesUnder, ROOT, runCli, runScript, TINY_TUNE_ARGS, withTempDir } from "../helpers.ts";

async function tune(cacheDir: string) {
  // The compile pool is off by default on a software adapter: run it here all the same.
  const out = await runCli([...TINY_TUNE_ARGS, "--cache-dir", cacheDir, "--compile-workers", "1"]);
  const text = out.stdout + out.stderr;
  assert.equal(out.code, 0, text);
  return text;
}

Deno.test({
  name: "a tuned cache for tiny.yaml drives the dispatcher, and a rerun resumes without new trials",
  fn: async () => {
    await withTempDir("tune_e2e_", async (dir) => {
      const first = await tune(dir);
      const files = filesUnder(dir);
      const cacheFiles = files.filter((f) => f.endsWith(".json"));
      const logs = files.filter((f) => f.endsWith(".jsonl"));
      assert.equal(cacheFiles.length, 1, `one cache file: ${files.join(", ")}`);
      assert.equal(logs.length, 1, `one trial log: ${files.join(", ")}`);
      assert.ok(!files.some((f) => f.endsWith(".tmp") || f.endsWith(".lock")), files.join(", "));
      const cachePath = `${dir}/${cacheFiles[0]}`;
      const logPath = `${dir}/${logs[0]}`;
      assert.match(first, /trials ok [1-9]/, first);
      // Where the time went: checks and timing each took some, and less than all.
      const split =
        /time went to setup ([\d.]+) s, compile waits ([\d.]+) s \((\d+) configs compiled, (\d+) ms each\), checks ([\d.]+) s, timing ([\d.]+) s, search ([\d.]+) s, logging ([\d.]+) s, the rest (-?[\d.]+) s/
          .exec(first);
      assert.ok(split, first);
      const [setup, compile, compiled, each, checks, timing, search, logging, rest] = split.slice(1)
        .map(Number);
      assert.ok(checks > 0 && timing > 0, split[0]);
      assert.ok([setup, compile, search, logging, rest].every((x) => x >= 0), split[0]);
      // A fresh run compiles every config it checks: as many as it has trials, at least.
      assert.ok(compiled >= 3, split[0]);
      // The wait a config: the total in 0.1 s, each in whole ms, so within their rounding.
      assert.ok(Math.abs(each * compiled - compile * 1000) <= 50 + compiled, split[0]);

      const spec = await loadProblem(`${ROOT}problems/tiny.yaml`);
      const cache = await loadCacheFile(cachePath);
      const entry = cache!.entries[problemKey(spec, "f32")];
      assert.ok(entry, `the cache has an entry for ${problemKey(spec, "f32")}`);
      assert.deepEqual(Object.keys(entry.buckets).sort((a, b) => Number(a) - Number(b)), [
        "1",
        "3",
        "16",
      ]);
      for (const bucket of Object.values(entry.buckets)) {
        // The budget's 3, plus at most one for each weaker device tier none of them fits.
        assert.ok(bucket.fused.trials >= 1 && bucket.fused.trials <= 5, "at most 3 + 2 trials");
        assert.ok(bucket.batched, "the batched stage was tuned");
      }

      // The dispatcher on the tuned cache, in a process of its own as a user's would be.
      const dispatched = await runScript("tests/spawn/tuned_dispatch.ts", [cachePath]);
      assert.equal(dispatched.code, 0, dispatched.stderr);
      const picks: Record<
        string,
        { source: string; bucket: number; fused: string; batched: string }
      > = JSON.parse(dispatched.stdout);
      const expectedBucket: Record<number, number> = { 1: 1, 2: 3, 3: 3, 16: 16, 40: 16 };
      assert.deepEqual(Object.keys(picks).map(Number), Object.keys(expectedBucket).map(Number));
      for (const [m, bucket] of Object.entries(expectedBucket)) {
        const pick = picks[m];
        assert.equal(pick.source, "tuned", `m=${m}`);
        assert.equal(pick.bucket, bucket, `m=${m} uses bucket ${bucket}`);
        assert.equal(pick.fused, entry.buckets[String(bucket)].fused.config);
        assert.equal(pick.batched, entry.buckets[String(bucket)].batched!.config);
      }

      // A rerun with the same arguments and log finds every trial in the log.
      const logBefore = await readTrials(logPath);
      const second = await tune(dir);
      const resumed = Number(/resumed (\d+)/.exec(second)?.[1] ?? "0");
      assert.ok(resumed > 0, `the rerun resumed trials:\n${second}`);
      assert.match(second, /trials ok 0, invalid 0, compile 0, verify 0, runtime 0/, second);
      // It adds its run record (seed and options), and no trial.
      assert.deepEqual(await readTrials(logPath), logBefore, "no new trials were logged");
      const again = await loadCacheFile(cachePath);
      const entry2 = again!.entries[problemKey(spec, "f32")];
      for (const m of ["1", "3", "16"]) {
        assert.equal(entry2.buckets[m].fused.config, entry.buckets[m].fused.config, `m=${m}`);
        assert.equal(entry2.buckets[m].fused.medianUs, entry.buckets[m].fused.medianUs);
      }
      // Formerly a known bug: the one-pass timings of the whole projection, fused and unfused,
      // were taken again on resume and could flip a bucket's mode. They are trials now.
      assert.deepEqual(
        entry2.buckets,
        entry.buckets,
        "a resumed tune leaves every timing as it was",
      );
      const projections = (await readTrials(logPath)).filter((t) =>
        t.target.startsWith("projection:")
      );
      assert.equal(projections.length, 6, "the fused and unfused projection timings of 3 buckets");
    });
  },
});
