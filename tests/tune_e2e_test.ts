/**
 * End to end on the software GPU: `deno task tune` for problems/tiny.yaml into a temporary
 * cache folder, then the dispatcher reading that cache file, then a rerun that resumes.
 */
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { createProjection } from "../mod.ts";
import { fusedShape, fusedWidth, segmentOffsets } from "../kernels/problem.ts";
import type { GemmShape } from "../kernels/problem.ts";
import { referenceRows } from "../kernels/reference.ts";
import { openGpu } from "../tuner/gpu_device.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";
import { loadProblem } from "../tuner/yaml_file.ts";
import { loadCacheFile } from "../cache/store.ts";
import { readTrials } from "../tuner/trial_log.ts";
import { problemKey } from "../cache/schema.ts";
import { filesUnder, TINY_TUNE_ARGS, withTempDir } from "./helpers.ts";

const root = fileURLToPath(new URL("..", import.meta.url));

async function tune(cacheDir: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "tuner/cli.ts",
      ...TINY_TUNE_ARGS,
      "--cache-dir",
      cacheDir,
      // The compile pool is off by default on a software adapter: run it here all the same.
      "--compile-workers",
      "1",
    ],
    cwd: root,
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  const text = decode(out.stdout) + decode(out.stderr);
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

      const spec = await loadProblem(`${root}problems/tiny.yaml`);
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

      // The dispatcher on the tuned cache.
      const gpu = await openGpu();
      const random = seededRandom(11);
      const b = spec.batched!;
      const kb = spec.segments.find((s) => s.name === b.inputs[0])!.n;
      const weights = {
        fused: randomNonZero(fusedWidth(spec) * spec.k, random),
        batched: randomNonZero(b.inputs.length * b.n * kb, random),
      };
      const proj = await createProjection(gpu.device, spec, {
        weights,
        cache: new URL(`file://${cachePath}`),
      });
      try {
        const expectedBucket: Record<number, number> = { 1: 1, 2: 3, 3: 3, 16: 16, 40: 16 };
        for (const [m, bucket] of Object.entries(expectedBucket)) {
          const config = proj.config(Number(m));
          assert.equal(config.source, "tuned", `m=${m}`);
          assert.equal(config.bucket, bucket, `m=${m} uses bucket ${bucket}`);
          assert.equal(config.fused, entry.buckets[String(bucket)].fused.config);
          assert.equal(config.batched, entry.buckets[String(bucket)].batched!.config);
          const x = randomNonZero(Number(m) * spec.k, random);
          const out = await proj.run(x, Number(m));
          checkAgainstReference(spec, weights, x, Number(m), out);
        }
      } finally {
        proj.destroy();
        gpu.device.destroy();
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

/** |y - ref| <= 1e-4 (sum |x w| + 1e-3) for every row and column of every output. */
function checkAgainstReference(
  spec: Awaited<ReturnType<typeof loadProblem>>,
  weights: { fused: Float32Array; batched: Float32Array },
  x: Float32Array,
  m: number,
  out: Record<string, Float32Array>,
) {
  const rows = Array.from({ length: m }, (_, i) => i);
  const width = fusedWidth(spec);
  const fused = referenceRows(fusedShape(spec), x, Float64Array.from(weights.fused), rows);
  const offsets = segmentOffsets(spec);
  const b = spec.batched!;
  // The batched stage referenced from the reference fused rows.
  const batchedShape: GemmShape = {
    k: spec.segments.find((s) => s.name === b.inputs[0])!.n,
    n: b.n,
    xOffsets: b.inputs.map((name) => offsets.get(name)!),
    xRowStride: width,
    wOffset: 0,
    yOffsets: b.outputs.map((_, i) => i * b.n),
    yRowStride: b.outputs.length * b.n,
  };
  const batched = referenceRows(
    batchedShape,
    fused.values,
    Float64Array.from(weights.batched),
    rows,
  );
  const check = (name: string, got: number, want: number, mag: number, r: number, c: number) => {
    if (!(Math.abs(got - want) <= 1e-4 * (mag + 1e-3))) {
      assert.fail(`m=${m} ${name}[${r}, ${c}] = ${got}, expected ${want}`);
    }
  };
  for (const r of rows) {
    for (const s of spec.segments) {
      for (let c = 0; c < s.n; c++) {
        const j = r * width + offsets.get(s.name)! + c;
        check(s.name, out[s.name][r * s.n + c], fused.values[j], fused.magnitudes[j], r, c);
      }
    }
    b.outputs.forEach((name, i) => {
      for (let c = 0; c < b.n; c++) {
        const j = (r * b.outputs.length + i) * b.n + c;
        check(name, out[name][r * b.n + c], batched.values[j], batched.magnitudes[j], r, c);
      }
    });
  }
}
