/**
 * A tuner that never loses a result (issue 10), through the CLI as a child process: a run whose
 * trials all time out keeps the cache and a rerun retries them; a rerun times the cache's pair
 * beside its own; a plain rerun resumes with the log's seed. (The in-process half:
 * tests/tune_keeps_results_test.ts.)
 */
import assert from "node:assert/strict";
import type { BucketResult, CacheEntry } from "../../cache/schema.ts";
import { rowScaled } from "../../tuner/cross_check.ts";
import { RECHECK_TOP } from "../../tuner/recheck.ts";
import { readTrials, TrialLog } from "../../tuner/trial_log.ts";
import { filesUnder, runCli, withTempDir } from "../helpers.ts";

Deno.test("a run whose trials all time out keeps the cache, fails naming the bucket, and a rerun under a larger limit retries them", async () => {
  await withTempDir("keeps_cli_", async (dir) => {
    const run = (...more: string[]) =>
      runCli([
        ...["--problem", "tiny", "--buckets", "2", "--max-trials", "2", "--no-unfused"],
        ...["--quiet", "--cache-dir", `${dir}/cache`, ...more],
      ]);
    // Under a limit nothing meets, every trial times out: no winner, no entry, exit 1.
    const tight = () => run("--seed", "4", "--trial-timeout", "0.001");
    const first = await tight();
    assert.equal(first.code, 1, first.stderr);
    assert.match(
      first.stderr,
      /bucket m=2 has no tuned kernels: every candidate of a stage failed/,
    );
    const [cacheName] = filesUnder(`${dir}/cache`).filter((f) => f.endsWith(".json"));
    assert.equal(cacheName, undefined, "no empty entry is written");
    const good = await run("--seed", "3");
    assert.equal(good.code, 0, good.stderr);
    const [name] = filesUnder(`${dir}/cache`).filter((f) => f.endsWith(".json"));
    const before = await Deno.readTextFile(`${dir}/cache/${name}`);
    // Failing again does not touch the good entry: the logged winner is still the best known.
    const second = await tight();
    assert.equal(second.code, 0, second.stderr);
    const buckets = (text: string) =>
      Object.values(JSON.parse(text).entries).map((e) => (e as CacheEntry).buckets);
    assert.deepEqual(buckets(await Deno.readTextFile(`${dir}/cache/${name}`)), buckets(before));
    const [logName] = filesUnder(`${dir}/cache`).filter((f) => f.endsWith(".jsonl"));
    const timedOut = (await readTrials(`${dir}/cache/${logName}`)).filter((t) =>
      /^timed out after 0.001 s/.test(t.reason ?? "")
    );
    assert.ok(timedOut.length > 0, "trials timed out");
    // The same seed under the default limit tries them again and succeeds.
    const again = await run("--seed", "4");
    assert.equal(again.code, 0, again.stderr);
    const retried = (await readTrials(`${dir}/cache/${logName}`)).filter((t) =>
      timedOut.some((o) => o.config === t.config && o.target === t.target) && t.outcome === "ok"
    );
    assert.ok(retried.length > 0, "timed-out configs were retried and passed");
  });
});

Deno.test("a CLI rerun times the cache's pair beside its own winners and reports which stays", async () => {
  await withTempDir("keeps_cli_rival_", async (dir) => {
    const run = () =>
      runCli([
        ...["--problem", "tiny", "--buckets", "16", "--max-trials", "3"],
        ...["--quiet", "--cache-dir", `${dir}/cache`],
      ]);
    const first = await run();
    assert.equal(first.code, 0, first.stderr);
    const [name] = filesUnder(`${dir}/cache`).filter((f) => f.endsWith(".json"));
    const path = `${dir}/cache/${name}`;
    const file = JSON.parse(await Deno.readTextFile(path));
    const [key] = Object.keys(file.entries);
    const timed: BucketResult = file.entries[key].buckets["16"];
    assert.ok(timed.fused.runnerUp, "a second fused config was timed");
    // The cache's pair: another fused config, with a total no run would read.
    file.entries[key].buckets["16"] = {
      ...timed,
      fused: { ...timed.fused, config: timed.fused.runnerUp },
      fusedTotalUs: 0.001,
      unfused: null,
    };
    await Deno.writeTextFile(path, JSON.stringify(file, null, 2) + "\n");
    const second = await run();
    assert.equal(second.code, 0, second.stderr);
    assert.match(
      second.stdout,
      /f32: m=16: (the cache's pair stays|this run's pair replaces the cache's), faster whole/,
    );
    const after = JSON.parse(await Deno.readTextFile(path)).entries[key].buckets["16"];
    assert.notEqual(after.fusedTotalUs, 0.001, "the batch's time replaced the recorded one");
  });
});

Deno.test("a plain rerun resumes with the log's seed, and added buckets leave finished ones unsearched", async () => {
  await withTempDir("keeps_resume_", async (dir) => {
    const run = (buckets: string) =>
      runCli([
        ...["--problem", "tiny", "--buckets", buckets, "--max-trials", "2", "--no-unfused"],
        ...["--quiet", "--cache-dir", `${dir}/cache`],
      ]);
    const first = await run("2");
    assert.equal(first.code, 0, first.stderr);
    const seed = /f32: seed (\d+), log/.exec(first.stderr)?.[1];
    assert.ok(seed, first.stderr);
    const [logName] = filesUnder(`${dir}/cache`).filter((f) => f.endsWith(".jsonl"));
    const timedAt = async (m: number) =>
      (await readTrials(`${dir}/cache/${logName}`)).filter((t) => t.bucket === m);
    const atTwo = await timedAt(2);
    assert.ok(atTwo.length > 0);
    const second = await run("2,4");
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, new RegExp(`f32: seed ${seed} \\(the log's\\)`));
    // Bucket 2 is not searched again: the cross-check times at most bucket 4's best there, as it
    // is and scaled to 2 rows (cross_check.ts), per stage, and where that puts a config of this
    // run among the fastest, the recheck times them again (recheck.ts).
    const all = (await timedAt(2)).slice(atTwo.length);
    const rechecks = all.filter((t) => t.target.startsWith("recheck:"));
    assert.ok(rechecks.length <= 2 * RECHECK_TOP, `${rechecks.length} rechecks at m=2`);
    const added = all.filter((t) => !t.target.startsWith("recheck:"));
    const atFour = (await timedAt(4)).flatMap((t) =>
      [t.config, ...rowScaled(t.config, 0.5)].map((c) => `${t.target} ${c}`)
    );
    assert.ok(atFour.length > 0, "bucket 4 tuned");
    for (const t of added) {
      assert.ok(atFour.includes(`${t.target} ${t.config}`), `${t.target} ${t.config} at m=2`);
    }
    assert.ok(added.length <= 6, `bucket 2 resumed: ${added.length} new trials`);
    const log = await TrialLog.open(`${dir}/cache/${logName}`);
    assert.deepEqual(log.runs.map((r) => [r.run.seed, r.run.buckets]), [
      [Number(seed), [2]],
      [Number(seed), [2, 4]],
    ]);
  });
});
