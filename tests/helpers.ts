/**
 * Shared test helpers (not a test file itself).
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import type { AdapterFingerprint, StageResult } from "../cache/schema.ts";
import type { DeviceCaps, GemvConfig, TileConfig } from "../kernels/config.ts";
import { PORTABLE_CAPS } from "../kernels/device.ts";
import { DEFAULT_SPACE, enumerateSpace } from "../kernels/space.ts";
import type { SearchSpace } from "../kernels/space.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import type { Gpu } from "../tuner/gpu_device.ts";
import { openGpu } from "../tuner/gpu_device.ts";
import { exhaustive } from "../tuner/strategies.ts";
import type { TrialLog } from "../tuner/trial_log.ts";
import type { TuneOptions } from "../tuner/tune.ts";

/** Runs `fn` with a fresh temporary directory, removed afterwards. */
export async function withTempDir(prefix: string, fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A cache stage of one config, timed once at `medianUs` (1 us unless given), no runner-up. */
export function stageOf(config: string, medianUs = 1): StageResult {
  return { config, medianUs, runnerUp: null, runnerUpMarginPct: null, trials: 1 };
}

/**
 * A gemv config: the first of the default space (so knobs added later get a value), with
 * nc 4, lanes 16, rm 1, vec 4 and no subgroups, then `overrides`.
 */
export function gemvConfig(overrides: Partial<GemvConfig> = {}): GemvConfig {
  const first = enumerateSpace({ gemv: DEFAULT_SPACE.gemv }).find((c) => c.family === "gemv");
  return {
    ...(first as GemvConfig),
    nc: 4,
    lanes: 16,
    rm: 1,
    vec: 4,
    subgroup: false,
    ...overrides,
  };
}

/** A tile config: bm 32, bn 32, bk 8, rm 4, rn 4, vec 4, then `overrides`. */
export function tileConfig(overrides: Partial<TileConfig> = {}): TileConfig {
  return { family: "tile", bm: 32, bn: 32, bk: 8, rm: 4, rn: 4, vec: 4, ...overrides };
}

/** The repository root, as a path ending in "/". */
export const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** What a CLI run printed and its exit code. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `deno run -A tuner/cli.ts ...args` from the repository root and waits for it. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return runScript("tuner/cli.ts", args, { env });
}

/**
 * Runs `deno run <permissions> <script> ...args` from the repository root and waits for it.
 *
 * @param options `permissions` default to `-A`; `env` is added to the test's own; `stdin`, if
 * given, is written to the child's standard input (a script of `-` is read from there).
 */
export async function runScript(
  script: string,
  args: string[],
  { env = {}, permissions = ["-A"], stdin }: {
    env?: Record<string, string>;
    permissions?: string[];
    stdin?: string;
  } = {},
): Promise<CliRun> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, script, ...args],
    cwd: ROOT,
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1", ...env },
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await child.output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/**
 * This machine's adapter fingerprint, read in a child process: the tests under tests/spawn/ run
 * in a process of their own that stays off WebGPU (see the README's "Tests and CI").
 */
export async function childAdapterFingerprint(): Promise<AdapterFingerprint> {
  const schema = new URL("../cache/schema.ts", import.meta.url).href;
  const run = await runScript("-", [], {
    stdin: `import { adapterFingerprint } from "${schema}";
const adapter = await navigator.gpu.requestAdapter();
if (!adapter) throw new Error("no WebGPU adapter");
console.log(JSON.stringify(adapterFingerprint(adapter.info)));
`,
  });
  if (run.code !== 0) throw new Error(`reading the adapter failed: ${run.stderr}`);
  return JSON.parse(run.stdout);
}

/** Every file under a folder, by path relative to it ("" for a missing folder). */
export function filesUnder(dir: string, prefix = ""): string[] {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return entries.flatMap((e) =>
    e.isDirectory ? filesUnder(`${dir}/${e.name}`, `${prefix}${e.name}/`) : [`${prefix}${e.name}`]
  );
}

/** WebGPU's default limits, without subgroups. */
export const CAPS: DeviceCaps = { ...PORTABLE_CAPS };

/**
 * Replaces every console method that prints with one that records its call, until `restore()`:
 * to check that library code prints nothing.
 */
export function quietConsole(): { calls: string[]; restore(): void } {
  const methods = ["log", "info", "warn", "error", "debug"] as const;
  const saved = methods.map((m) => console[m]);
  const calls: string[] = [];
  for (const m of methods) {
    console[m] = (...args: unknown[]) => calls.push(`${m}: ${args.join(" ")}`);
  }
  return { calls, restore: () => methods.forEach((m, i) => (console[m] = saved[i])) };
}

/**
 * A tuner GPU (`openGpu`) that a test module's tests share, destroyed when the module unloads,
 * so that no device outlives its module (the per-test resource sanitizers do not see one
 * opened at the module's top level).
 */
export async function moduleGpu(): Promise<Gpu> {
  const gpu = await openGpu();
  globalThis.addEventListener("unload", () => gpu.device.destroy(), { once: true });
  return gpu;
}

/**
 * `deno task tune` arguments for problems/tiny.yaml on the software GPU: three buckets, three
 * trials each, short timings, no output. The end-to-end tests add `--cache-dir` and their own.
 */
export const TINY_TUNE_ARGS: readonly string[] = [
  "--problem",
  "tiny",
  "--buckets",
  "1,3,16",
  "--max-trials",
  "3",
  "--seed",
  "7",
  "--warmup",
  "1",
  "--repeats",
  "3",
  "--quiet",
];

/** A tuner GPU (`openGpu`) and a temporary folder for the body; both are gone after it. */
export async function withGpuAndTempDir(
  prefix: string,
  fn: (gpu: Gpu, dir: string) => Promise<void>,
) {
  const gpu = await openGpu();
  try {
    await withTempDir(prefix, (dir) => fn(gpu, dir));
  } finally {
    gpu.device.destroy();
  }
}

/**
 * `tune()` options for a small problem on the software GPU: bucket 16, the exhaustive strategy
 * over `space`, up to 8 trials, short timings, no heater and no unfused baseline.
 */
export function tinyTuneOptions(
  gpu: Gpu,
  log: TrialLog,
  space: SearchSpace,
  spec: ProjectionSpec,
): TuneOptions {
  return {
    gpu,
    spec,
    dtype: "f32",
    buckets: [16],
    space,
    strategy: exhaustive,
    maxTrials: 8,
    maxSeconds: 600,
    seed: 5,
    log,
    timing: { warmup: 1, repeats: 3 },
    rotateBytes: 0,
    heat: false,
    unfused: false,
  };
}
