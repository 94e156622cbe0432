/**
 * The results table printed at the end of a tuning run.
 *
 * @module
 */
import { sameStages } from "../cache/merge.ts";
import type { BucketResult, CacheEntry, StageResult } from "../cache/schema.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { projectionFlops } from "../kernels/problem.ts";
import { NOISY_SPREAD_PCT } from "./timing.ts";

/** Pads cells into aligned columns. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** A stage's time, with "~" after it when the timing was too noisy to trust. */
export function formatStageUs(stage: StageResult): string {
  return stage.medianUs.toFixed(1) + (stage.noisy ? "~" : "");
}

/**
 * One row per bucket: winners, their times, the unfused baseline and what fusion buys. A
 * winner whose timing stayed too noisy to trust is marked with "~" after its time.
 */
export function formatResults(spec: ProjectionSpec, dtype: WeightDtype, entry: CacheEntry): string {
  const buckets = Object.entries(entry.buckets).sort(([a], [b]) => Number(a) - Number(b));
  const noisy = buckets.some(([, r]) => r.fused.noisy || r.batched?.noisy);
  const rows = buckets
    .map(([m, r]) => [
      m,
      r.fused.config,
      formatStageUs(r.fused),
      r.batched?.config ?? "-",
      r.batched ? formatStageUs(r.batched) : "-",
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
  ) +
    (noisy
      ? `\n~ noisy: the timing's spread stayed over ${NOISY_SPREAD_PCT}% when measured again`
      : "");
}

/**
 * One line per bucket where the run timed the cache's stored pair beside its own winners, whole,
 * in one batch: which pair stays, at the batch's time.
 *
 * @param entry The run's entry.
 * @param judged The stored buckets timed against, by bucket (`TuneResult.judged`).
 * @example
 * ```ts
 * import { formatJudged } from "./report.ts";
 * const stage = (config: string) => ({ config, medianUs: 9, runnerUp: null, runnerUpMarginPct: null, trials: 1 });
 * const pair = (fused: string, us: number) => ({ fused: stage(fused), batched: null, fusedTotalUs: us, unfused: null });
 * const entry = { problem: { k: 8, segments: [], batched: null, dtype: "f32" as const }, generatorVersion: 2, tunedAt: "", buckets: { "8": pair("gemv-nc4-cn1-l32-rm1-v4", 9.5) } };
 * const lines = formatJudged(entry, { "8": pair("gemv-nc4-cn1-l32-rm1-v4", 9.1) });
 * if (!lines[0].startsWith("m=8: the cache's pair stays")) throw new Error(lines[0]);
 * ```
 */
export function formatJudged(entry: CacheEntry, judged: Record<string, BucketResult>): string[] {
  return Object.entries(judged).map(([m, stored]) => {
    const got = entry.buckets[m];
    const who = sameStages(got, stored)
      ? "the cache's pair stays"
      : "this run's pair replaces the cache's";
    return `m=${m}: ${who}, faster whole in one batch (${got.fusedTotalUs} us)`;
  });
}
