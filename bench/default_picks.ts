/**
 * Which config to make the default per bucket and stage (`kernels/defaults.ts`), from trial
 * logs: among the configs valid under WebGPU's default limits (`PORTABLE_CAPS`, no subgroups)
 * for each log's problem and weight type, the one with the best geometric mean of its time over
 * the best such config's, across the logs that timed it (at least half of them). f32 logs,
 * 16-bit logs and precision "fast" logs (f16 weights, f16 math) are ranked apart, since 16-bit
 * weights can load 16 bytes (`v8`) and f16 math needs the device's shader-f16 feature (which
 * the "fast" group's configs are then checked with).
 *
 *   deno run --allow-read --allow-env bench/default_picks.ts cache/logs/<gpu>/<problem>-<dtype>-<hash>.jsonl ...
 *
 * A log's problem, weight type and precision come from its name
 * (`<problem>-<dtype>[-fast]-<hash>.jsonl`).
 *
 * @module
 */
import { configProblem, parseConfigName } from "../kernels/config.ts";
import { PORTABLE_CAPS } from "../kernels/device.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { batchedShape, fusedShape, type GemmShape } from "../kernels/problem.ts";
import { findProblem } from "../tuner/problems.ts";
import { isTimed, readTrials } from "../tuner/trial_log.ts";

/** A log's timings of portable configs: "stage m" -> config -> microseconds. */
type Timings = Map<string, Map<string, number>>;

/** A ranked candidate. */
export interface Ranked {
  config: string;
  /** Geometric mean of time / the log's best portable time. */
  geomean: number;
  /** Logs that timed it. */
  logs: number;
}

/**
 * Ranks the configs of one stage and bucket over several logs' timings, best first.
 *
 * @example
 * ```ts
 * import { rankAcross } from "./default_picks.ts";
 * const log = (a: number, b: number) => new Map([["fused 64", new Map([["a", a], ["b", b]])]]);
 * const [first] = rankAcross([log(10, 11), log(10, 9), log(10, 12)], "fused 64");
 * if (first.config !== "a" || first.logs !== 3) throw new Error(JSON.stringify(first));
 * ```
 */
export function rankAcross(logs: readonly Timings[], at: string): Ranked[] {
  const ratios = new Map<string, number[]>();
  for (const log of logs) {
    const times = log.get(at);
    if (!times || times.size === 0) continue;
    const best = Math.min(...times.values());
    for (const [config, us] of times) ratios.set(config, [...ratios.get(config) ?? [], us / best]);
  }
  const present = logs.filter((l) => l.has(at)).length;
  return [...ratios]
    .filter(([, r]) => r.length >= Math.max(Math.min(2, present), Math.ceil(present / 2)))
    .map(([config, r]) => ({
      config,
      geomean: Math.exp(r.reduce((s, x) => s + Math.log(x), 0) / r.length),
      logs: r.length,
    }))
    .sort((a, b) => a.geomean - b.geomean);
}

/** Which defaults a log informs: f32 weights, 16-bit weights, or f16 weights with f16 math. */
export type PickGroup = "f32" | "16-bit" | "fast";

/**
 * A log's group, problem and weight type, from its name.
 *
 * @throws {TypeError} If the name is not `<problem>-<dtype>[-fast]-<hash>.jsonl[.gz]`.
 * @example
 * ```ts
 * import { logGroup } from "./default_picks.ts";
 * const fast = logGroup("cache/logs/gpu/kimi-linear-tp4-f16-fast-888716c6.jsonl");
 * if (fast.group !== "fast" || fast.problem !== "kimi-linear-tp4") throw new Error(fast.group);
 * if (logGroup("x/kimi-linear-tp8-bf16-66f2358e.jsonl.gz").group !== "16-bit") throw new Error();
 * ```
 */
export function logGroup(path: string): { group: PickGroup; problem: string; dtype: WeightDtype } {
  const match = /([^/]+)-(f32|f16|bf16)(-fast)?-[0-9a-f]{8}\.jsonl(\.gz)?$/.exec(path);
  if (!match || (match[3] && match[2] !== "f16")) {
    throw new TypeError(
      `Expected a log named <problem>-<f32|f16|bf16>-<hash>.jsonl or <problem>-f16-fast-<hash>.jsonl, got "${path}"`,
    );
  }
  const dtype = match[2] as WeightDtype;
  const group = match[3] ? "fast" : dtype === "f32" ? "f32" : "16-bit";
  return { group, problem: match[1], dtype };
}

/** A log's timings of the configs valid under WebGPU's default limits for its shapes. */
async function portableTimings(
  path: string,
): Promise<{ group: PickGroup; timings: Timings }> {
  const { group, problem, dtype } = logGroup(path);
  // f16 math needs shader-f16, a feature rather than a limit: the "fast" defaults assume it.
  const caps = group === "fast" ? { ...PORTABLE_CAPS, shaderF16: true } : PORTABLE_CAPS;
  const spec = await findProblem(problem);
  const shapes: Record<string, GemmShape | undefined> = {
    fused: fusedShape(spec),
    batched: batchedShape(spec),
  };
  const timings: Timings = new Map();
  for (const t of (await readTrials(path)).filter(isTimed)) {
    const shape = shapes[t.target];
    if (!shape) continue;
    if (configProblem(parseConfigName(t.config), shape, dtype, caps)) continue;
    const at = `${t.target} ${t.bucket}`;
    if (!timings.has(at)) timings.set(at, new Map());
    timings.get(at)!.set(t.config, t.medianUs);
  }
  return { group, timings };
}

if (import.meta.main) {
  if (Deno.args.length === 0) {
    console.error(
      "usage: deno run --allow-read --allow-env bench/default_picks.ts <log.jsonl> ...",
    );
    Deno.exit(2);
  }
  const logs = await Promise.all(Deno.args.map(portableTimings));
  for (const group of ["f32", "16-bit", "fast"] as const) {
    const of = logs.filter((l) => l.group === group).map((l) => l.timings);
    const places = [...new Set(of.flatMap((l) => [...l.keys()]))].sort((a, b) =>
      a.split(" ")[0].localeCompare(b.split(" ")[0]) ||
      Number(a.split(" ")[1]) - Number(b.split(" ")[1])
    );
    for (const at of places) {
      const top = rankAcross(of, at).slice(0, 3)
        .map((r) => `${r.config} ${r.geomean.toFixed(3)} (${r.logs})`);
      console.log(`${group.padEnd(6)} ${at.padEnd(14)} ${top.join("  ")}`);
    }
  }
}
