/**
 * `deno task tune`: tunes a projection problem on this machine's GPU and stores the winners in
 * the GPU's cache file.
 *
 * @module
 */
import { parseArgs } from "node:util";
// @ts-types="npm:@types/cli-progress@3.11.6"
import cliProgress from "cli-progress";
import { adapterFingerprint, cacheFileName, problemKey } from "../cache/schema.ts";
import { saveCacheEntry } from "../cache/store.ts";
import { configName, configProblem, parseConfigName } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { WEIGHT_DTYPES } from "../kernels/dtype.ts";
import { kernelWgsl } from "../kernels/generate.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { batchedShape, fusedShape } from "../kernels/problem.ts";
import { DEFAULT_SPACE } from "../kernels/space.ts";
import { openGpu } from "./gpu_device.ts";
import { formatResults } from "./report.ts";
import { STRATEGIES } from "./strategy.ts";
import { TrialLog } from "./trial_log.ts";
import { tune } from "./tune.ts";
import { loadProblem, loadSpace } from "./yaml_file.ts";

const HELP = `Usage: deno task tune --problem <name|file.yaml> [options]

Tunes the fused projection GEMM (and its batched stage) for each m bucket on this machine's
GPU, checks every variant against a float64 reference before timing it, and writes the
winners to cache/<gpu>.json. Trials are logged as they finish; rerunning resumes.

Options:
  --problem <p>        problem name in problems/ (e.g. kimi-linear-tp4) or a YAML file
  --dtype <list>       weight storage types, comma-separated: f32, f16, bf16 (default f32)
  --buckets <list>     m buckets, comma-separated (default 1,2,4,...,16384)
  --strategy <s>       exhaustive | random (default random)
  --max-trials <n>     most configs timed per stage and bucket (default 40)
  --max-seconds <s>    stop starting trials after this long (default 900)
  --seed <n>           seed for data and random search (default: random, printed)
  --space <file>       search space YAML (default: the built-in space)
  --cache-dir <dir>    where cache files go (default cache)
  --log-dir <dir>      trial logs, one <problem>-<dtype>.jsonl each (default <cache-dir>/logs/<gpu>)
  --warmup <n>         untimed runs before timing each config (default 3)
  --repeats <n>        timed runs per config; the median is kept (default 20)
  --rotate-mb <n>      weight megabytes to rotate through, beyond the L2 (default 160)
  --no-heat            do not keep the GPU busy between timings (by default it is, except on a
                       software adapter, so that its clocks stay up: see tuner/heater.ts)
  --no-unfused         skip the unfused baseline
  --print-wgsl <name>  print the WGSL of one config (with --problem, --dtype, --stage) and exit
  --stage <s>          fused | batched, for --print-wgsl (default fused)
  --quiet              no progress bar
  -h, --help           show this help
`;

/** A command-line mistake: printed with the help hint, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parsed and checked command-line options. */
export interface CliOptions {
  problem: string;
  dtypes: WeightDtype[];
  buckets: number[];
  strategy: string;
  maxTrials: number;
  maxSeconds: number;
  seed: number;
  space?: string;
  cacheDir: string;
  logDir?: string;
  warmup: number;
  repeats: number;
  rotateMb: number;
  heat: boolean;
  unfused: boolean;
  printWgsl?: string;
  stage: "fused" | "batched";
  quiet: boolean;
  help: boolean;
}

/** The default buckets: powers of two from 1 to 16384. */
export const DEFAULT_BUCKETS = Array.from({ length: 15 }, (_, i) => 2 ** i);

function positiveInt(flag: string, value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1) {
    throw new UsageError(`--${flag} must be a positive integer, got "${value}"`);
  }
  return n;
}

/**
 * Parses the command line.
 *
 * @throws {UsageError} For an unknown flag or a bad value.
 */
export function parseCli(args: string[]): CliOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        problem: { type: "string" },
        dtype: { type: "string", default: "f32" },
        buckets: { type: "string" },
        strategy: { type: "string", default: "random" },
        "max-trials": { type: "string", default: "40" },
        "max-seconds": { type: "string", default: "900" },
        seed: { type: "string" },
        space: { type: "string" },
        "cache-dir": { type: "string", default: "cache" },
        "log-dir": { type: "string" },
        warmup: { type: "string", default: "3" },
        repeats: { type: "string", default: "20" },
        "rotate-mb": { type: "string", default: "160" },
        "no-heat": { type: "boolean", default: false },
        "no-unfused": { type: "boolean", default: false },
        "print-wgsl": { type: "string" },
        stage: { type: "string", default: "fused" },
        quiet: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) return { help: true } as CliOptions;
  if (!values.problem) throw new UsageError("--problem is required");
  const dtypes = values.dtype.split(",").map((d) => d.trim());
  for (const d of dtypes) {
    if (!WEIGHT_DTYPES.includes(d as WeightDtype)) {
      throw new UsageError(`--dtype "${d}" is not one of ${WEIGHT_DTYPES.join(", ")}`);
    }
  }
  const buckets = values.buckets === undefined
    ? DEFAULT_BUCKETS
    : values.buckets.split(",").map((b) => positiveInt("buckets", b));
  if (!(values.strategy in STRATEGIES)) {
    throw new UsageError(
      `--strategy "${values.strategy}" is not one of ${Object.keys(STRATEGIES).join(", ")}`,
    );
  }
  if (values.stage !== "fused" && values.stage !== "batched") {
    throw new UsageError(`--stage must be fused or batched, got "${values.stage}"`);
  }
  return {
    problem: values.problem,
    dtypes: dtypes as WeightDtype[],
    buckets,
    strategy: values.strategy,
    maxTrials: positiveInt("max-trials", values["max-trials"]),
    maxSeconds: positiveInt("max-seconds", values["max-seconds"]),
    seed: values.seed === undefined
      ? Math.floor(Math.random() * 2 ** 31)
      : positiveInt("seed", values.seed),
    space: values.space,
    cacheDir: values["cache-dir"],
    logDir: values["log-dir"],
    warmup: positiveInt("warmup", values.warmup),
    repeats: positiveInt("repeats", values.repeats),
    rotateMb: positiveInt("rotate-mb", values["rotate-mb"]),
    heat: !values["no-heat"],
    unfused: !values["no-unfused"],
    printWgsl: values["print-wgsl"],
    stage: values.stage,
    quiet: values.quiet,
    help: false,
  };
}

/** Resolves `--problem`: a YAML path, or a name of a file in `problems/`. */
export async function resolveProblem(problem: string): Promise<ProjectionSpec> {
  if (/\.ya?ml$/.test(problem)) return await loadProblem(problem);
  const file = new URL(`../problems/${problem}.yaml`, import.meta.url);
  try {
    await Deno.stat(file);
  } catch {
    const known = [...Deno.readDirSync(new URL("../problems/", import.meta.url))]
      .map((e) => e.name.replace(/\.ya?ml$/, ""))
      .sort();
    throw new UsageError(`--problem "${problem}" is not a file or one of: ${known.join(", ")}`);
  }
  return await loadProblem(file.pathname);
}

/** Whether an adapter is a CPU rasterizer, where a heater would only steal the tuner's CPU. */
function isSoftwareAdapter(adapter: GPUAdapter): boolean {
  return (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter === true ||
    /llvmpipe|lavapipe|swiftshader|warp/i.test(adapter.info.description);
}

async function main(args: string[]): Promise<number> {
  const options = parseCli(args);
  if (options.help) {
    console.log(HELP);
    return 0;
  }
  const spec = await resolveProblem(options.problem);
  const space = options.space ? await loadSpace(options.space) : DEFAULT_SPACE;
  const gpu = await openGpu();
  gpu.device.lost.then((info) => {
    if (info.reason !== "destroyed") {
      console.error(
        `\nThe GPU device was lost (${info.message}); trials so far are in the log: rerun to resume.`,
      );
      Deno.exit(3);
    }
  });

  if (options.printWgsl) {
    const config = parseConfigName(options.printWgsl);
    const shape = options.stage === "fused" ? fusedShape(spec) : batchedShape(spec);
    if (!shape) throw new UsageError(`problem "${spec.name}" has no batched stage`);
    const problem = configProblem(config, shape, options.dtypes[0], gpu.caps);
    if (problem) throw new UsageError(`config "${configName(config)}" is invalid here: ${problem}`);
    console.log(kernelWgsl(config, shape, options.dtypes[0]));
    return 0;
  }

  const fingerprint = adapterFingerprint(gpu.adapter.info);
  const cacheFile = `${options.cacheDir}/${cacheFileName(fingerprint)}`;
  console.error(`GPU: ${fingerprint.description || "(no description)"} -> ${cacheFile}`);
  console.error(
    `problem ${spec.name}, buckets ${
      options.buckets.join(",")
    }, strategy ${options.strategy}, seed ${options.seed}`,
  );
  for (const dtype of options.dtypes) {
    const gpuSlug = cacheFileName(fingerprint).replace(/\.json$/, "");
    const logDir = options.logDir ?? `${options.cacheDir}/logs/${gpuSlug}`;
    const logPath = `${logDir}/${spec.name}-${dtype}.jsonl`;
    const log = await TrialLog.open(logPath);
    const bar = options.quiet ? undefined : new cliProgress.SingleBar({
      format:
        `${dtype} [{bar}] {value}/{total} trials | ETA {eta_formatted} | m={bucket} {target} {config}`,
      hideCursor: true,
    }, cliProgress.Presets.shades_classic);
    bar?.start(1, 0, { bucket: "", target: "", config: "" });
    const started = performance.now();
    const result = await tune({
      gpu,
      spec,
      dtype,
      buckets: options.buckets,
      space,
      strategy: STRATEGIES[options.strategy],
      maxTrials: options.maxTrials,
      maxSeconds: options.maxSeconds,
      seed: options.seed,
      log,
      timing: { warmup: options.warmup, repeats: options.repeats },
      rotateBytes: options.rotateMb * 1e6,
      heat: options.heat && !isSoftwareAdapter(gpu.adapter),
      unfused: options.unfused,
      onProgress: (e) => {
        bar?.setTotal(e.total);
        bar?.update(e.done, { bucket: e.bucket, target: e.target, config: e.config });
      },
    });
    bar?.stop();
    const seconds = (performance.now() - started) / 1000;
    await saveCacheEntry(cacheFile, fingerprint, problemKey(spec, dtype), result.entry);
    console.log(formatResults(spec, dtype, result.entry));
    const o = result.outcomes;
    console.log(
      `${dtype}: ${
        seconds.toFixed(1)
      } s; trials ok ${o.ok}, invalid ${o.invalid}, compile ${o.compile}, verify ${o.verify}, runtime ${o.runtime}; resumed ${result.resumed}; log ${log.path}`,
    );
    if (result.skippedBuckets.length > 0) {
      console.log(
        `${dtype}: budget ran out before buckets ${
          result.skippedBuckets.join(", ")
        }: rerun to resume`,
      );
    }
  }
  gpu.device.destroy();
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`error: ${e.message}\nRun with --help for usage.`);
      Deno.exit(2);
    }
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
