/**
 * Faults during tuning (issue 4), in process on the software GPU: variants injected through
 * `mutateWgsl` that do not compile, compute wrong results, or run past the time limit are
 * logged as failed with their reason while the search goes on; a device lost mid-run stops the
 * run with a DeviceLostError and a log that a rerun resumes; the noise rule and its mark in the
 * results table.
 */
import assert from "node:assert/strict";
import type { SearchSpace } from "../kernels/space.ts";
import { GENERATOR_VERSION } from "../cache/schema.ts";
import type { CacheEntry } from "../cache/schema.ts";
import type { Gpu } from "../tuner/gpu_device.ts";
import { DeviceLostError, openGpu } from "../tuner/gpu_device.ts";
import { formatResults } from "../tuner/report.ts";
import type { Timing } from "../tuner/timing.ts";
import { NOISY_SPREAD_PCT, settleTiming, tooNoisy } from "../tuner/timing.ts";
import type { Trial } from "../tuner/trial_log.ts";
import { readTrials, TrialLog } from "../tuner/trial_log.ts";
import { tune } from "../tuner/tune.ts";
import { loadProblem } from "../tuner/yaml_file.ts";
import { ROOT, tinyTuneOptions, withGpuAndTempDir, withTempDir } from "./helpers.ts";

const spec = await loadProblem(`${ROOT}problems/tiny.yaml`);

/** Inserts WGSL at the start of a kernel's entry point. */
function atEntry(code: string, statements: string): string {
  const out = code.replace(/(fn main\([\s\S]*?\)\s*\{)/, `$1\n${statements}\n`);
  assert.notEqual(out, code, "the kernel has an entry point to mutate");
  return out;
}

/** Mutations of a config's WGSL, by config name. */
const BREAK = {
  /** Not WGSL any more. */
  compile: (code: string) => code.replace("fn main(", "fn main(this is not WGSL "),
  /** Returns before writing anything: the output keeps its NaN poison. */
  unwritten: (code: string) => atEntry(code, "  return;"),
  /** Writes every output 0.1% too large. */
  scaled: (code: string) => {
    const out = code.replace(/(\] = )(acc\w+);/g, "$1 1.001 * $2;");
    assert.notEqual(out, code, "the kernel stores accumulators");
    return out;
  },
  /**
   * At m < 8 (the check at m = 3), runs about 4 s on llvmpipe (one workgroup of 128 threads,
   * on one core), then computes the right result; at larger m it does not spin, so the check at
   * m = 67 in the same submit adds no more. One loop only: llvmpipe ends any shader's loops
   * after 65535 iterations in all.
   */
  slow: (code: string) =>
    atEntry(
      code,
      `  var spin = f32(params.m);
  let spins = select(0u, 65000u, params.m < 8u);
  for (var spin_i = 0u; spin_i < spins; spin_i++) {${
        "\n    spin = sin(spin) * 1.5 + cos(spin * 0.7);".repeat(200)
      }
  }
  if (spin == 12345.0) { return; }`,
    ),
};

const baseOptions = (gpu: Gpu, log: TrialLog, space: SearchSpace) =>
  tinyTuneOptions(gpu, log, space, spec);

/** The latest check trial (bucket null) of a config per target, from the log file. */
async function checks(path: string): Promise<Map<string, Trial>> {
  const out = new Map<string, Trial>();
  for (const t of await readTrials(path)) {
    if (t.bucket === null) out.set(`${t.target} ${t.config}`, t);
  }
  return out;
}

Deno.test({
  name:
    "variants that do not compile or compute wrong results are logged as failed and the search goes on",
  fn: async () => {
    await withGpuAndTempDir("tune_faults_", async (gpu, dir) => {
      const space: SearchSpace = {
        tile: { bm: [16], bn: [16, 32], bk: [8], rm: [2, 4], rn: [2], vec: [4] },
      };
      const broken: Record<string, (code: string) => string> = {
        "tile-bm16-bn16-bk8-rm2-rn2-v4": BREAK.compile,
        "tile-bm16-bn16-bk8-rm4-rn2-v4": BREAK.unwritten,
        "tile-bm16-bn32-bk8-rm2-rn2-v4": BREAK.scaled,
      };
      const good = "tile-bm16-bn32-bk8-rm4-rn2-v4";
      const log = await TrialLog.open(`${dir}/log.jsonl`);
      const result = await tune({
        ...baseOptions(gpu, log, space),
        unfused: true,
        mutateWgsl: (name, code) => broken[name]?.(code) ?? code,
      });
      const found = await checks(log.path);
      for (const target of ["fused", "batched"]) {
        const compile = found.get(`${target} tile-bm16-bn16-bk8-rm2-rn2-v4`)!;
        assert.equal(compile?.outcome, "compile", `${target}: ${JSON.stringify(compile)}`);
        assert.match(
          compile.reason!,
          /Cannot compile kernel "tile-bm16-bn16-bk8-rm2-rn2-v4": .*\S/,
        );
        const unwritten = found.get(`${target} tile-bm16-bn16-bk8-rm4-rn2-v4`)!;
        assert.equal(unwritten?.outcome, "verify", JSON.stringify(unwritten));
        assert.match(unwritten.reason!, /^at m=3: row 0 batch 0 column 0: got NaN/);
        const scaled = found.get(`${target} tile-bm16-bn32-bk8-rm2-rn2-v4`)!;
        assert.equal(scaled?.outcome, "verify", JSON.stringify(scaled));
        assert.match(scaled.reason!, /^at m=3: row 0 .*error .* > bound/);
        // Compiled together with the broken ones, the good config kept its own (no) errors.
        assert.equal(found.get(`${target} ${good}`)?.outcome, "ok", target);
      }
      const bucket = result.entry.buckets["16"];
      assert.equal(bucket.fused.config, good, "the one good config won");
      assert.equal(bucket.batched!.config, good);
      assert.ok(bucket.unfused, "the unfused baseline was timed too");
      assert.deepEqual(result.failedBuckets, []);
      assert.ok(
        result.outcomes.compile >= 2 && result.outcomes.verify >= 4,
        JSON.stringify(result.outcomes),
      );

      // Rerun: the failures are resumed from the log, not tried again.
      const again = await tune({
        ...baseOptions(gpu, await TrialLog.open(log.path), space),
        unfused: true,
        mutateWgsl: (name, code) => broken[name]?.(code) ?? code,
      });
      assert.deepEqual(again.outcomes, { ok: 0, invalid: 0, compile: 0, verify: 0, runtime: 0 });
      assert.equal(again.entry.buckets["16"].fused.config, good);
    });
  },
});

Deno.test({
  name: "every candidate of a stage failing leaves the bucket untuned and says so",
  fn: async () => {
    await withGpuAndTempDir("tune_faults_", async (gpu, dir) => {
      const space: SearchSpace = {
        tile: { bm: [16], bn: [32], bk: [8], rm: [2], rn: [2], vec: [4] },
      };
      const result = await tune({
        ...baseOptions(gpu, await TrialLog.open(`${dir}/log.jsonl`), space),
        mutateWgsl: (_, code) => BREAK.unwritten(code),
      });
      assert.deepEqual(result.failedBuckets, [16]);
      assert.deepEqual(result.skippedBuckets, []);
      assert.deepEqual(result.entry.buckets, {});
    });
  },
});

Deno.test({
  name:
    "a variant that runs past the time limit is logged once as timed out and the search goes on",
  fn: async () => {
    await withGpuAndTempDir("tune_faults_", async (gpu, dir) => {
      const slow = "tile-bm16-bn128-bk8-rm2-rn8-v4";
      const space: SearchSpace = {
        tile: { bm: [16], bn: [32, 128], bk: [8], rm: [2], rn: [2, 8], vec: [4] },
      };
      const log = await TrialLog.open(`${dir}/log.jsonl`);
      const started = performance.now();
      const result = await tune({
        ...baseOptions(gpu, log, space),
        trialTimeoutMs: 1000,
        mutateWgsl: (name, code) => name === slow ? BREAK.slow(code) : code,
      });
      const seconds = (performance.now() - started) / 1000;
      const trials = await readTrials(log.path);
      const checks = (config: string) =>
        trials.filter((t) => t.target === "fused" && t.bucket === null && t.config === config);
      // Checked in one submit with the others first, it timed out; each was checked again
      // alone, and only the slow one timed out then.
      const alone = checks(slow).filter((t) => t.reason === "timed out after 1 s (check at m=3)");
      assert.equal(alone.length, 1, `logged once alone: ${JSON.stringify(checks(slow))}`);
      assert.equal(alone[0].outcome, "runtime");
      assert.equal(alone[0].generator, GENERATOR_VERSION);
      assert.deepEqual(checks(slow).at(-1), alone[0], "the last word on it");
      const others = new Set(trials.filter((t) => t.target === "fused").map((t) => t.config));
      others.delete(slow);
      for (const config of others) {
        assert.equal(checks(config).at(-1)?.outcome, "ok", `${config} passed its check alone`);
      }
      assert.equal(log.find("fused", null, slow, GENERATOR_VERSION)?.outcome, "runtime");
      assert.ok(result.outcomes.runtime >= 1, JSON.stringify(result.outcomes));
      const fused = result.entry.buckets["16"]?.fused;
      assert.ok(fused && fused.config !== slow, `another config won: ${JSON.stringify(fused)}`);
      assert.ok(fused.trials >= 1);
      assert.ok(seconds < 60, `took ${seconds} s`);
    });
  },
});

Deno.test({
  name:
    "a device lost mid-run stops tune() with a DeviceLostError, logs no failure, and a rerun resumes",
  fn: async () => {
    await withTempDir("tune_faults_", async (dir) => {
      const space: SearchSpace = {
        tile: { bm: [16], bn: [16, 32], bk: [8], rm: [2, 4], rn: [2, 4], vec: [4] },
        gemv: { nc: [2, 4], cn: [1], lanes: [4], rm: [1], vec: [2, 4], subgroup: [false] },
      };
      const path = `${dir}/log.jsonl`;
      const first = await openGpu();
      let events = 0;
      const run = tune({
        ...baseOptions(first, await TrialLog.open(path), space),
        buckets: [1, 16],
        unfused: true,
        onProgress: () => {
          if (++events === 6) first.device.destroy();
        },
      });
      await assert.rejects(run, (e: unknown) => {
        assert.ok(e instanceof DeviceLostError, String(e));
        assert.match(
          e.message,
          /^The GPU device was lost \(.*\); trials so far are in .*log\.jsonl: rerun to resume$/,
        );
        return true;
      });
      const logged = await readTrials(path);
      const timed = logged.filter((t) => t.bucket !== null);
      assert.ok(timed.length >= 5, `trials before the loss are kept: ${timed.length}`);
      assert.deepEqual(
        logged.filter((t) => t.outcome !== "ok" && t.outcome !== "invalid"),
        [],
        "nothing failed because of the loss",
      );

      const second = await openGpu();
      try {
        const log = await TrialLog.open(path);
        const result = await tune({
          ...baseOptions(second, log, space),
          buckets: [1, 16],
          unfused: true,
        });
        assert.ok(result.resumed >= timed.length, `resumed ${result.resumed}`);
        assert.deepEqual(Object.keys(result.entry.buckets).sort(), ["1", "16"]);
        const all = (await readTrials(path)).filter((t) => t.bucket !== null);
        const keys = all.map((t) => `${t.target} ${t.bucket} ${t.config}`);
        assert.equal(new Set(keys).size, keys.length, "no trial was run twice");
      } finally {
        second.device.destroy();
      }
    });
  },
});

const t = (medianUs: number, spreadPct: number, clock: "gpu" | "wall" = "gpu"): Timing => ({
  medianUs,
  spreadPct,
  samples: 20,
  clock,
});

Deno.test("the noise rule: a spread over 25% is measured again, and flagged if it stays over", () => {
  assert.equal(NOISY_SPREAD_PCT, 25);
  assert.equal(tooNoisy(t(10, 25)), false, "25% is within the limit");
  assert.equal(tooNoisy(t(10, 25.1)), true);
  assert.equal(tooNoisy(t(10, 90, "wall")), true, "wall-clock timings have a spread too");
  assert.equal(tooNoisy(t(10, 5, "wall")), false);
  // Tight enough: kept as it is, no repeat needed.
  assert.deepEqual(settleTiming(t(10, 5)), t(10, 5));
  // Noisy, then tight on the repeat: the repeat is kept, unflagged.
  assert.deepEqual(settleTiming(t(10, 40), t(12, 8)), t(12, 8));
  // Noisy twice: the tighter one is kept, flagged.
  assert.deepEqual(settleTiming(t(10, 40), t(12, 30)), { ...t(12, 30), noisy: true });
  assert.deepEqual(settleTiming(t(10, 30), t(12, 60)), { ...t(10, 30), noisy: true });
  // Noisy and no repeat (it failed): flagged.
  assert.deepEqual(settleTiming(t(10, 30)), { ...t(10, 30), noisy: true });
});

Deno.test("the results table marks a noisy winner's time with ~ and says what it means", () => {
  const stage = (config: string, medianUs: number, noisy?: true) => ({
    config,
    medianUs,
    runnerUp: null,
    runnerUpMarginPct: null,
    trials: 1,
    ...(noisy ? { noisy } : {}),
  });
  const entry = (noisy?: true): CacheEntry => ({
    problem: { k: 64, segments: [{ name: "a", n: 80 }], batched: null, dtype: "f32" },
    generatorVersion: GENERATOR_VERSION,
    tunedAt: "2025-01-01T00:00:00.000Z",
    buckets: {
      "1": {
        fused: stage("gemv-nc4-cn1-l16-rm1-v4", 12.34, noisy),
        batched: null,
        fusedTotalUs: 12.34,
        unfused: null,
      },
      "16": {
        fused: stage("tile-bm16-bn32-bk8-rm4-rn2-v4", 20),
        batched: null,
        fusedTotalUs: 20,
        unfused: null,
      },
    },
  });
  const plain = { name: "p", k: 64, segments: [{ name: "a", n: 80 }] };
  const noisy = formatResults(plain, "f32", entry(true));
  assert.match(noisy, /^1 .* 12\.3~ /m);
  assert.match(noisy, /^16 .* 20\.0 /m);
  assert.match(noisy, /~ noisy: the timing's spread stayed over 25% when measured again/);
  const quiet = formatResults(plain, "f32", entry());
  assert.doesNotMatch(quiet, /~/);
});
