/**
 * One stage of a trial log as a table: a row per config, a column per bucket, the median time in
 * microseconds ("-" where the config was not timed there), and a last row with each bucket's best.
 * For exhaustive runs of a small space (bench/spaces/), where every config meets every bucket.
 *
 *   deno run --allow-read bench/log_table.ts <log.jsonl> [fused|batched]
 *
 * @module
 */
import { isTimed, readTrials, type Trial } from "../tuner/trial_log.ts";

/**
 * The table's lines: a header, a line per config (sorted by name), then "best".
 *
 * @example
 * ```ts
 * import { stageTable } from "./log_table.ts";
 * const t = (config: string, bucket: number, medianUs: number) => ({ generator: 2,
 *   target: "fused", bucket, config, outcome: "ok" as const, medianUs, at: "" });
 * const lines = stageTable([t("outer-a", 64, 10), t("outer-b", 64, 8), t("outer-b", 128, 12)], "fused");
 * if (lines.length !== 4 || !lines[1].startsWith("outer-a") || !lines[1].endsWith("-")) {
 *   throw new Error(lines.join("\n"));
 * }
 * if (!lines[3].includes("8.0") || !lines[3].includes("12.0")) throw new Error(lines[3]);
 * ```
 */
export function stageTable(trials: readonly Trial[], stage: string): string[] {
  const times = new Map<string, Map<number, number>>();
  for (const t of trials.filter(isTimed)) {
    if (t.target !== stage) continue;
    if (!times.has(t.config)) times.set(t.config, new Map());
    times.get(t.config)!.set(t.bucket, t.medianUs);
  }
  const buckets = [...new Set([...times.values()].flatMap((m) => [...m.keys()]))]
    .toSorted((a, b) => a - b);
  const width = Math.max(6, ...[...times.keys()].map((c) => c.length));
  const row = (name: string, cells: string[]) =>
    name.padEnd(width) + cells.map((c) => c.padStart(9)).join("");
  const best = buckets.map((m) =>
    Math.min(...[...times.values()].map((t) => t.get(m) ?? Infinity))
  );
  return [
    row("config", buckets.map(String)),
    ...[...times.keys()].toSorted().map((c) =>
      row(c, buckets.map((m) => times.get(c)!.get(m)?.toFixed(1) ?? "-"))
    ),
    row("best", best.map((us) => us.toFixed(1))),
  ];
}

if (import.meta.main) {
  const [path, stage = "fused"] = Deno.args;
  if (!path) {
    console.error("usage: deno run --allow-read bench/log_table.ts <log.jsonl> [fused|batched]");
    Deno.exit(2);
  }
  console.log(stageTable(await readTrials(path), stage).join("\n"));
}
