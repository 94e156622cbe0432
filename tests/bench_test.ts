/**
 * `deno task bench` on the CPU adapter, end to end on the tiny problem: every column of every
 * bucket is timed (the tuned projection, the defaults, unfused, the fused stage and the best
 * single pair, all in shared submits), and the JSON and chart are written. The times themselves
 * mean nothing there. A bucket whose tuning has no unfused baseline has no unfused time: in
 * mode "unfused" it runs fused, which is not the unfused projection.
 */
import assert from "node:assert/strict";
import type { Row } from "../bench/row.ts";
import type { CacheEntry } from "../cache/schema.ts";
import { filesUnder, ROOT, runScript, withTempDir } from "./helpers.ts";

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
    const json = files.find((f) => f.endsWith("-tiny.json"));
    assert.ok(json, files.join(", "));
    assert.ok(files.some((f) => f.endsWith("-tiny.svg")), files.join(", "));
    const { rows } = JSON.parse(await Deno.readTextFile(`${dir}/${json}`)) as { rows: Row[] };
    assert.deepEqual(rows.map((r) => `${r.dtype} ${r.m}`), ["f32 1", "f32 4", "f16 1", "f16 4"]);
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
