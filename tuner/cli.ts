/**
 * `deno task tune`: tunes a projection problem on this machine's GPU and stores the winners in
 * the GPU's cache file.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { AdapterFingerprint, BucketResult, CacheEntry } from "../cache/schema.ts";
import {
  adapterFingerprint,
  cacheFileName,
  CacheFormatError,
  GENERATOR_VERSION,
  problemKey,
  storedProblem,
} from "../cache/schema.ts";
import { comparableEntry } from "../cache/merge.ts";
import { loadCacheFile, saveCacheEntry } from "../cache/store.ts";
import { configName, configProblem, parseConfigName } from "../kernels/config.ts";
import type { Precision, WeightDtype } from "../kernels/dtype.ts";
import { parseWeightDtype, precisionProblem } from "../kernels/dtype.ts";
import { kernelWgsl } from "../kernels/generate.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { dtypeProblem, stageShape } from "../kernels/problem.ts";
import type { SearchSpace } from "../kernels/space.ts";
import { DEFAULT_SPACE } from "../kernels/space.ts";
import type { Gpu } from "./gpu_device.ts";
import { DeviceLostError, isSoftwareAdapter, openGpu } from "./gpu_device.ts";
import type { ProgressBar } from "./progress_bar.ts";
import { startProgressBar } from "./progress_bar.ts";
import { formatJudged, formatResults } from "./report.ts";
import { CompilePool } from "./compile_pool.ts";
import { STRATEGIES } from "./strategies.ts";
import { logFileName, TrialLog } from "./trial_log.ts";
import { DEFAULT_BUCKETS, findProblem } from "./problems.ts";
import { planSpace } from "./plan.ts";
import type { TrialBudget } from "./budget_plan.ts";
import type { ProgressEvent, TuneResult } from "./tune.ts";
import { DEFAULT_TRIAL_TIMEOUT_MS, tune } from "./tune.ts";
import { loadSpace } from "./yaml_file.ts";

const HELP = `Usage: deno task tune --problem <name|file.yaml> [options]

Tunes the fused projection GEMM (and its batched stage) for each m bucket on this machine's
GPU, checks every variant against a float64 reference before timing it, and writes the
winners to cache/<gpu>.json. Trials are logged as they finish; rerunning resumes.

Options:
  --problem <p>        problem name in problems/ (e.g. kimi-linear-tp4) or a YAML file
  --dtype <list>       weight storage types, comma-separated: f32, f16, bf16 (default f32)
  --precision <p>      exact (default) | fast: also search f16-math kernels, for f16 weights
                       (cached under a key of their own; createProjection's precision "fast")
  --buckets <list>     m buckets, comma-separated (default 1,2,4,...,16384)
  --strategy <s>       guided (default) | local | random | exhaustive (see tuner/strategies.ts)
  --max-trials <n|p%>  most configs timed per stage and bucket: a count, or a share of the
                       run's valid configs (default 15%; a stage's first bucket, searched
                       with no hint, gets 2.5 times the others' share: tuner/budget_plan.ts)
  --max-seconds <s>    stop starting trials after this long (default 900); the buckets share
                       it by their planned trials (tuner/time_share.ts)
  --seed <n>           seed for data and random search (default: the log's last, else random)
  --space <file>       search space YAML (default: the built-in space)
  --cache-dir <dir>    where cache files go (default cache)
  --log-dir <dir>      trial logs, one <problem>-<dtype>-<shape hash>.jsonl each (default
                       <cache-dir>/logs/<gpu>); a rerun takes the seed of its log's last run
  --warmup <n>         untimed runs before timing each config (default 3)
  --repeats <n>        timed runs per config; the median is kept (default 20)
  --rotate-mb <n>      weight megabytes to rotate through, beyond the L2 (default 160)
  --trial-timeout <s>  time limit of one check or timing submit, seconds (default 60); a
                       submit past it fails its trials as "timed out" and the search goes on
  --no-heat            do not keep the GPU busy between timings (by default it is, except on a
                       software adapter, so that its clocks stay up: see tuner/heater.ts)
  --no-unfused         skip the unfused baseline
  --compile-workers <n>  threads that compile each kernel ahead, filling the driver's shader
                       cache (default: CPU cores - 1, at most 16; 0 on a software adapter)
  --print-wgsl <name>  print the WGSL of one config (with --problem, --dtype, --stage) and exit
  --stage <s>          fused | batched, for --print-wgsl (default fused)
  --quiet              no progress bar
  -h, --help           show this help

Exit status: 0 done, 1 error (bad problem, space or cache file: nothing is written), 2 bad
command line, 3 GPU device lost, 130 interrupted (Ctrl-C). After 3 or 130, or a kill, rerun
the same command: trials are logged as they finish and the run resumes from the log, losing at
most the submit in flight (up to 8 configs timed together).
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
  precision: Precision;
  buckets: number[];
  strategy: string;
  maxTrials: TrialBudget;
  maxSeconds: number;
  seed: number;
  /** Whether --seed was given (else a rerun takes the seed of the log's last run). */
  seedGiven: boolean;
  space?: string;
  cacheDir: string;
  logDir?: string;
  warmup: number;
  repeats: number;
  rotateMb: number;
  /** Seconds. */
  trialTimeout: number;
  heat: boolean;
  unfused: boolean;
  /** Compile pool threads; undefined for the default (see {@linkcode defaultCompileWorkers}). */
  compileWorkers?: number;
  printWgsl?: string;
  stage: "fused" | "batched";
  quiet: boolean;
  help: boolean;
}

export { DEFAULT_BUCKETS };

function positiveInt(flag: string, value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1) {
    throw new UsageError(`--${flag} must be a positive integer, got "${value}"`);
  }
  return n;
}

/** `--max-trials`: a positive count, or a percentage over 0 and at most 100 such as "15%". */
function trialBudgetOption(value: string): TrialBudget {
  const percent = /^\s*(\d+(?:\.\d+)?)%\s*$/.exec(value);
  if (!percent) return positiveInt("max-trials", value);
  const p = Number(percent[1]);
  if (!(p > 0 && p <= 100)) {
    throw new UsageError(
      `--max-trials must be a percentage over 0 and at most 100, got "${value}"`,
    );
  }
  return { percent: p };
}

function nonNegativeInt(flag: string, value: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !(n <= max)) {
    throw new UsageError(`--${flag} must be an integer from 0 to ${max}, got "${value}"`);
  }
  return n;
}

function positiveNumber(flag: string, value: string): number {
  const n = Number(value);
  if (!/^\d*\.?\d+$/.test(value.trim()) || !Number.isFinite(n) || n <= 0) {
    throw new UsageError(`--${flag} must be a positive number, got "${value}"`);
  }
  return n;
}

/** The flags `parseArgs` reads (each is described in {@linkcode HELP}). */
const FLAGS = {
  problem: { type: "string" },
  dtype: { type: "string", default: "f32" },
  precision: { type: "string", default: "exact" },
  buckets: { type: "string" },
  strategy: { type: "string", default: "guided" },
  "max-trials": { type: "string", default: "15%" },
  "max-seconds": { type: "string", default: "900" },
  seed: { type: "string" },
  space: { type: "string" },
  "cache-dir": { type: "string", default: "cache" },
  "log-dir": { type: "string" },
  warmup: { type: "string", default: "3" },
  repeats: { type: "string", default: "20" },
  "rotate-mb": { type: "string", default: "160" },
  "trial-timeout": { type: "string", default: String(DEFAULT_TRIAL_TIMEOUT_MS / 1000) },
  "no-heat": { type: "boolean", default: false },
  "no-unfused": { type: "boolean", default: false },
  "compile-workers": { type: "string" },
  "print-wgsl": { type: "string" },
  stage: { type: "string", default: "fused" },
  quiet: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

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
      options: FLAGS,
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) return { help: true } as CliOptions;
  if (!values.problem) throw new UsageError("--problem is required");
  let dtypes: WeightDtype[];
  try {
    dtypes = values.dtype.split(",").map((d) => parseWeightDtype(d.trim()));
  } catch (e) {
    throw new UsageError(`--dtype: ${(e as Error).message}`);
  }
  const precision = values.precision as Precision;
  for (const d of dtypes) {
    const problem = precisionProblem(precision, d);
    if (problem) throw new UsageError(`--precision: ${problem}`);
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
    dtypes,
    precision,
    buckets,
    strategy: values.strategy,
    maxTrials: trialBudgetOption(values["max-trials"]),
    maxSeconds: positiveInt("max-seconds", values["max-seconds"]),
    seed: values.seed === undefined
      ? Math.floor(Math.random() * 2 ** 31)
      : nonNegativeInt("seed", values.seed, 2 ** 32 - 1),
    seedGiven: values.seed !== undefined,
    space: values.space,
    cacheDir: values["cache-dir"],
    logDir: values["log-dir"],
    warmup: positiveInt("warmup", values.warmup),
    repeats: positiveInt("repeats", values.repeats),
    rotateMb: positiveInt("rotate-mb", values["rotate-mb"]),
    trialTimeout: positiveNumber("trial-timeout", values["trial-timeout"]),
    heat: !values["no-heat"],
    unfused: !values["no-unfused"],
    compileWorkers: values["compile-workers"] === undefined
      ? undefined
      : nonNegativeInt("compile-workers", values["compile-workers"], 64),
    printWgsl: values["print-wgsl"],
    stage: values.stage,
    quiet: values.quiet,
    help: false,
  };
}

/** Resolves `--problem` (see `findProblem`), as a usage error if there is no such problem. */
export async function resolveProblem(problem: string): Promise<ProjectionSpec> {
  try {
    return await findProblem(problem);
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
}

/**
 * Compile pool threads when `--compile-workers` is not given: one per CPU core but the tuner's,
 * at most 16 (on the 16-core H100 host, fresh tp4 f16 tunes waited 26.7 s for compiles with 8
 * threads, 20.0 s with 12 and 15.0 s with 15); none on a software adapter, where the compiles
 * compete with the rasterizer for the same cores and no driver cache helps.
 */
export function defaultCompileWorkers(adapter: GPUAdapter): number {
  if (isSoftwareAdapter(adapter)) return 0;
  return Math.max(0, Math.min(16, (navigator.hardwareConcurrency ?? 1) - 1));
}

/** An environment variable's value, or undefined when it is unset or not readable (no permission). */
function grantedEnv(name: string): string | undefined {
  const access = Deno.permissions.querySync({ name: "env", variable: name });
  return access.state === "granted" ? Deno.env.get(name) : undefined;
}

/**
 * Test-only fault injection for the exit-3 path, which no real fault triggers on demand: with
 * `TUNE_TEST_LOSE_DEVICE_AFTER=N` in the environment (and --allow-env), the device is
 * destroyed after the N-th trial, as a driver reset would lose it (tests/spawn/tune_kill_test.ts).
 */
function withDeviceLoss(
  onProgress: ((event: ProgressEvent) => void) | undefined,
  device: GPUDevice,
): ((event: ProgressEvent) => void) | undefined {
  const after = Number(grantedEnv(LOSE_DEVICE_ENV) ?? NaN);
  if (!(after > 0)) return onProgress;
  let trials = 0;
  return (event) => {
    onProgress?.(event);
    if (++trials === after) device.destroy();
  };
}

const LOSE_DEVICE_ENV = "TUNE_TEST_LOSE_DEVICE_AFTER";

/** The compile pool of a run: `--compile-workers` threads, or the default number; none for 0. */
function compilePool(options: CliOptions, adapter: GPUAdapter): CompilePool | undefined {
  const workers = options.compileWorkers ?? defaultCompileWorkers(adapter);
  return workers > 0 ? new CompilePool(workers) : undefined;
}

/** Where the NVIDIA driver keeps its shader cache, when set. */
const SHADER_CACHE_ENV = "__GL_SHADER_DISK_CACHE_PATH";

/**
 * Creates the folder `__GL_SHADER_DISK_CACHE_PATH` names, if it is missing: the NVIDIA driver
 * does not, and without its disk cache the compile pool's work ahead is lost. On the H100 two
 * fresh tp4 f16 tunes with a missing folder took 279 and 304 s (compile waits 151 and 174 s)
 * against 86 s (16 s). Without env permission, or if the folder cannot be made, the driver's own
 * rule stands (a warning says so).
 */
async function ensureShaderCacheFolder(): Promise<void> {
  const folder = grantedEnv(SHADER_CACHE_ENV);
  if (!folder) return;
  try {
    await Deno.mkdir(folder, { recursive: true });
  } catch (e) {
    console.error(
      `warning: ${SHADER_CACHE_ENV} names "${folder}", which could not be made ` +
        `(${(e as Error).message}): compiles will not be cached`,
    );
  }
}

/** Share of a run spent waiting for compiles past which the pool's work ahead looks lost. */
const COMPILE_WAIT_SHARE = 1 / 3;

/**
 * A warning when a run with a compile pool spent over a third of its time waiting for
 * compiles: the pool compiles ahead through the driver's shader cache, and without that cache
 * the tuner compiles everything again. On the H100, fresh tp4 f16 runs waited 14-16 s of 79-86
 * s with the cache and 151-174 s of 279-304 s without it.
 *
 * @example
 * ```ts
 * import { compileWaitWarning } from "./cli.ts";
 * if (compileWaitWarning({ compileMs: 16_000, totalMs: 86_000 }, true)) throw new Error("fine");
 * if (!compileWaitWarning({ compileMs: 151_000, totalMs: 279_000 }, true)) throw new Error("lost");
 * // No pool (a software adapter, or --compile-workers 0): every compile is a wait.
 * if (compileWaitWarning({ compileMs: 151_000, totalMs: 279_000 }, false)) throw new Error("pool");
 * ```
 */
export function compileWaitWarning(
  phases: { compileMs: number; totalMs: number },
  pooled: boolean,
): string | undefined {
  if (!pooled || phases.compileMs <= COMPILE_WAIT_SHARE * phases.totalMs) return undefined;
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  return `warning: compile waits took ${s(phases.compileMs)} of ${
    s(phases.totalMs)
  }; the compile pool works ahead through the GPU driver's shader cache, so check that it is on ` +
    `(NVIDIA: ${SHADER_CACHE_ENV}, when set, must name a writable folder)`;
}

/** Exit codes besides 0 (done) and 1 (an error, named on stderr). */
export const EXIT = { usage: 2, deviceLost: 3, interrupted: 130 } as const;

async function main(args: string[]): Promise<number> {
  const options = parseCli(args);
  if (options.help) {
    console.log(HELP);
    return 0;
  }
  const spec = await resolveProblem(options.problem);
  const space = options.space ? await loadSpace(options.space) : DEFAULT_SPACE;
  for (const dtype of options.dtypes) {
    const packing = dtypeProblem(spec, dtype);
    if (packing) {
      throw new UsageError(`--dtype ${dtype} does not fit problem "${spec.name}": ${packing}`);
    }
  }
  if (options.printWgsl) return await printWgsl(options, spec, options.printWgsl);

  await ensureShaderCacheFolder();
  const gpu = await openGpu();
  const { fingerprint, cacheFile } = await checkCacheFile(options.cacheDir, gpu);
  // Bad inputs are found before anything is written.
  for (const dtype of options.dtypes) {
    planSpace(spec, dtype, options.buckets, space, gpu.caps, options.precision);
  }
  console.error(`GPU: ${fingerprint.description || "(no description)"} -> ${cacheFile}`);
  console.error(
    `problem ${spec.name}, buckets ${options.buckets.join(",")}, strategy ${options.strategy}`,
  );
  const signals = new Interrupts();
  const pool = signals.pool = compilePool(options, gpu.adapter);
  return await tuneAll({ options, spec, space, gpu, fingerprint, cacheFile, signals, pool });
}

/** `--print-wgsl`: prints one config's WGSL for the `--stage` of the problem. */
async function printWgsl(options: CliOptions, spec: ProjectionSpec, name: string): Promise<number> {
  let config;
  try {
    config = parseConfigName(name);
  } catch (e) {
    throw new UsageError(`--print-wgsl: ${(e as Error).message}`);
  }
  let shape;
  try {
    shape = stageShape(spec, options.stage);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const gpu = await openGpu();
  try {
    const problem = configProblem(config, shape, options.dtypes[0], gpu.caps);
    if (problem) {
      throw new UsageError(`config "${configName(config)}" is invalid here: ${problem}`);
    }
    console.log(kernelWgsl(config, shape, options.dtypes[0]));
  } finally {
    gpu.device.destroy();
  }
  return 0;
}

/**
 * This GPU's cache file; a corrupt or foreign one is refused now, not after the tuning: it is
 * left as it is.
 *
 * @throws {CacheFormatError} If the file is not a cache file of this GPU.
 */
async function checkCacheFile(
  cacheDir: string,
  gpu: Gpu,
): Promise<{ fingerprint: AdapterFingerprint; cacheFile: string }> {
  const fingerprint = adapterFingerprint(gpu.adapter.info);
  const cacheFile = `${cacheDir}/${cacheFileName(fingerprint)}`;
  const existing = await loadCacheFile(cacheFile);
  if (existing && JSON.stringify(existing.adapter) !== JSON.stringify(fingerprint)) {
    throw new CacheFormatError(
      cacheFile,
      "adapter",
      `is ${JSON.stringify(existing.adapter)}, not this GPU ${JSON.stringify(fingerprint)}`,
    );
  }
  return { fingerprint, cacheFile };
}

/**
 * Ctrl-C (or SIGTERM): stop the bar, say where the trials are, and exit, but not while the
 * cache file is being written (that takes milliseconds). Trials are in the log as they end.
 */
class Interrupts {
  /** Whether a signal came. */
  interrupted = false;
  /**
   * What is going on now: the bar to stop, the log to name, the cache write to wait for, the
   * compile pool to drain (its threads must not be compiling when the process exits).
   */
  bar?: ProgressBar;
  logPath?: string;
  saving?: Promise<unknown>;
  pool?: CompilePool;
  #signals: [Deno.Signal, () => void][] = [];

  /** Listens for the signals. */
  constructor() {
    this.#signals.push(["SIGINT", this.#onSignal(EXIT.interrupted)]);
    if (Deno.build.os !== "windows") this.#signals.push(["SIGTERM", this.#onSignal(143)]);
    for (const [signal, handler] of this.#signals) Deno.addSignalListener(signal, handler);
  }

  #onSignal(code: number): () => void {
    return () => {
      if (this.interrupted) Deno.exit(code); // a second signal does not wait
      this.interrupted = true;
      this.bar?.stop();
      console.error(
        `\nInterrupted. ${
          this.logPath ? `Trials so far are in ${this.logPath}; r` : "R"
        }erun the same command to resume.`,
      );
      Promise.all([this.saving, this.pool?.drain()]).finally(() => Deno.exit(code));
    };
  }

  /** Stops listening. */
  remove(): void {
    for (const [signal, handler] of this.#signals) Deno.removeSignalListener(signal, handler);
  }
}

/** What the tuning of each weight type works with. */
interface Session {
  options: CliOptions;
  spec: ProjectionSpec;
  space: SearchSpace;
  gpu: Gpu;
  fingerprint: AdapterFingerprint;
  cacheFile: string;
  signals: Interrupts;
  /** Drained, not closed, at the end: the process ends by Deno.exit() (compile_pool.ts). */
  pool?: CompilePool;
}

/** Tunes each weight type in turn; the exit code. */
async function tuneAll(session: Session): Promise<number> {
  let failed = false;
  try {
    for (const dtype of session.options.dtypes) {
      const ended = await tuneDtype(session, dtype);
      if (ended === "interrupted") return EXIT.interrupted;
      if (ended === "untuned") failed = true;
    }
  } catch (e) {
    if (e instanceof DeviceLostError) {
      console.error(`\n${e.message}.`);
      return EXIT.deviceLost;
    }
    throw e;
  } finally {
    session.signals.remove();
    await session.pool?.drain();
    session.gpu.device.destroy();
  }
  return failed ? 1 : 0;
}

/**
 * Tunes one weight type, saves its winners and reports them.
 *
 * @returns "untuned" if a bucket is left without tuned kernels.
 */
async function tuneDtype(
  session: Session,
  dtype: WeightDtype,
): Promise<"done" | "untuned" | "interrupted"> {
  const { options, gpu, signals } = session;
  const { log, key, seed } = await openLog(session, dtype);
  const bar = options.quiet ? undefined : startProgressBar(dtype);
  signals.bar = bar;
  const started = performance.now();
  let result;
  try {
    result = await tune({
      gpu,
      spec: session.spec,
      dtype,
      precision: options.precision,
      buckets: options.buckets,
      space: session.space,
      strategy: STRATEGIES[options.strategy],
      maxTrials: options.maxTrials,
      maxSeconds: options.maxSeconds,
      seed,
      log,
      timing: { warmup: options.warmup, repeats: options.repeats },
      rotateBytes: options.rotateMb * 1e6,
      heat: options.heat && !isSoftwareAdapter(gpu.adapter),
      unfused: options.unfused,
      stored: await storedBuckets(session, key, dtype),
      trialTimeoutMs: options.trialTimeout * 1000,
      ahead: session.pool,
      onProgress: withDeviceLoss(bar?.onProgress, gpu.device),
    });
  } finally {
    bar?.stop();
  }
  const seconds = (performance.now() - started) / 1000;
  if (signals.interrupted) return "interrupted";
  const saved = await save(session, key, result.entry, result.judged);
  return report(session, dtype, result, saved, seconds, log.path) ? "untuned" : "done";
}

/**
 * Opens the trial log of a weight type and records this run in it. A plain rerun resumes: it
 * takes the seed of the log's last run.
 */
async function openLog(
  session: Session,
  dtype: WeightDtype,
): Promise<{ log: TrialLog; key: string; seed: number }> {
  const { options, spec } = session;
  const gpuSlug = cacheFileName(session.fingerprint).replace(/\.json$/, "");
  const logDir = options.logDir ?? `${options.cacheDir}/logs/${gpuSlug}`;
  const key = problemKey(spec, dtype, options.precision);
  const logPath = `${logDir}/${await logFileName(spec.name, key, GENERATOR_VERSION)}`;
  session.signals.logPath = logPath;
  const log = await TrialLog.open(logPath);
  const last = log.runs.at(-1)?.run;
  const seed = !options.seedGiven && last ? last.seed : options.seed;
  console.error(
    `${dtype}: seed ${seed}${seed === last?.seed ? " (the log's)" : ""}, log ${logPath}`,
  );
  await log.appendRun({
    run: {
      seed,
      problem: key,
      generator: GENERATOR_VERSION,
      strategy: options.strategy,
      maxTrials: typeof options.maxTrials === "number"
        ? options.maxTrials
        : `${options.maxTrials.percent}%`,
      buckets: options.buckets,
      at: new Date().toISOString(),
    },
  });
  return { log, key, seed };
}

/**
 * The buckets the cache file holds for a weight type's key, where its entry is of this
 * generator and problem (the ones the merge would weigh against the run's): the tuner times
 * each stored pair beside its own winners.
 */
async function storedBuckets(
  session: Session,
  key: string,
  dtype: WeightDtype,
): Promise<Record<string, BucketResult> | undefined> {
  const entry = (await loadCacheFile(session.cacheFile))?.entries[key];
  const problem = storedProblem(session.spec, dtype);
  return comparableEntry(entry, GENERATOR_VERSION, problem) ? entry.buckets : undefined;
}

/**
 * Merges a run's entry into the cache file, where it has buckets (an empty result is not
 * stored: it would add nothing, and make an empty entry).
 *
 * @returns The problem's entry as the cache file now holds it.
 */
async function save(
  session: Session,
  key: string,
  entry: CacheEntry,
  judged: TuneResult["judged"],
): Promise<CacheEntry> {
  const { cacheFile, fingerprint, signals } = session;
  const saving = Object.keys(entry.buckets).length > 0
    ? saveCacheEntry(cacheFile, fingerprint, key, entry, judged)
    : loadCacheFile(cacheFile);
  signals.saving = saving;
  const saved = (await saving)?.entries[key] ?? { ...entry, buckets: {} };
  signals.saving = undefined;
  return saved;
}

/**
 * Prints a weight type's results (the cache's winners, the run's counts) and names the buckets
 * left without tuned kernels.
 *
 * @returns Whether a bucket is left without tuned kernels.
 */
function report(
  session: Session,
  dtype: WeightDtype,
  result: TuneResult,
  saved: CacheEntry,
  seconds: number,
  logPath: string,
): boolean {
  console.log(formatResults(session.spec, dtype, saved));
  const o = result.outcomes;
  console.log(
    `${dtype}: ${
      seconds.toFixed(1)
    } s; trials ok ${o.ok}, invalid ${o.invalid}, compile ${o.compile}, verify ${o.verify}, runtime ${o.runtime}; resumed ${result.resumed}; log ${logPath}`,
  );
  console.log(`${dtype}: ${formatPhases(result)}`);
  for (const line of formatJudged(result.entry, result.judged)) console.log(`${dtype}: ${line}`);
  if (result.unbatchedBuckets.length > 0) {
    console.error(
      `${dtype}: no unfused baseline at m=${
        result.unbatchedBuckets.join(", ")
      }: the time limit ran out before it, so the cache's pair there was not timed beside this run's either; rerun to time them`,
    );
  }
  const slow = compileWaitWarning(result.phases, session.pool !== undefined);
  if (slow) console.error(`${dtype}: ${slow}`);
  const kept = result.failedBuckets.filter((m) => saved.buckets[String(m)]);
  if (kept.length > 0) {
    console.error(
      `${dtype}: every candidate of a stage failed at m=${
        kept.join(", ")
      } in this run (the reasons are in ${logPath}); the cache keeps the earlier winners`,
    );
  }
  const untuned = session.options.buckets.filter((m) => !saved.buckets[String(m)]);
  for (const m of untuned) {
    const why = result.failedBuckets.includes(m)
      ? `every candidate of a stage failed (the reasons are in ${logPath})`
      : "the time budget ran out before it: rerun to resume";
    console.error(`${dtype}: bucket m=${m} has no tuned kernels: ${why}`);
  }
  return untuned.length > 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`error: ${e.message}\nRun with --help for usage.`);
      Deno.exit(EXIT.usage);
    }
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(1);
  }
}

/** Where a run's time went, and the clock the probe saw, in one line. */
function formatPhases({ phases: p, clock }: TuneResult): string {
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  // Phases overlap by a few ms (a compile started inside another phase): no "-0.0 s".
  const rest = Math.max(
    0,
    p.totalMs - p.setupMs - p.compileMs - p.verifyMs - p.timeMs - p.searchMs - p.logMs,
  );
  const probe = clock
    ? `; clock probe ${clock.probeUs.toFixed(2)} us per run, settled ${clock.settles} times in ${
      s(clock.settleMs)
    } (part of timing)`
    : "";
  const each = p.compiles > 0
    ? ` (${p.compiles} configs compiled, ${(p.compileMs / p.compiles).toFixed(0)} ms each)`
    : "";
  return `time went to setup ${s(p.setupMs)}, compile waits ${s(p.compileMs)}${each}, checks ${
    s(p.verifyMs)
  }, timing ${s(p.timeMs)}, search ${s(p.searchMs)}, logging ${s(p.logMs)}, the rest ${
    s(rest)
  }${probe}`;
}
