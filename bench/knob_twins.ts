/**
 * What one knob does, from one trial log: every timed config whose name holds the knob's part
 * (a regular expression, say `-xs\d+`) against its twin, the same name without that part (or with
 * `--twin`'s text in its place: `--knob=-l64 --twin=-l32`), timed at the same stage and bucket:
 * twin ratios (knob / twin) with their median, lowest and highest (`spread` of
 * bench/log_ratios.ts), grouped by stage and bucket, and optionally by another part of the names
 * (`--by nc` groups by `-nc<n>`). Below 1, the knob is faster.
 *
 *   deno run --allow-read bench/knob_twins.ts <log.jsonl>... --knob='-xs\d+' [--twin=<text>] [--by nc]
 *
 * (`--knob=` with the equals sign: the expression starts with a dash.)
 *
 * @module
 */
import { parseArgs } from "node:util";
import { isTimed, readTrials, type Trial } from "../tuner/trial_log.ts";
import { type RatioGroup, spread } from "./log_ratios.ts";

/**
 * The twin ratios of one group: "stage m", then the `--by` part's value where one is asked for
 * ("fused 16 nc4").
 */
export type TwinGroup = RatioGroup;

/**
 * Twin ratios of the configs whose names match `knob` (the twin's name has `twin` in its place),
 * grouped by stage, bucket and the value of the name part `by` (a knob name such as `nc`, read as
 * `-nc<value>`).
 *
 * @example
 * ```ts
 * import { twinGroups } from "./knob_twins.ts";
 * const t = (config: string, medianUs: number) => ({ generator: 2, target: "fused", bucket: 16,
 *   config, outcome: "ok" as const, medianUs, at: "" });
 * const trials = [t("gemv-nc2-rm4", 20), t("gemv-nc2-rm4-xs96", 18), t("gemv-nc4-rm4", 30),
 *   t("gemv-nc4-rm4-xs96", 33), t("gemv-nc4-rm8-xs96", 10)];
 * const [all] = twinGroups(trials, /-xs\d+/);
 * if (all.group !== "fused 16" || all.count !== 2 || all.min !== 0.9 || all.max !== 1.1) {
 *   throw new Error(JSON.stringify(all));
 * }
 * const byNc = twinGroups(trials, /-xs\d+/, "nc").map((g) => `${g.group} ${g.median}`);
 * if (byNc.join() !== "fused 16 nc2 0.9,fused 16 nc4 1.1") throw new Error(byNc.join());
 * const [rows] = twinGroups(trials, /-rm8/, undefined, "-rm4");
 * if (rows.count !== 1 || rows.median !== 10 / 33) throw new Error("rm 8 over its rm 4 twin");
 * ```
 */
export function twinGroups(
  trials: readonly Trial[],
  knob: RegExp,
  by?: string,
  twin = "",
): TwinGroup[] {
  const times = new Map<string, number>();
  for (const t of trials.filter(isTimed)) {
    const key = `${t.target} ${t.bucket} ${t.config}`;
    times.set(key, Math.min(t.medianUs, times.get(key) ?? Infinity));
  }
  const groups = new Map<string, number[]>();
  for (const [key, us] of times) {
    const [stage, m, config] = key.split(" ");
    if (!knob.test(config)) continue;
    const other = times.get(`${stage} ${m} ${config.replace(knob, twin)}`);
    if (other === undefined) continue;
    const part = by === undefined ? "" : ` ${by}${new RegExp(`-${by}(\\d+)`).exec(config)?.[1]}`;
    const group = `${stage} ${m}${part}`;
    groups.set(group, [...groups.get(group) ?? [], us / other]);
  }
  return [...groups].sort(([a], [b]) => a.localeCompare(b, "en", { numeric: true }))
    .map(([group, ratios]) => ({ group, ...spread(ratios) }));
}

if (import.meta.main) {
  const { values, positionals: logs } = parseArgs({
    args: Deno.args,
    options: { knob: { type: "string" }, twin: { type: "string" }, by: { type: "string" } },
    allowPositionals: true,
  });
  if (!values.knob || logs.length === 0) {
    console.error(
      "usage: deno run --allow-read bench/knob_twins.ts <log.jsonl>... --knob=<regex> [--twin=<text>] [--by <knob>]",
    );
    Deno.exit(2);
  }
  const trials = (await Promise.all(logs.map((log) => readTrials(log)))).flat();
  console.log("stage m [by]          pairs  median    min    max   (knob / twin)");
  const f = (x: number) => x.toFixed(3).padStart(6);
  for (const g of twinGroups(trials, new RegExp(values.knob), values.by, values.twin)) {
    console.log(
      `${g.group.padEnd(20)} ${String(g.count).padStart(5)}  ${f(g.median)} ${f(g.min)} ${
        f(g.max)
      }`,
    );
  }
}
