/**
 * The tuner killed, interrupted, run twice at once (issue 4), or losing its device, as
 * processes: `deno task tune` on problems/tiny.yaml into a temporary cache folder, SIGKILLed at
 * several moments (startup, the burst of invalid configs, mid-search) and then rerun, SIGINTed,
 * its device destroyed mid-run (exit 3), and two tuners of different weight types writing one
 * cache file together. After each, the log parses, a rerun
 * resumes from it without running a trial twice, and the cache file is valid.
 */
import assert from "node:assert/strict";
import { parseCacheFile, problemKey } from "../../cache/schema.ts";
import type { Trial } from "../../tuner/trial_log.ts";
import { readTrials } from "../../tuner/trial_log.ts";
import { loadProblem } from "../../tuner/yaml_file.ts";
import { filesUnder, ROOT, TINY_TUNE_ARGS, withTempDir } from "../helpers.ts";

const spec = await loadProblem(`${ROOT}problems/tiny.yaml`);

/**
 * The cache file the runs wrote in a folder, if any. Found by its extension, not named from the
 * adapter: this process stays off WebGPU (tests/spawn/ runs apart from the in-process GPU tests).
 */
function cacheName(cacheDir: string): string | undefined {
  const names = filesUnder(cacheDir).filter((f) => f.endsWith(".json"));
  assert.ok(names.length <= 1, `at most one cache file: ${names.join(", ")}`);
  return names[0];
}

function start(cacheDir: string, extra: string[] = [], env: Record<string, string> = {}) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "tuner/cli.ts", ...TINY_TUNE_ARGS, "--cache-dir", cacheDir, ...extra],
    cwd: ROOT,
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function finish(child: Deno.ChildProcess) {
  const out = await child.output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, signal: out.signal, text: decode(out.stdout) + decode(out.stderr) };
}

function logPath(cacheDir: string, dtype = "f32"): string | undefined {
  const log = filesUnder(cacheDir).find((f) =>
    new RegExp(`/tiny-${dtype}-[0-9a-f]{8}\\.jsonl$`).test(f)
  );
  return log && `${cacheDir}/${log}`;
}

/** Lines of the log so far, complete or not, and how many of them are timed trials. */
async function logLines(cacheDir: string): Promise<{ lines: number; timed: number }> {
  const path = logPath(cacheDir);
  if (!path) return { lines: 0, timed: 0 };
  const text = await Deno.readTextFile(path).catch(() => "");
  const lines = text.split("\n").filter((l) => l !== "");
  // Timed trials: the lines of a bucket (not checks, with bucket null, nor run records).
  const timed = lines.filter((l) => /"bucket":\d/.test(l)).length;
  return { lines: lines.length, timed };
}

/**
 * A moment to kill at: some milliseconds after the start, or once this run has added so many
 * lines, or timed trials, to the log.
 */
type Moment = { ms: number } | { lines: number } | { timed: number };

/** Waits for a moment of a running tuner; false if it ended first. */
async function reach(child: Deno.ChildProcess, cacheDir: string, moment: Moment) {
  let ended = false;
  child.status.then(() => (ended = true));
  const t0 = Date.now();
  const before = await logLines(cacheDir);
  while (!ended) {
    if ("ms" in moment && Date.now() - t0 >= moment.ms) return true;
    const seen = await logLines(cacheDir);
    if ("lines" in moment && seen.lines - before.lines >= moment.lines) return true;
    if ("timed" in moment && seen.timed - before.timed >= moment.timed) return true;
    if (Date.now() - t0 > 60_000) throw new Error(`never reached ${JSON.stringify(moment)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

/** Checks what a kill may leave: a readable log, no trial twice, a valid cache file or none. */
async function checkLeftovers(cacheDir: string, what: string): Promise<Trial[]> {
  const path = logPath(cacheDir);
  const trials = path ? await readTrials(path) : [];
  const keys = trials.filter((t) => t.bucket !== null || t.outcome !== "invalid")
    .map((t) => `${t.target} ${t.bucket} ${t.config}`);
  assert.equal(new Set(keys).size, keys.length, `${what}: no trial was logged twice`);
  const name = cacheName(cacheDir);
  if (name !== undefined) {
    const cache = `${cacheDir}/${name}`;
    parseCacheFile(JSON.parse(await Deno.readTextFile(cache)), cache); // complete and valid
  }
  const stray = filesUnder(cacheDir).filter((f) => /\.(tmp|lock)$|\.lock\./.test(f));
  assert.deepEqual(stray, [], `${what}: no temporary or lock files`);
  return trials;
}

Deno.test("a device lost mid-run exits 3, says where the trials are, and a rerun resumes", async () => {
  await withTempDir("tune_lost_", async (dir) => {
    // The CLI's test-only fault: the device is destroyed after the fifth trial.
    const lost = await finish(start(dir, [], { TUNE_TEST_LOSE_DEVICE_AFTER: "5" }));
    assert.equal(lost.code, 3, lost.text);
    assert.match(
      lost.text,
      /The GPU device was lost \(.*\); trials so far are in .*tiny-f32-[0-9a-f]{8}\.jsonl: rerun to resume/,
    );
    const trials = await checkLeftovers(dir, "after the loss");
    const timed = trials.filter((t) => t.bucket !== null);
    assert.ok(timed.length >= 4, `trials before the loss are kept: ${timed.length}`);
    assert.deepEqual(
      trials.filter((t) => t.outcome !== "ok" && t.outcome !== "invalid"),
      [],
      "nothing was logged as failed because of the loss",
    );
    const again = await finish(start(dir));
    assert.equal(again.code, 0, again.text);
    assert.match(again.text, /resumed [1-9]\d*/);
    await checkLeftovers(dir, "after the rerun");
  });
});

Deno.test({
  name:
    "the tuner SIGKILLed at several moments resumes each time from its log and ends with a valid cache",
  fn: async () => {
    await withTempDir("tune_kill_", async (dir) => {
      const moments: Moment[] = [
        { ms: 150 }, // starting up
        { lines: 1 }, // logging the invalid configs
        { timed: 3 },
        { ms: 700 },
        { timed: 10 },
        { ms: 1200 },
        { timed: 10 },
      ];
      let killed = 0;
      let before = 0;
      for (const moment of moments) {
        const child = start(dir);
        const alive = await reach(child, dir, moment);
        if (alive) {
          child.kill("SIGKILL");
          killed++;
        }
        const run = await finish(child);
        if (alive) assert.equal(run.signal, "SIGKILL", run.text);
        const trials = await checkLeftovers(dir, `after a kill at ${JSON.stringify(moment)}`);
        assert.ok(trials.length >= before, "the log only grows");
        before = trials.length;
      }
      assert.ok(killed >= 5, `killed ${killed} runs mid-way`);
      const last = await finish(start(dir));
      assert.equal(last.code, 0, last.text);
      const resumed = Number(/resumed (\d+)/.exec(last.text)?.[1] ?? "0");
      assert.ok(resumed > 0, `the last run resumed trials:\n${last.text}`);
      await checkLeftovers(dir, "the last run");
      const name = cacheName(dir)!;
      const cache = parseCacheFile(JSON.parse(await Deno.readTextFile(`${dir}/${name}`)), name);
      const entry = cache.entries[problemKey(spec, "f32")];
      assert.deepEqual(Object.keys(entry.buckets).sort(), ["1", "16", "3"]);
      // Resumed once more, nothing is left to run.
      const again = await finish(start(dir));
      assert.match(
        again.text,
        /trials ok 0, invalid 0, compile 0, verify 0, runtime 0/,
        again.text,
      );
    });
  },
});

Deno.test({
  name:
    "Ctrl-C (SIGINT) stops the tuner with exit 130, says where the log is, writes no cache; a rerun resumes",
  fn: async () => {
    await withTempDir("tune_kill_", async (dir) => {
      const child = start(dir);
      assert.ok(await reach(child, dir, { timed: 5 }), "the run got as far as 5 trials");
      child.kill("SIGINT");
      const run = await finish(child);
      assert.equal(run.code, 130, run.text);
      const log = logPath(dir)!;
      assert.ok(run.text.includes(`Interrupted. Trials so far are in ${log}`), run.text);
      assert.match(run.text, /rerun the same command to resume/);
      assert.equal(cacheName(dir), undefined, "no cache file was written");
      const trials = await checkLeftovers(dir, "after SIGINT");
      assert.ok(trials.filter((t) => t.bucket !== null).length >= 5);
      const rerun = await finish(start(dir));
      assert.equal(rerun.code, 0, rerun.text);
      assert.ok(Number(/resumed (\d+)/.exec(rerun.text)?.[1] ?? "0") >= 5, rerun.text);
      await checkLeftovers(dir, "after the rerun");
    });
  },
});

Deno.test({
  name:
    "two tuners of different weight types writing one cache folder at once both keep their results",
  fn: async () => {
    await withTempDir("tune_kill_", async (dir) => {
      const [f32, f16] = await Promise.all([
        finish(start(dir, ["--dtype", "f32", "--buckets", "1,16", "--no-unfused"])),
        finish(start(dir, ["--dtype", "f16", "--buckets", "1,16", "--no-unfused"])),
      ]);
      assert.equal(f32.code, 0, f32.text);
      assert.equal(f16.code, 0, f16.text);
      const name = cacheName(dir)!;
      const cache = parseCacheFile(JSON.parse(await Deno.readTextFile(`${dir}/${name}`)), name);
      assert.deepEqual(
        Object.keys(cache.entries).sort(),
        [problemKey(spec, "f16"), problemKey(spec, "f32")].sort(),
      );
      for (const entry of Object.values(cache.entries)) {
        assert.deepEqual(Object.keys(entry.buckets).sort(), ["1", "16"]);
      }
      await checkLeftovers(dir, "two tuners");
      assert.ok(logPath(dir, "f16") && logPath(dir, "f32"), "one log per weight type");
    });
  },
});
