/**
 * The results table printed at the end of a tuning run.
 *
 * @module
 */
import type { CacheEntry } from "../cache/schema.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { projectionFlops } from "../kernels/problem.ts";

/** Pads cells into aligned columns. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** One row per bucket: winners, their times, the unfused baseline and what fusion buys. */
export function formatResults(spec: ProjectionSpec, dtype: WeightDtype, entry: CacheEntry): string {
  const rows = Object.entries(entry.buckets)
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([m, r]) => [
      m,
      r.fused.config,
      r.fused.medianUs.toFixed(1),
      r.batched?.config ?? "-",
      r.batched ? r.batched.medianUs.toFixed(1) : "-",
      r.fusedTotalUs.toFixed(1),
      ((projectionFlops(spec, Number(m)) / r.fusedTotalUs) / 1e6).toPrecision(3),
      r.unfused ? r.unfused.medianUs.toFixed(1) : "-",
      r.unfused ? (r.unfused.medianUs / r.fusedTotalUs).toFixed(2) + "x" : "-",
    ]);
  return `\n${spec.name} ${dtype}\n` + formatTable(
    [
      "m",
      "fused config",
      "us",
      "batched config",
      "us",
      "total us",
      "TFLOP/s",
      "unfused us",
      "fusion",
    ],
    rows,
  );
}
