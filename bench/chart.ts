/**
 * The benchmark chart: time per projection against m, log-log, one panel per weight type and
 * one line per variant, rendered to SVG with vega-lite.
 *
 *   deno run -A bench/chart.ts bench/results/<gpu>-<problem>.json   # writes the .svg beside it
 *
 * @module
 */
// Pinned here rather than in deno.json: deno installs every import-map package at start-up,
// and the GPU machine's carried cache has no room for these; only this file needs them.
// deno-lint-ignore-file no-import-prefix
import * as vega from "npm:vega@6.4.0";
import * as vl from "npm:vega-lite@6.5.0";
import type { Row } from "./row.ts";

/** Renders rows of a bench run as an SVG chart. */
export async function renderChart(all: Row[], title: string): Promise<string> {
  const series: [string, (r: Row) => number | null | undefined][] = [
    ["tuned", (r) => r.tunedUs],
    ["default configs", (r) => r.defaultUs],
    ["best single config", (r) => r.bestSingleUs],
    ["unfused (8 GEMMs)", (r) => r.unfusedUs],
    ["PyTorch (cuBLAS)", (r) => r.torchAfterUs],
    ["floor", (r) => r.floorUs],
  ];
  const values = all.flatMap((r) =>
    series.map(([variant, f]) => ({ dtype: r.dtype, m: r.m, us: f(r), variant }))
      .filter((v) => v.us && Number.isFinite(v.us))
  );
  const lite = vl.compile({
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: `${title}: time per projection`,
    data: { values },
    facet: { column: { field: "dtype", title: "weights" } },
    spec: {
      width: 260,
      height: 220,
      mark: { type: "line", point: true },
      encoding: {
        x: { field: "m", type: "quantitative", scale: { type: "log", base: 2 }, title: "m (rows)" },
        y: { field: "us", type: "quantitative", scale: { type: "log" }, title: "microseconds" },
        color: { field: "variant", type: "nominal" },
      },
    },
  } as vl.TopLevelSpec);
  return await new vega.View(vega.parse(lite.spec), { renderer: "none" }).toSVG();
}

if (import.meta.main) {
  const file = Deno.args[0];
  if (!file) {
    console.error("usage: deno run -A bench/chart.ts <bench results .json>");
    Deno.exit(2);
  }
  const { meta, rows } = JSON.parse(await Deno.readTextFile(file));
  const out = file.replace(/\.json$/, ".svg");
  await Deno.writeTextFile(
    out,
    await renderChart(rows, `${meta.problem} on ${meta.gpu.description}`),
  );
  console.log(`wrote ${out}`);
}
