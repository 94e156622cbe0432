import assert from "node:assert/strict";
import type { Trial } from "../tuner/trial_log.ts";
import { readTrials, TrialLog } from "../tuner/trial_log.ts";
import { withTempDir } from "./helpers.ts";

function trial(config: string, extra: Partial<Trial> = {}): Trial {
  return {
    generator: 1,
    target: "fused",
    bucket: 4,
    config,
    outcome: "ok",
    medianUs: 12.5,
    spreadPct: 3,
    samples: 20,
    clock: "gpu",
    at: "2025-01-01T00:00:00.000Z",
    ...extra,
  };
}

Deno.test("readTrials() of a missing log is empty", async () => {
  await withTempDir("trial_log_test_", async (dir) => {
    assert.deepEqual(await readTrials(`${dir}/none.jsonl`), []);
  });
});

Deno.test("readTrials() reads a gzipped log (.gz) as the plain one", async () => {
  await withTempDir("trial_log_test_", async (dir) => {
    const text = [trial("gemv-a"), trial("gemv-b")].map((t) => JSON.stringify(t)).join("\n");
    await Deno.writeTextFile(`${dir}/log.jsonl`, text);
    const gzipped = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
    await Deno.writeFile(`${dir}/log.jsonl.gz`, gzipped);
    const plain = await readTrials(`${dir}/log.jsonl`);
    assert.equal(plain.length, 2);
    assert.deepEqual(await readTrials(`${dir}/log.jsonl.gz`), plain);
  });
});

Deno.test("TrialLog appends one JSON line per trial and a reopened log reads them back", async () => {
  await withTempDir("trial_log_test_", async (dir) => {
    const path = `${dir}/sub/dir/log.jsonl`; // the first append creates the folder
    const log = await TrialLog.open(path);
    assert.equal(log.path, path);
    assert.equal(log.trials.length, 0);
    await log.append(trial("a"));
    await log.append(trial("b", { outcome: "verify", reason: "row 0 wrong", medianUs: undefined }));
    const text = await Deno.readTextFile(path);
    assert.equal(text.split("\n").length, 3, "two lines, each ending in a newline");
    assert.ok(text.endsWith("\n"));
    const again = await TrialLog.open(path);
    assert.equal(again.trials.length, 2);
    assert.deepEqual(again.trials[0], trial("a"));
    assert.equal(again.trials[1].reason, "row 0 wrong");
  });
});

Deno.test("TrialLog.open() of a log committed gzipped resumes from it and appends to a plain copy", async () => {
  await withTempDir("trial_log_test_", async (dir) => {
    const path = `${dir}/log.jsonl`;
    const text = [trial("gemv-a"), trial("gemv-b")].map((t) => JSON.stringify(t) + "\n").join("");
    const gzipped = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
    await Deno.writeFile(`${path}.gz`, gzipped);
    const before = await Deno.readFile(`${path}.gz`);
    const log = await TrialLog.open(path);
    assert.deepEqual(log.trials, [trial("gemv-a"), trial("gemv-b")]);
    assert.ok(log.find("fused", 4, "gemv-b", 1), "the committed trials are resumed");
    await log.append(trial("gemv-c"));
    assert.equal(await Deno.readTextFile(path), text + JSON.stringify(trial("gemv-c")) + "\n");
    assert.deepEqual(await Deno.readFile(`${path}.gz`), before, "the .gz is left as it was");
    // From now on the plain log is the one read, with the appended trial.
    assert.equal((await TrialLog.open(path)).trials.length, 3);
  });
});

Deno.test("TrialLog.find() matches generator, target, bucket and config, latest first", async () => {
  await withTempDir("trial_log_test_", async (dir) => {
    const log = await TrialLog.open(`${dir}/log.jsonl`);
    await log.append(trial("a", { medianUs: 10 }));
    await log.append(trial("a", { medianUs: 20 }));
    await log.append(trial("a", { bucket: null, outcome: "invalid", reason: "too big" }));
    await log.append(trial("a", { generator: 2, medianUs: 30 }));
    await log.append(trial("a", { target: "batched", medianUs: 40 }));
    assert.equal(log.find("fused", 4, "a", 1)?.medianUs, 20, "the latest of two");
    assert.equal(log.find("fused", null, "a", 1)?.outcome, "invalid");
    assert.equal(log.find("fused", 4, "a", 2)?.medianUs, 30);
    assert.equal(log.find("batched", 4, "a", 1)?.medianUs, 40);
    assert.equal(log.find("fused", 8, "a", 1), undefined, "other bucket");
    assert.equal(log.find("fused", 4, "b", 1), undefined, "other config");
    assert.equal(log.find("fused", 4, "a", 3), undefined, "other generator");
    const reopened = await TrialLog.open(`${dir}/log.jsonl`);
    assert.equal(reopened.find("fused", 4, "a", 1)?.medianUs, 20);
  });
});

Deno.test("a torn last line from a kill mid-write is skipped and cut off, and the next append starts a fresh line", async () => {
  await withTempDir("trial_log_test_", async (dir) => {
    const path = `${dir}/log.jsonl`;
    const log = await TrialLog.open(path);
    await log.append(trial("a"));
    await log.append(trial("b"));
    const whole = await Deno.readTextFile(path);
    // Simulate a kill in the middle of writing the third line.
    const torn = JSON.stringify(trial("c")).slice(0, 25);
    await Deno.writeTextFile(path, torn, { append: true });
    const read = await readTrials(path);
    assert.deepEqual(read.map((t) => t.config), ["a", "b"]);
    const resumed = await TrialLog.open(path);
    assert.deepEqual(resumed.trials.map((t) => t.config), ["a", "b"]);
    assert.equal(await Deno.readTextFile(path), whole, "the torn tail is cut off");
    await resumed.append(trial("d"));
    const lines = (await Deno.readTextFile(path)).split("\n");
    assert.equal(lines.length, 4, "three lines, each ending in a newline");
    assert.equal(JSON.parse(lines[2]).config, "d", "the new trial is on a line of its own");
  });
});

Deno.test("a log torn before its first newline is emptied, and open() of a missing log writes nothing", async () => {
  await withTempDir("trial_log_test_", async (dir) => {
    const path = `${dir}/log.jsonl`;
    await Deno.writeTextFile(path, JSON.stringify(trial("a")).slice(0, 10));
    const log = await TrialLog.open(path);
    assert.equal(log.trials.length, 0);
    assert.equal(await Deno.readTextFile(path), "");
    const missing = await TrialLog.open(`${dir}/sub/none.jsonl`);
    assert.equal(missing.trials.length, 0);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["log.jsonl"], "no folder");
  });
});

Deno.test("a line that is JSON but not a trial is refused, naming the line", async () => {
  await withTempDir("trial_log_test_", async (dir) => {
    const path = `${dir}/log.jsonl`;
    const good = JSON.stringify(trial("a"));
    for (const bad of ["42", "{}", JSON.stringify({ ...trial("b"), outcome: "great" })]) {
      await Deno.writeTextFile(path, `${good}\n${bad}\n`);
      await assert.rejects(TrialLog.open(path), (e: unknown) => {
        assert.ok(e instanceof SyntaxError);
        assert.match(e.message, /line 2 is not a trial/);
        return true;
      }, bad);
    }
  });
});

Deno.test({
  name: "a log resumed after a torn line can be resumed again",
  fn: async () => {
    await withTempDir("trial_log_test_", async (dir) => {
      const path = `${dir}/log.jsonl`;
      const log = await TrialLog.open(path);
      await log.append(trial("a"));
      await Deno.writeTextFile(path, JSON.stringify(trial("b")).slice(0, 25), { append: true });
      const resumed = await TrialLog.open(path);
      await resumed.append(trial("c"));
      const again = await TrialLog.open(path);
      assert.deepEqual(again.trials.map((t) => t.config), ["a", "c"]);
    });
  },
});

Deno.test("readTrials() throws a SyntaxError naming the line for a bad line in the middle", async () => {
  await withTempDir("trial_log_test_", async (dir) => {
    const path = `${dir}/log.jsonl`;
    const good = JSON.stringify(trial("a"));
    await Deno.writeTextFile(path, `${good}\nnot json\n${good}\n`);
    await assert.rejects(readTrials(path), (e: unknown) => {
      assert.ok(e instanceof SyntaxError);
      assert.match(e.message, /line 2/);
      assert.ok(e.message.includes(path));
      return true;
    });
    await assert.rejects(TrialLog.open(path), SyntaxError);
  });
});

Deno.test("readTrials() skips blank lines", async () => {
  await withTempDir("trial_log_test_", async (dir) => {
    const path = `${dir}/log.jsonl`;
    const good = JSON.stringify(trial("a"));
    await Deno.writeTextFile(path, `\n${good}\n\n${good}\n\n`);
    assert.equal((await readTrials(path)).length, 2);
  });
});

Deno.test("TrialLog keeps run records apart from trials, across a reopen", async () => {
  await withTempDir("trial_log_test_", async (dir) => {
    const path = `${dir}/log.jsonl`;
    const log = await TrialLog.open(path);
    const run = {
      run: {
        seed: 7,
        problem: "k8 a=8 f32",
        generator: 1,
        strategy: "random",
        maxTrials: 4,
        buckets: [1, 2],
        at: "2026-11-24T00:00:00.000Z",
      },
    };
    await log.appendRun(run);
    await log.append(trial("a"));
    const again = await TrialLog.open(path);
    assert.deepEqual(again.runs, [run]);
    assert.deepEqual(again.trials, [trial("a")]);
    assert.deepEqual(await readTrials(path), [trial("a")]);
  });
});
