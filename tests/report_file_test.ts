/**
 * The bench's report file: a run over some weight types keeps the earlier rows of the others
 * (same problem, same GPU), with the date they were measured; a file that is not a report is a
 * clear error, not a silent overwrite.
 */
import assert from "node:assert/strict";
import { mergeReports, readReport, type Report } from "../bench/report_file.ts";
import type { Row } from "../bench/row.ts";
import { withTempDir } from "./helpers.ts";

/** A report of `dtypes`, two buckets each, measured on `date`. */
function report(
  date: string,
  dtypes: string[],
  { problem = "kimi-linear-tp4", gpu = "NVIDIA H100 80GB HBM3", tunedUs = 10 } = {},
): Report {
  return {
    meta: { problem, gpu: { description: gpu }, date },
    summaries: dtypes.map((d) => `${d}: tuned vs defaults 1.0${dtypes.indexOf(d)}x`),
    rows: dtypes.flatMap((dtype) => [1, 16].map((m) => ({ dtype, m, tunedUs }) as Row)),
  };
}

Deno.test("a run keeps the earlier rows and summaries of the weight types it did not time", () => {
  const earlier = report("2026-12-05T18:00:00Z", ["f32", "f16", "bf16"], { tunedUs: 20 });
  const next = report("2026-12-06T08:00:00Z", ["f32", "f16-fast"]);
  const merged = mergeReports(earlier, next);
  assert.deepEqual(
    merged.rows.map((r) => `${r.dtype} ${r.m} ${r.tunedUs}`),
    [
      "f32 1 10",
      "f32 16 10",
      "f16-fast 1 10",
      "f16-fast 16 10",
      "f16 1 20",
      "f16 16 20",
      "bf16 1 20",
      "bf16 16 20",
    ],
  );
  assert.deepEqual(merged.meta.kept, [
    { dtype: "f16", date: "2026-12-05T18:00:00Z" },
    { dtype: "bf16", date: "2026-12-05T18:00:00Z" },
  ]);
  assert.deepEqual(merged.summaries.map((s) => s.split(":")[0]), [
    "f32",
    "f16-fast",
    "f16",
    "bf16",
  ]);
  assert.equal(merged.meta.date, "2026-12-06T08:00:00Z");
});

Deno.test("rows kept twice keep the date they were measured on", () => {
  const first = report("2026-12-04T00:00:00Z", ["bf16"]);
  const second = mergeReports(first, report("2026-12-05T00:00:00Z", ["f32"]));
  const third = mergeReports(second, report("2026-12-06T00:00:00Z", ["f16"]));
  assert.deepEqual(third.meta.kept, [
    { dtype: "f32", date: "2026-12-05T00:00:00Z" },
    { dtype: "bf16", date: "2026-12-04T00:00:00Z" },
  ]);
});

Deno.test("nothing is kept from another problem, another GPU or a run of the same types", () => {
  const next = report("2026-12-06T00:00:00Z", ["f32"]);
  for (
    const earlier of [
      undefined,
      report("2026-12-05T00:00:00Z", ["bf16"], { problem: "kimi-linear-tp1" }),
      report("2026-12-05T00:00:00Z", ["bf16"], { gpu: "NVIDIA H200" }),
      report("2026-12-05T00:00:00Z", ["f32"], { tunedUs: 99 }),
    ]
  ) {
    assert.equal(mergeReports(earlier, next), next);
  }
});

Deno.test("readReport reads a report, returns undefined for none and names a bad file", async () => {
  await withTempDir("report", async (dir) => {
    assert.equal(await readReport(`${dir}/none.json`), undefined);
    const good = report("2026-12-06T00:00:00Z", ["f32"]);
    await Deno.writeTextFile(`${dir}/good.json`, JSON.stringify(good));
    assert.deepEqual(await readReport(`${dir}/good.json`), good);
    await Deno.writeTextFile(`${dir}/rows.json`, JSON.stringify({ meta: good.meta, rows: [] }));
    await assert.rejects(readReport(`${dir}/rows.json`), {
      name: "TypeError",
      message: `Expected ${dir}/rows.json to be a bench report with meta.problem, meta.date, ` +
        "summaries and rows: summaries missing or malformed",
    });
    await Deno.writeTextFile(`${dir}/empty.json`, JSON.stringify({ meta: { problem: "p" } }));
    await assert.rejects(readReport(`${dir}/empty.json`), {
      name: "TypeError",
      message: `Expected ${dir}/empty.json to be a bench report with meta.problem, meta.date, ` +
        "summaries and rows: meta.date, summaries, rows missing or malformed",
    });
    await Deno.writeTextFile(`${dir}/text.json`, "not json");
    await assert.rejects(readReport(`${dir}/text.json`), (e: Error) => {
      assert.equal(e.name, "TypeError");
      assert.match(
        e.message,
        new RegExp(`^Expected ${dir}/text\\.json to be a bench report in JSON`),
      );
      return true;
    });
  });
});
