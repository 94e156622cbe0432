/**
 * The tuning loop for one problem and weight type: for each m bucket and each stage, order the
 * candidates with the strategy, check each against the reference before it is ever timed, time
 * the survivors in batches, and keep the fastest; then time the unfused baseline and the whole
 * projection both ways in one batch, so their ratio comes from one run.
 *
 * Every trial is appended to the log as it finishes; a trial already in the log (same
 * generator, target, bucket and config) is not run again, which is how a killed run resumes.
 * Configs are timed up to 8 in one submit (`TIMING_CHUNK`), so a kill loses at most the
 * trials of the submit in flight; the one-pass timings of the whole projection, fused and
 * unfused, are trials too ("projection:fused" and "projection:unfused").
 *
 * Failures are outcomes, not exceptions: a config the validator rejects ("invalid"), that does
 * not compile ("compile"), that computes wrong results ("verify"), or whose GPU work fails or
 * runs past the time limit ("runtime", see watchdog.ts) is logged with its reason and the
 * search goes on. What stops a run: bad input, found before anything is written
 * (`TuneInputError`, from plan.ts), and a lost device ({@linkcode DeviceLostError}), after which the
 * log holds every trial that finished.
 *
 * @module
 */
import type { BucketResult, CacheEntry, StageResult } from "../cache/schema.ts";
import { GENERATOR_VERSION, storedProblem } from "../cache/schema.ts";
import type { KernelConfig } from "../kernels/config.ts";
import { configName, configProblem, parseConfigName } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { packWeights } from "../kernels/dtype.ts";
import type { CompiledKernel, WgslMutation } from "../kernels/gpu.ts";
import {
  compileKernel,
  dispatchKernel,
  kernelBindGroup,
  paramsBuffer,
  storageBuffer,
} from "../kernels/gpu.ts";
import type { GemmShape, ProjectionSpec } from "../kernels/problem.ts";
import { batchedShape, fusedShape, unfusedShapes } from "../kernels/problem.ts";
import type { SearchSpace } from "../kernels/space.ts";
import { suitsRows } from "../kernels/space.ts";
import type { Gpu } from "./gpu_device.ts";
import { stageTiers, withTierCandidates } from "./tiers.ts";
import { DeviceLostError } from "./gpu_device.ts";
import { GpuHeater } from "./heater.ts";
import { planSpace } from "./plan.ts";
import { randomNonZero, seededRandom } from "./random.ts";
import type { Evaluation, Strategy } from "./search.ts";
import { runSearch } from "./search.ts";
import type { SettledTiming, Timing, TimingOptions } from "./timing.ts";
import { settleTiming, timeItems, tooNoisy } from "./timing.ts";
import { timedOutAfter } from "./trial_log.ts";
import type { Outcome, Trial, TrialLog } from "./trial_log.ts";
import { checkKernel, destroyCheckData, makeCheckData, shapeExtents } from "./verify.ts";
import { formatSeconds, TrialTimeoutError, Watchdog } from "./watchdog.ts";

/** Everything one tuning run needs. */
export interface TuneOptions {
  gpu: Gpu;
  spec: ProjectionSpec;
  dtype: WeightDtype;
  buckets: number[];
  space: SearchSpace;
  strategy: Strategy;
  /** Most configs timed per stage and bucket. */
  maxTrials: number;
  /** Stop starting new trials after this many seconds. */
  maxSeconds: number;
  seed: number;
  log: TrialLog;
  timing: TimingOptions;
  /** Weight bytes to rotate through when timing, so small-m timings read from memory, not L2. */
  rotateBytes: number;
  /** Keep the GPU busy between timings so its clocks stay up (see heater.ts). */
  heat: boolean;
  /** Also time the unfused baseline. */
  unfused: boolean;
  /**
   * Time limit of one check or timing submit, milliseconds (default 60 000); past it the
   * trials of the submit fail with "timed out after N s". `Infinity` for none.
   */
  trialTimeoutMs?: number;
  /** Test-only: rewrites a config's WGSL before it is compiled (see kernels/gpu.ts). */
  mutateWgsl?: WgslMutation;
  onProgress?: (event: ProgressEvent) => void;
}

/** The default of {@linkcode TuneOptions.trialTimeoutMs}. */
export const DEFAULT_TRIAL_TIMEOUT_MS = 60_000;

/** Reported after each trial. */
export interface ProgressEvent {
  done: number;
  total: number;
  bucket: number;
  target: string;
  config: string;
  outcome: Outcome;
}

/** What a run produced: the cache entry and what it could not do. */
export interface TuneResult {
  entry: CacheEntry;
  /** Buckets left untuned because the budget ran out. */
  skippedBuckets: number[];
  /** Buckets left untuned because every candidate of a stage failed (see the log). */
  failedBuckets: number[];
  /** Count of trials by outcome in this run (resumed trials not counted). */
  outcomes: Record<Outcome, number>;
  resumed: number;
}

/** The GPU buffers one stage is timed on: rotating weight copies, shared X and Y. */
interface StageBuffers {
  x: GPUBuffer;
  ws: GPUBuffer[];
  y: GPUBuffer;
}

/** A stage being tuned: its shape, buffers and compiled/checked kernels. */
interface Target {
  name: string;
  stage: "fused" | "batched";
  shape: GemmShape;
  buffers: StageBuffers;
  /** Compiled and checked kernels by config name; a failure is an outcome with its reason. */
  kernels: Map<string, CompiledKernel | { outcome: Outcome; reason: string }>;
  /** Configs of the space that pass validation for this target's shape. */
  valid: KernelConfig[];
}

const CHECK_ROWS = [3, 67]; // ragged row counts: tails of every row block size
/** The unfused baseline tries this many of the stage's fastest configs on each of its GEMMs. */
const UNFUSED_CANDIDATES = 2;
/** Configs timed per submit: a kill loses at most this many trials. */
const TIMING_CHUNK = 8;

function weightBuffers(
  device: GPUDevice,
  values: Float32Array,
  dtype: WeightDtype,
  rotateBytes: number,
  label: string,
): GPUBuffer[] {
  const packed = packWeights(values, dtype);
  const copies = Math.max(1, Math.min(16, Math.ceil(rotateBytes / packed.byteLength)));
  return Array.from(
    { length: copies },
    (_, i) => storageBuffer(device, packed, `${label} copy ${i}`),
  );
}

/**
 * Runs the tuning loop.
 *
 * @throws {TuneInputError} (plan.ts) Before anything is written, for inputs it cannot tune.
 * @throws {DeviceLostError} If the device is lost; the log keeps the trials that finished.
 */
export async function tune(options: TuneOptions): Promise<TuneResult> {
  const { gpu, spec, dtype, log } = options;
  const device = gpu.device;
  const buckets = [...new Set(options.buckets)].sort((a, b) => a - b);
  const stagePlans = planSpace(spec, dtype, buckets, options.space, gpu.caps);

  const random = seededRandom(options.seed);
  const started = performance.now();
  const outOfTime = () => (performance.now() - started) / 1000 > options.maxSeconds;
  const outcomes: Record<Outcome, number> = {
    ok: 0,
    invalid: 0,
    compile: 0,
    verify: 0,
    runtime: 0,
  };
  let resumed = 0;

  // A lost device fails calls (a rejected mapAsync, "Parent device is lost") before its `lost`
  // promise settles: every GPU failure is first checked against it, so that no trial is
  // logged as failed because the device went away.
  let lostInfo: GPUDeviceLostInfo | undefined;
  device.lost.then((info) => (lostInfo = info));
  const lostError = () => new DeviceLostError(lostInfo?.message ?? "", log.path);
  const isLost = async () =>
    lostInfo !== undefined ||
    await Promise.race([
      device.lost.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 100)),
    ]);
  /** What a GPU failure means: a DeviceLostError if the device is lost, else itself. */
  const lostOr = async (e: unknown) =>
    e instanceof DeviceLostError ? e : (await isLost()) ? lostError() : e;
  const limitMs = options.trialTimeoutMs ?? DEFAULT_TRIAL_TIMEOUT_MS;
  const watchdog = Number.isFinite(limitMs) ? new Watchdog(limitMs, log.path) : undefined;
  /** Runs GPU work of the trials `failures` would record, under the time limit. */
  const onGpu = async <T>(what: string, failures: Trial[], work: () => Promise<T>) => {
    if (lostInfo) throw lostError();
    if (!watchdog) return await work();
    try {
      return await watchdog.run(what, failures, work);
    } catch (e) {
      if (e instanceof TrialTimeoutError) {
        // Where waits do not block, the GPU may still be running it: let it finish first.
        await Promise.race([device.queue.onSubmittedWorkDone(), device.lost]).catch(() => {});
      }
      throw e;
    }
  };

  const heater = options.heat ? new GpuHeater(device) : undefined;
  const gpuBuffers: GPUBuffer[] = [];
  const checkCache = new Map<string, ReturnType<typeof makeCheckData>>();
  try {
    heater?.start();
    return await run();
  } finally {
    watchdog?.close();
    await heater?.destroy().catch(() => {});
    for (const data of checkCache.values()) destroyCheckData(data);
    for (const b of gpuBuffers) b.destroy();
  }

  async function run(): Promise<TuneResult> {
    const maxM = buckets[buckets.length - 1];
    const keep = (b: GPUBuffer) => (gpuBuffers.push(b), b);
    const weightCopies = (values: Float32Array, label: string) =>
      weightBuffers(device, values, dtype, options.rotateBytes, label).map(keep);

    // Buffers: X and the fused weight; the fused output is the batched stage's input.
    const fused = fusedShape(spec);
    const fusedExtent = shapeExtents(fused, maxM);
    checkSize(gpu, fusedExtent.y * 4, `the fused output at m=${maxM}`);
    const fusedBuffers: StageBuffers = {
      x: keep(storageBuffer(device, randomNonZero(fusedExtent.x, random), "x")),
      ws: weightCopies(randomNonZero(fusedExtent.w, random), "fused w"),
      y: keep(storageBuffer(device, randomNonZero(fusedExtent.y, random), "fused y")),
    };
    const targets: Target[] = [{
      name: "fused",
      stage: "fused",
      shape: fused,
      buffers: fusedBuffers,
      kernels: new Map(),
      valid: stagePlans[0].valid,
    }];
    const batched = batchedShape(spec);
    if (batched) {
      const extent = shapeExtents(batched, maxM);
      checkSize(gpu, extent.y * 4, `the batched output at m=${maxM}`);
      targets.push({
        name: "batched",
        stage: "batched",
        shape: batched,
        buffers: {
          x: fusedBuffers.y,
          ws: weightCopies(randomNonZero(extent.w, random), "batched w"),
          y: keep(device.createBuffer({
            size: extent.y * 4,
            usage: GPUBufferUsage.STORAGE,
            label: "batched y",
          })),
        },
        kernels: new Map(),
        valid: stagePlans[1].valid,
      });
    }
    const trial = (
      target: string,
      bucket: number | null,
      config: string,
      outcome: Outcome,
      extra: Partial<SettledTiming> & { reason?: string },
    ): Trial => ({
      generator: GENERATOR_VERSION,
      target,
      bucket,
      config,
      outcome,
      ...extra,
      at: new Date().toISOString(),
    });
    /** Logs a trial; `logged` when the watchdog already wrote it to the file. */
    async function record(t: Trial, logged = false) {
      if (t.bucket !== null || t.outcome !== "ok") outcomes[t.outcome]++; // a passed check is not a trial
      if (logged) log.remember(t);
      else await log.append(t);
    }
    // Configs the validator rejects are logged once with the reason and never counted as trials.
    for (const [i, target] of targets.entries()) {
      for (const [name, reason] of stagePlans[i].invalid) {
        if (!log.find(target.name, null, name, GENERATOR_VERSION)) {
          await record(trial(target.name, null, name, "invalid", { reason }));
        }
      }
    }
    const plan = buckets.map((m) =>
      targets.map((t) => Math.min(options.maxTrials, t.valid.filter((c) => suitsRows(c, m)).length))
    );
    let total = plan.flat().reduce((a, b) => a + b, 0);
    let done = 0;
    const report = (bucket: number, target: string, config: string, outcome: Outcome) => {
      done++;
      options.onProgress?.({ done, total, bucket, target, config, outcome });
    };
    /**
     * The logged trial of a config, if it is final: one that timed out under a smaller limit
     * than this run's is tried again.
     */
    const earlierTrial = (target: string, bucket: number | null, name: string) => {
      const t = log.find(target, bucket, name, GENERATOR_VERSION);
      const limit = t && timedOutAfter(t);
      return limit !== undefined && limit * 1000 < limitMs ? undefined : t;
    };
    /**
     * A stage's timings at m with every other valid config the log timed at m (earlier runs,
     * other strategies): the winner is the best of everything known.
     */
    const withLogged = (ranking: Ranked[], target: Target, m: number): Ranked[] => {
      const have = new Set(ranking.map((r) => r.config));
      const valid = new Set(target.valid.filter((c) => suitsRows(c, m)).map(configName));
      const logged = new Set(
        log.trials.filter((t) =>
          t.target === target.name && t.bucket === m && valid.has(t.config) && !have.has(t.config)
        ).map((t) => t.config),
      );
      for (const name of logged) {
        const t = earlierTrial(target.name, m, name);
        if (t?.outcome === "ok") {
          ranking.push({ config: name, medianUs: t.medianUs!, noisy: t.noisy });
        }
      }
      return ranking.sort((a, b) => a.medianUs - b.medianUs);
    };
    const compile = (target: Target, config: KernelConfig) =>
      compileKernel(device, config, target.shape, dtype, options.mutateWgsl);

    /** Compiles and checks a config for a target once; failures are logged with their reason. */
    const prepare = async (
      target: Target,
      config: KernelConfig,
    ): Promise<CompiledKernel | undefined> => {
      const name = configName(config);
      const known = target.kernels.get(name);
      if (known) return "pipeline" in known ? known : undefined;
      const earlier = earlierTrial(target.name, null, name);
      if (earlier && earlier.outcome !== "ok") {
        target.kernels.set(name, { outcome: earlier.outcome, reason: earlier.reason ?? "" });
        resumed++;
        return undefined;
      }
      const fail = async (outcome: Outcome, reason: string, logged = false) => {
        target.kernels.set(name, { outcome, reason });
        await record(trial(target.name, null, name, outcome, { reason }), logged);
        return undefined;
      };
      /** Logs a thrown failure as `outcome`, unless it is the device's loss. */
      const failWith = async (outcome: Outcome, e: unknown) => {
        const error = await lostOr(e);
        if (error instanceof DeviceLostError) throw error;
        return await fail(
          outcome,
          (error as Error).message,
          error instanceof TrialTimeoutError && error.logged,
        );
      };
      const invalid = configProblem(config, target.shape, dtype, gpu.caps);
      if (invalid) return await fail("invalid", invalid);
      let kernel: CompiledKernel;
      try {
        kernel = await (compiling.get(`${target.name}:${name}`) ?? compile(target, config));
      } catch (e) {
        return await failWith("compile", e);
      }
      for (const m of CHECK_ROWS) {
        const data = checkData(target, m);
        let mismatch: string | undefined;
        const timedOut = (seconds: string) =>
          trial(target.name, null, name, "runtime", {
            reason: `timed out after ${seconds} s (check at m=${m})`,
          });
        try {
          mismatch = await onGpu(
            `the check of ${target.name} ${name} at m=${m}`,
            [timedOut(formatSeconds(limitMs / 1000))],
            () => checkKernel(device, kernel, data),
          );
        } catch (e) {
          if (e instanceof TrialTimeoutError) {
            return await fail("runtime", timedOut(formatSeconds(e.seconds)).reason!, e.logged);
          }
          return await failWith("runtime", e);
        }
        // A lost device reads back garbage rather than failing, at times.
        if (mismatch && (await isLost())) throw lostError();
        if (mismatch) return await fail("verify", `at m=${m}: ${mismatch}`);
      }
      target.kernels.set(name, kernel);
      if (!earlier) await record(trial(target.name, null, name, "ok", {}));
      return kernel;
    };
    /** Compiles started ahead of prepare(), by target and config name. */
    const compiling = new Map<string, Promise<CompiledKernel>>();
    const compileAhead = (target: Target, config: KernelConfig) => {
      const key = `${target.name}:${configName(config)}`;
      if (target.kernels.has(configName(config)) || compiling.has(key)) return;
      if (configProblem(config, target.shape, dtype, gpu.caps)) return;
      const promise = compile(target, config);
      promise.catch(() => {}); // awaited (and its failure recorded) in prepare()
      compiling.set(key, promise);
    };
    const checkData = (target: Target, m: number) => {
      const key = `${target.name}:${m}`;
      let data = checkCache.get(key);
      if (!data) {
        data = makeCheckData(device, target.shape, dtype, m, options.seed + m);
        checkCache.set(key, data);
      }
      return data;
    };

    const params = new Map(buckets.map((m) => [m, keep(paramsBuffer(device, m))]));
    const bindGroups = (target: Target, m: number) =>
      target.buffers.ws.map((w) =>
        kernelBindGroup(device, {
          params: params.get(m)!,
          x: target.buffers.x,
          w,
          y: target.buffers.y,
        })
      );
    const timeKernels = async (
      kernels: CompiledKernel[],
      groups: GPUBindGroup[],
      m: number,
      timing = options.timing,
    ) =>
      await timeItems(
        device,
        kernels.map((kernel) => ({
          encode: (pass: GPUComputePassEncoder, rep: number) =>
            dispatchKernel(pass, kernel, groups[rep % groups.length], m),
        })),
        timing,
      );
    /**
     * Times kernels at m under the time limit.
     *
     * @returns Their timings, or the failure to log for each (all of them: one submit).
     */
    const timeOrFail = async (
      logTarget: string,
      kernels: CompiledKernel[],
      groups: GPUBindGroup[],
      m: number,
      timing = options.timing,
    ): Promise<Timing[] | { reason: string; logged: boolean }> => {
      const reason = (seconds: number) =>
        `timed out after ${formatSeconds(seconds)} s (timing at m=${m}${
          kernels.length > 1 ? `, in one submit with ${kernels.length - 1} other configs` : ""
        })`;
      try {
        return await onGpu(
          `the timing of ${logTarget} ${kernels.map((k) => k.name).join(", ")} at m=${m}`,
          kernels.map((k) =>
            trial(logTarget, m, k.name, "runtime", { reason: reason(limitMs / 1000) })
          ),
          () => timeKernels(kernels, groups, m, timing),
        );
      } catch (e) {
        if (e instanceof TrialTimeoutError) return { reason: reason(e.seconds), logged: e.logged };
        const error = await lostOr(e);
        if (error instanceof DeviceLostError) throw error;
        return { reason: (error as Error).message, logged: false };
      }
    };

    /** Times configs of a target at m (skipping those in the log) and returns all ok timings. */
    const search = async (
      target: Target,
      m: number,
      candidates: KernelConfig[],
      logTarget = target.name,
    ) => {
      const groups = bindGroups(target, m);
      const timed: Ranked[] = [];
      // Compile and check every candidate first, then time them back to back: the GPU lowers
      // its clocks while the CPU compiles, and a timing taken right after that reads 2-3x slow.
      const ready: CompiledKernel[] = [];
      // Start every compile at once (the driver may compile in parallel); prepare() awaits each.
      for (const config of candidates) {
        if (!earlierTrial(logTarget, m, configName(config))) {
          compileAhead(target, config);
        }
      }
      for (const config of candidates) {
        const name = configName(config);
        const earlier = earlierTrial(logTarget, m, name);
        if (earlier) {
          resumed++;
          report(m, logTarget, name, earlier.outcome);
          if (earlier.outcome === "ok") {
            timed.push({ config: name, medianUs: earlier.medianUs!, noisy: earlier.noisy });
          }
          continue;
        }
        if (outOfTime()) break;
        const kernel = await prepare(target, config);
        if (kernel) ready.push(kernel);
        else report(m, logTarget, name, (target.kernels.get(name) as { outcome: Outcome }).outcome);
      }
      for (let start = 0; start < ready.length; start += TIMING_CHUNK) {
        const chunk = ready.slice(start, start + TIMING_CHUNK);
        const timings = await timeOrFail(logTarget, chunk, groups, m);
        if (!Array.isArray(timings)) {
          for (const k of chunk) {
            const t = trial(logTarget, m, k.name, "runtime", { reason: timings.reason });
            await record(t, timings.logged);
            report(m, logTarget, k.name, "runtime");
          }
          continue;
        }
        for (const [i, kernel] of chunk.entries()) {
          const first = timings[i];
          let again: Timing | undefined;
          if (tooNoisy(first)) {
            // Too noisy to trust: measure once more, with twice the repeats.
            const repeat = await timeOrFail(logTarget, [kernel], groups, m, {
              ...options.timing,
              repeats: options.timing.repeats * 2,
            });
            if (!Array.isArray(repeat)) {
              const t = trial(logTarget, m, kernel.name, "runtime", { reason: repeat.reason });
              await record(t, repeat.logged);
              report(m, logTarget, kernel.name, "runtime");
              continue;
            }
            again = repeat[0];
          }
          const t = settleTiming(first, again);
          await record(trial(logTarget, m, kernel.name, "ok", t));
          report(m, logTarget, kernel.name, "ok");
          timed.push({ config: kernel.name, medianUs: t.medianUs, noisy: t.noisy });
        }
      }
      return timed.sort((a, b) => a.medianUs - b.medianUs);
    };

    const bucketResults: Record<string, BucketResult> = {};
    const skippedBuckets: number[] = [];
    const failedBuckets: number[] = [];
    // The unfused baseline: one GEMM per segment and per batched input, on the stage's buffers.
    const unfusedTargets: Target[] = unfusedShapes(spec).map(({ stage, shape }, i) => ({
      ...targets.find((t) => t.stage === stage)!,
      name: `unfused:${i}`,
      shape,
      kernels: new Map(),
      valid: [],
    }));
    /** The winner of the bucket before, per stage: the strategy's hint at the next bucket. */
    const hints = new Map<string, KernelConfig>();
    /**
     * Searches one stage at m with the strategy, then times one config of each device tier the
     * search did not reach, and ranks them with what the log knows.
     */
    const searchStage = async (target: Target, ti: number, m: number, budget: number) => {
      const valid = target.valid.filter((c) => suitsRows(c, m));
      const hint = hints.get(target.name);
      const context = {
        candidates: valid,
        hints: hint ? [hint] : [],
        // Each bucket and stage draws from a stream of its own: adding buckets to a rerun
        // leaves the candidates of the others as they were (and their trials resumed).
        random: seededRandom(streamSeed(options.seed, m, ti)),
      };
      const timed: Ranked[] = [];
      const evaluate = async (configs: KernelConfig[]): Promise<Evaluation[]> => {
        if (outOfTime()) return [];
        const got = await search(target, m, configs);
        timed.push(...got);
        return configs.map((config) => {
          const name = configName(config);
          return { config, name, medianUs: got.find((r) => r.config === name)?.medianUs ?? null };
        });
      };
      const done = await runSearch(options.strategy, context, evaluate, budget, TIMING_CHUNK);
      const tried = done.map((e) => e.config);
      const extra = withTierCandidates(
        [...tried, ...valid],
        tried.length,
        target.shape,
        dtype,
        gpu.caps,
      )
        .slice(tried.length);
      total += extra.length + tried.length - budget;
      if (extra.length > 0) timed.push(...await search(target, m, extra));
      const ranking = withLogged(timed, target, m);
      if (ranking[0]) hints.set(target.name, parseConfigName(ranking[0].config));
      return ranking;
    };
    for (const [bi, m] of buckets.entries()) {
      const winners: StageResult[] = [];
      const rankings: Ranked[][] = [];
      for (const [ti, target] of targets.entries()) {
        const ranking = await searchStage(target, ti, m, plan[bi][ti]);
        rankings.push(ranking);
        if (ranking.length === 0) break;
        winners.push({
          config: ranking[0].config,
          medianUs: ranking[0].medianUs,
          runnerUp: ranking[1]?.config ?? null,
          runnerUpMarginPct: ranking[1]
            ? round((ranking[1].medianUs / ranking[0].medianUs - 1) * 100)
            : null,
          trials: ranking.length,
          ...(ranking[0].noisy ? { noisy: true as const } : {}),
          tiers: stageTiers(ranking, target.shape, dtype, gpu.caps),
        });
      }
      if (winners.length < targets.length) {
        (outOfTime() ? skippedBuckets : failedBuckets).push(m);
        continue;
      }
      let fusedTotalUs = winners.reduce((sum, w) => sum + w.medianUs, 0);
      let unfused: BucketResult["unfused"] = null;
      if (options.unfused && !outOfTime()) {
        total += unfusedTargets.length * UNFUSED_CANDIDATES;
        const apart: string[] = [];
        for (const own of unfusedTargets) {
          const stageRanking = rankings[targets.findIndex((t) => t.stage === own.stage)];
          const top = stageRanking.slice(0, UNFUSED_CANDIDATES).map((r) =>
            parseConfigName(r.config)
          );
          const ranking = await search(own, m, top);
          if (ranking.length === 0) break;
          apart.push(ranking[0].config);
        }
        if (apart.length === unfusedTargets.length) {
          const whole = await timeProjection(m, winners.map((w) => w.config), apart);
          if (whole) {
            fusedTotalUs = whole.fusedUs;
            unfused = { medianUs: round(whole.unfusedUs), configs: apart };
          }
        }
      }
      bucketResults[String(m)] = {
        fused: winners[0],
        batched: winners[1] ?? null,
        fusedTotalUs: round(fusedTotalUs),
        unfused,
      };
    }

    /**
     * Times the whole projection fused (each stage's winner) and unfused (one GEMM per
     * projection) in one batch, so their ratio comes from one run; both are logged, and a
     * resumed run takes them from the log.
     *
     * @returns The two times, or undefined if they could not be taken.
     */
    async function timeProjection(m: number, together: string[], apart: string[]) {
      const fusedKey = together.join("+"), unfusedKey = apart.join("+");
      const f = log.find("projection:fused", m, fusedKey, GENERATOR_VERSION);
      const u = log.find("projection:unfused", m, unfusedKey, GENERATOR_VERSION);
      if (f && u) {
        resumed += 2;
        return f.outcome === "ok" && u.outcome === "ok"
          ? { fusedUs: f.medianUs!, unfusedUs: u.medianUs! }
          : undefined;
      }
      const kernels = async (names: string[], of: Target[]) => {
        const out: { kernel: CompiledKernel; target: Target }[] = [];
        for (const [i, name] of names.entries()) {
          const kernel = await prepare(of[i], parseConfigName(name));
          if (!kernel) return undefined;
          out.push({ kernel, target: of[i] });
        }
        return out;
      };
      const whole = await kernels(together, targets);
      const split = await kernels(apart, unfusedTargets);
      if (!whole || !split) return undefined;
      const failures = (reason: string) => [
        trial("projection:fused", m, fusedKey, "runtime", { reason }),
        trial("projection:unfused", m, unfusedKey, "runtime", { reason }),
      ];
      let timings: Timing[];
      try {
        timings = await onGpu(
          `the timing of the whole projection at m=${m}`,
          failures(`timed out after ${formatSeconds(limitMs / 1000)} s`),
          () => timeItems(device, [passOf(whole, m), passOf(split, m)], options.timing),
        );
      } catch (e) {
        const error = await lostOr(e);
        if (error instanceof DeviceLostError) throw error;
        const logged = error instanceof TrialTimeoutError && error.logged;
        for (const t of failures((error as Error).message)) await record(t, logged);
        return undefined;
      }
      const [fusedTiming, unfusedTiming] = timings.map((t) => settleTiming(t));
      await record(trial("projection:fused", m, fusedKey, "ok", fusedTiming));
      await record(trial("projection:unfused", m, unfusedKey, "ok", unfusedTiming));
      return { fusedUs: fusedTiming.medianUs, unfusedUs: unfusedTiming.medianUs };
    }

    /** A timed item that runs several kernels in one pass, each on its target's buffers. */
    function passOf(kernels: { kernel: CompiledKernel; target: Target }[], m: number) {
      const groups = kernels.map(({ target }) => bindGroups(target, m));
      return {
        encode: (pass: GPUComputePassEncoder, rep: number) => {
          kernels.forEach(({ kernel }, i) =>
            dispatchKernel(pass, kernel, groups[i][rep % groups[i].length], m)
          );
        },
      };
    }

    if (lostInfo) throw lostError();
    return {
      entry: {
        problem: storedProblem(spec, dtype),
        generatorVersion: GENERATOR_VERSION,
        tunedAt: new Date().toISOString(),
        buckets: bucketResults,
      },
      skippedBuckets,
      failedBuckets,
      outcomes,
      resumed,
    };
  }
}

/** A timed config of a ranking. */
interface Ranked {
  config: string;
  medianUs: number;
  noisy?: boolean;
}

/** The seed of one bucket's and stage's random stream. */
function streamSeed(seed: number, m: number, stage: number): number {
  return (seed ^ Math.imul(m, 0x9e3779b1) ^ Math.imul(stage + 1, 0x85ebca6b)) >>> 0;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function checkSize(gpu: Gpu, bytes: number, what: string): void {
  if (bytes > gpu.caps.maxStorageBinding) {
    throw new RangeError(
      `Cannot tune: ${what} needs ${bytes} bytes, over the device's storage binding limit of ${gpu.caps.maxStorageBinding}`,
    );
  }
}
