/**
 * How the same configs' times changed between two trial logs (say, before and after a kernel
 * generator change): for every config timed in both at the same stage and bucket, new / old,
 * grouped by family (`outer-h` for `outer` with f16 math), stage and bucket, with the median,
 * lowest and highest ratio; and each stage and bucket's best time in both. Configs whose code did
 * not change are the control: their ratios show the run-to-run spread.
 *
 *   deno run --allow-read bench/log_ratios.ts <old.jsonl> <new.jsonl>
 *
 * @module
 */
import { isTimed, readTrials, type Trial } from "../tuner/trial_log.ts";

/** One group's ratios, new / old. */
export interface RatioGroup {
  /** "family stage m", e.g. "outer fused 8192". */
  group: string;
  count: number;
  median: number;
  min: number;
  max: number;
}

/** The family of a config name as the groups name it: `outer-h` for outer with f16 math. */
function familyOf(config: string): string {
  const family = config.split("-")[0];
  return family === "outer" && config.split("-").includes("h") ? "outer-h" : family;
}

/** Timed trials by "stage m config". */
function timed(trials: readonly Trial[]): Map<string, number> {
  const times = new Map<string, number>();
  for (const t of trials.filter(isTimed)) {
    times.set(`${t.target} ${t.bucket} ${t.config}`, t.medianUs);
  }
  return times;
}

/**
 * Ratios new / old of the configs timed in both logs, grouped by family, stage and bucket.
 *
 * @example
 * ```ts
 * import { ratioGroups } from "./log_ratios.ts";
 * const t = (config: string, medianUs: number) => ({ generator: 1, target: "fused", bucket: 64,
 *   config, outcome: "ok" as const, medianUs, at: "" });
 * const [g] = ratioGroups([t("outer-a", 10), t("outer-b", 20)], [t("outer-a", 9), t("outer-b", 19)]);
 * if (g.group !== "outer fused 64" || g.count !== 2 || g.min !== 0.9) throw new Error(String(g));
 * ```
 */
export function ratioGroups(old: readonly Trial[], fresh: readonly Trial[]): RatioGroup[] {
  const before = timed(old);
  const groups = new Map<string, number[]>();
  for (const [key, us] of timed(fresh)) {
    const was = before.get(key);
    if (was === undefined) continue;
    const [stage, m, config] = key.split(" ");
    const group = `${familyOf(config)} ${stage} ${m}`;
    groups.set(group, [...groups.get(group) ?? [], us / was]);
  }
  return [...groups].map(([group, ratios]) => ({ group, ...spread(ratios) }));
}

/**
 * How many ratios there are, their median, lowest and highest.
 *
 * @example
 * ```ts
 * import { spread } from "./log_ratios.ts";
 * const s = spread([1.2, 0.9, 1.0, 1.1]);
 * if (s.count !== 4 || s.median !== 1.05 || s.min !== 0.9 || s.max !== 1.2) throw new Error();
 * ```
 */
export function spread(ratios: readonly number[]): Omit<RatioGroup, "group"> {
  const sorted = ratios.toSorted((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { count: sorted.length, median, min: sorted[0], max: sorted.at(-1)! };
}

/** Each "stage m"'s best time in a log. */
export function bestTimes(trials: readonly Trial[]): Map<string, number> {
  const best = new Map<string, number>();
  for (const [key, us] of timed(trials)) {
    const at = key.split(" ").slice(0, 2).join(" ");
    best.set(at, Math.min(us, best.get(at) ?? Infinity));
  }
  return best;
}

if (import.meta.main) {
  const [oldPath, newPath] = Deno.args;
  if (!oldPath || !newPath) {
    console.error("usage: deno run --allow-read bench/log_ratios.ts <old.jsonl> <new.jsonl>");
    Deno.exit(2);
  }
  const [old, fresh] = [await readTrials(oldPath), await readTrials(newPath)];
  console.log("family stage m        configs  median    min    max   (new / old)");
  for (const g of ratioGroups(old, fresh)) {
    const f = (x: number) => x.toFixed(3).padStart(6);
    console.log(
      `${g.group.padEnd(24)} ${String(g.count).padStart(5)}  ${f(g.median)} ${f(g.min)} ${
        f(g.max)
      }`,
    );
  }
  const before = bestTimes(old);
  console.log("\nstage m                 best old us  best new us  new / old");
  for (const [at, us] of bestTimes(fresh)) {
    const was = before.get(at);
    if (was === undefined) continue;
    console.log(
      `${at.padEnd(24)} ${was.toFixed(1).padStart(11)}  ${us.toFixed(1).padStart(11)}  ${
        (us / was).toFixed(3).padStart(9)
      }`,
    );
  }
}
