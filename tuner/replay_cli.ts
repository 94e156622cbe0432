/**
 * `deno task replay`: how well a strategy finds the best config, replayed from a recorded
 * (ideally exhaustive) trial log with no GPU.
 *
 *   deno task replay --log cache/logs/<gpu>/<problem>-<dtype>-exhaustive.jsonl.gz \
 *     --strategy guided --budget 15% --seeds 20
 *
 * Prints, per stage and bucket, the median and worst regret over seeds (found best / recorded
 * best - 1) and the evaluations used, then one summary line.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { Budget, ReplayResult } from "./replay.ts";
import { recordedBuckets, replay } from "./replay.ts";
import { STRATEGIES } from "./strategies.ts";
import { readTrials } from "./trial_log.ts";

const USAGE =
  "usage: deno task replay --log <file.jsonl> [--strategy guided] [--budget 15% | 30] [--seeds 20]";

/** Parses `--budget`: "15%" of each bucket's candidates, or a number of trials. */
export function parseBudget(text: string): Budget {
  const percent = /^(\d+(?:\.\d+)?)%$/.exec(text);
  if (percent && Number(percent[1]) > 0 && Number(percent[1]) <= 100) {
    return { fraction: Number(percent[1]) / 100 };
  }
  if (/^[1-9]\d*$/.test(text)) return { trials: Number(text) };
  throw new RangeError(`--budget must be a percentage (15%) or a trial count (30), got "${text}"`);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

/** The report: a line per stage and bucket, then the summary line. */
export function formatReplay(results: readonly ReplayResult[], seeds: number): string {
  const groups = new Map<string, ReplayResult[]>();
  for (const r of results) {
    const key = `${r.target} m=${r.bucket}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(r);
  }
  const lines = ["| stage | m | candidates | evaluations | regret median | regret worst |"];
  lines.push("|---|---|---|---|---|---|");
  const medians: number[] = [];
  for (const rs of groups.values()) {
    const m = median(rs.map((r) => r.regret));
    medians.push(m);
    lines.push(
      `| ${rs[0].target} | ${rs[0].bucket} | ${rs[0].candidates} | ${
        median(rs.map((r) => r.evaluations))
      } | ${pct(m)} | ${pct(Math.max(...rs.map((r) => r.regret)))} |`,
    );
  }
  const used = results.reduce((s, r) => s + r.evaluations, 0);
  const all = results.reduce((s, r) => s + r.candidates, 0);
  lines.push(
    `replay: worst regret ${pct(Math.max(...medians))} (median ${
      pct(median(results.map((r) => r.regret)))
    }) at ${pct(used / all)} of evaluations, ${groups.size} buckets, ${seeds} seeds`,
  );
  return lines.join("\n");
}

/** Thrown for a command line the replay cannot run: printed with the usage, exit code 2. */
class UsageError extends Error {}

/**
 * Runs the replay for a command line.
 *
 * @returns The report to print.
 * @throws {UsageError} For bad flags or values, naming them.
 */
export async function runReplay(args: string[]): Promise<string> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        log: { type: "string" },
        strategy: { type: "string", default: "guided" },
        budget: { type: "string", default: "15%" },
        seeds: { type: "string", default: "20" },
      },
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const strategy = STRATEGIES[values.strategy];
  if (!strategy) {
    const known = Object.keys(STRATEGIES).join(", ");
    throw new UsageError(`--strategy must be one of ${known}, got "${values.strategy}"`);
  }
  const seeds = Number(values.seeds);
  if (!Number.isInteger(seeds) || seeds < 1) {
    throw new UsageError(`--seeds must be a positive integer, got "${values.seeds}"`);
  }
  if (!values.log) throw new UsageError("--log is required");
  let budget: Budget;
  try {
    budget = parseBudget(values.budget);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  try {
    await Deno.stat(values.log);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UsageError(`no log at "${values.log}"`);
    throw e;
  }
  const recorded = recordedBuckets(await readTrials(values.log));
  if (recorded.length === 0) throw new UsageError(`"${values.log}" has no timed trials`);
  const results: ReplayResult[] = [];
  for (let seed = 1; seed <= seeds; seed++) {
    results.push(...await replay(strategy, recorded, budget, seed));
  }
  return formatReplay(results, seeds);
}

if (import.meta.main) {
  if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
    console.log(`${USAGE}\nstrategies: ${Object.keys(STRATEGIES).join(", ")}`);
    Deno.exit(0);
  }
  try {
    console.log(await runReplay(Deno.args));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`error: ${e.message}\n${USAGE}`);
    Deno.exit(2);
  }
}
