/**
 * `deno task bench` on the CPU adapter, end to end on the tiny problem: every column of every
 * bucket is timed (the tuned projection, the defaults, unfused, the fused stage and the best
 * single pair, all in shared submits), and the JSON and chart are written. The times themselves
 * mean nothing there. A bucket whose tuning has no unfused baseline has no unfused time: in
 * mode "unfused" it runs fused, which is not the unfused projection. A report already there, of
 * a weight type the run does not time, keeps its rows.
 */
import assert from "node:assert/strict";
import type { Report } from "../../bench/report_file.ts";
import type { Row } from "../../bench/row.ts";
import type { CacheEntry } from "../../cache/schema.ts";
import { cacheFileName } from "../../cache/schema.ts";
import { childAdapterFingerprint, filesUnder, ROOT, runScript, withTempDir } from "../helpers.ts";

Deno.test("the bench times every column of every bucket and writes its JSON and chart", async () => {
  await withTempDir("bench", async (dir) => {
    // The committed caches, with m = 4's unfused baseline taken out (a run cut short).
    await Deno.mkdir(`${dir}/cache`);
    for (const name of filesUnder(`${ROOT}cache`).filter((f) => /^[^/]+\.json$/.test(f))) {
      const file = JSON.parse(await Deno.readTextFile(`${ROOT}cache/${name}`));
      for (const entry of Object.values(file.entries) as CacheEntry[]) {
        if (entry.buckets["4"]) entry.buckets["4"].unfused = null;
      }
      await Deno.writeTextFile(`${dir}/cache/${name}`, JSON.stringify(file));
    }
    // An earlier report of bf16 rows on this adapter, where the run writes its own.
    const gpu = await childAdapterFingerprint();
    const earlier = `${dir}/${cacheFileName(gpu).replace(/\.json$/, "")}-tiny.json`;
    const bf16 = { dtype: "bf16", m: 1, tunedUs: 1, defaultUs: 1 } as Row;
    await Deno.writeTextFile(
      earlier,
      JSON.stringify({
        meta: { problem: "tiny", gpu, date: "2026-12-01T00:00:00.000Z" },
        summaries: ["bf16: earlier"],
        rows: [bf16],
      }),
    );
    const run = await runScript("bench/bench.ts", [
      "--cache-dir",
      `${dir}/cache`,
      "--problem",
      "tiny",
      "--dtype",
      "f32,f16",
      "--buckets",
      "1,4",
      "--repeats",
      "5",
      "--out",
      dir,
    ]);
    assert.equal(run.code, 0, run.stderr);
    const files = filesUnder(dir);
    assert.ok(files.some((f) => f.endsWith("-tiny.svg")), files.join(", "));
    const written = JSON.parse(await Deno.readTextFile(earlier)) as Report;
    assert.deepEqual(
      written.rows.map((r) => `${r.dtype} ${r.m}`),
      ["f32 1", "f32 4", "f16 1", "f16 4", "bf16 1"],
    );
    assert.deepEqual(written.meta.kept, [{ dtype: "bf16", date: "2026-12-01T00:00:00.000Z" }]);
    assert.deepEqual(written.summaries.map((s) => s.split(":")[0]), ["f32", "f16", "bf16"]);
    const rows = written.rows.filter((r) => r.dtype !== "bf16");
    // Finite, not positive: on a CPU adapter the chain link taken off (bench/chain.ts) is as
    // long and as noisy as a whole tiny projection.
    for (const r of rows) {
      const columns = [
        "tunedUs",
        "defaultUs",
        "unfusedUs",
        "fusedStageUs",
        "bestSingleUs",
      ] as const;
      for (const column of columns) {
        if (column === "unfusedUs" && r.m === 4) {
          assert.equal(r[column], null, `${r.dtype} m=4 has no unfused baseline`);
          continue;
        }
        assert.ok(Number.isFinite(r[column]), `${r.dtype} m=${r.m} ${column}: ${r[column]}`);
      }
    }
    assert.match(run.stdout, /tuned vs best single config/);
  });
});

Deno.test("a bad weight type stops the bench before it opens a GPU session", async () => {
  await withTempDir("bench", async (dir) => {
    const run = await runScript("bench/bench.ts", ["--dtype", "f32,q8", "--out", dir]);
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /--dtype q8: Expected a weight type \(f32, f16, bf16\), got "q8"/);
    assert.deepEqual(filesUnder(dir), []);
  });
});

Deno.test("the bench leaves out a bucket over the device's row limit, saying so", async () => {
  await withTempDir("bench_rows", async (dir) => {
    // 65536 outputs a row: 128 MiB of storage binding hold 512 rows of them.
    await Deno.writeTextFile(
      `${dir}/wide.yaml`,
      "name: wide\nk: 4\nsegments:\n  - { name: a, n: 65536 }\n",
    );
    await Deno.mkdir(`${dir}/cache`);
    const run = await runScript("bench/bench.ts", [
      "--cache-dir",
      `${dir}/cache`,
      "--problem",
      `${dir}/wide.yaml`,
      "--dtype",
      "f32",
      "--buckets",
      "1,100000",
      "--repeats",
      "3",
      "--out",
      dir,
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /f32: m = 100000 left out: over this device's \d+ rows/);
    const report = filesUnder(dir).find((f) => f.endsWith("-wide.json"));
    assert.ok(report, filesUnder(dir).join(", "));
    const written = JSON.parse(await Deno.readTextFile(`${dir}/${report}`)) as Report;
    assert.deepEqual(written.rows.map((r) => `${r.dtype} ${r.m}`), ["f32 1"]);
  });
});
