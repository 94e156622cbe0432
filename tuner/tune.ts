/**
 * The tuning loop for one problem and weight type: for each m bucket and each stage, order the
 * candidates with the strategy, check each against the reference before it is ever timed, time
 * the survivors in batches, and keep the fastest; then time the unfused baseline and the whole
 * projection both ways in one batch, so their ratio comes from one run.
 *
 * Every trial is appended to the log as it finishes; a trial already in the log (same
 * generator, target, bucket and config) is not run again, which is how a killed run resumes.
 *
 * @module
 */
import type { BucketResult, CacheEntry, StageResult } from "../cache/schema.ts";
import { GENERATOR_VERSION, storedProblem } from "../cache/schema.ts";
import type { KernelConfig } from "../kernels/config.ts";
import { configName, configProblem, parseConfigName } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { bytesPerElement, packWeights } from "../kernels/dtype.ts";
import type { CompiledKernel } from "../kernels/gpu.ts";
import {
  compileKernel,
  dispatchKernel,
  kernelBindGroup,
  paramsBuffer,
  storageBuffer,
} from "../kernels/gpu.ts";
import type { GemmShape, ProjectionSpec } from "../kernels/problem.ts";
import { batchedShape, fusedShape, fusedWidth, unfusedShapes } from "../kernels/problem.ts";
import type { SearchSpace } from "../kernels/space.ts";
import { enumerateSpace, suitsRows } from "../kernels/space.ts";
import type { Gpu } from "./gpu_device.ts";
import { GpuHeater } from "./heater.ts";
import { randomNonZero, seededRandom } from "./random.ts";
import type { Strategy } from "./strategy.ts";
import type { Timing, TimingOptions } from "./timing.ts";
import { timeItems } from "./timing.ts";
import type { Outcome, TrialLog } from "./trial_log.ts";
import { checkKernel, destroyCheckData, makeCheckData, shapeExtents } from "./verify.ts";

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
  onProgress?: (event: ProgressEvent) => void;
}

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

/** Runs the tuning loop. */
export async function tune(options: TuneOptions): Promise<TuneResult> {
  const { gpu, spec, dtype, log } = options;
  const device = gpu.device;
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
  const buckets = [...new Set(options.buckets)].sort((a, b) => a - b);
  const heater = options.heat ? new GpuHeater(device) : undefined;
  heater?.start();
  const maxM = buckets[buckets.length - 1];
  const space = enumerateSpace(options.space);

  // Buffers: X and the fused weight; the fused output is the batched stage's input.
  const fused = fusedShape(spec);
  const fusedExtent = shapeExtents(fused, maxM);
  checkSize(gpu, fusedExtent.y * 4, `the fused output at m=${maxM}`);
  const fusedBuffers: StageBuffers = {
    x: storageBuffer(device, randomNonZero(fusedExtent.x, random), "x"),
    ws: weightBuffers(
      device,
      randomNonZero(fusedExtent.w, random),
      dtype,
      options.rotateBytes,
      "fused w",
    ),
    y: storageBuffer(device, randomNonZero(fusedExtent.y, random), "fused y"),
  };
  const targets: Target[] = [{
    name: "fused",
    stage: "fused",
    shape: fused,
    buffers: fusedBuffers,
    kernels: new Map(),
    valid: [],
  }];
  const batched = batchedShape(spec);
  if (batched) {
    const extent = shapeExtents(batched, maxM);
    targets.push({
      name: "batched",
      stage: "batched",
      shape: batched,
      buffers: {
        x: fusedBuffers.y,
        ws: weightBuffers(
          device,
          randomNonZero(extent.w, random),
          dtype,
          options.rotateBytes,
          "batched w",
        ),
        y: device.createBuffer({
          size: extent.y * 4,
          usage: GPUBufferUsage.STORAGE,
          label: "batched y",
        }),
      },
      kernels: new Map(),
      valid: [],
    });
  }
  async function record(
    target: string,
    bucket: number | null,
    config: string,
    outcome: Outcome,
    extra: Partial<Timing> & { reason?: string },
  ) {
    if (bucket !== null || outcome !== "ok") outcomes[outcome]++; // a passed check is not a trial
    await log.append({
      generator: GENERATOR_VERSION,
      target,
      bucket,
      config,
      outcome,
      ...extra,
      at: new Date().toISOString(),
    });
  }
  // Configs the validator rejects are logged once with the reason and never counted as trials.
  const validate = async (target: Target) => {
    for (const config of space) {
      const name = configName(config);
      const invalid = configProblem(config, target.shape, dtype, gpu.caps);
      if (!invalid) target.valid.push(config);
      else if (!log.find(target.name, null, name, GENERATOR_VERSION)) {
        await record(target.name, null, name, "invalid", { reason: invalid });
      }
    }
  };

  for (const target of targets) await validate(target);
  const plan = buckets.map((m) =>
    targets.map((t) => Math.min(options.maxTrials, t.valid.filter((c) => suitsRows(c, m)).length))
  );
  let total = plan.flat().reduce((a, b) => a + b, 0);
  let done = 0;
  const report = (bucket: number, target: string, config: string, outcome: Outcome) => {
    done++;
    options.onProgress?.({ done, total, bucket, target, config, outcome });
  };

  /** Compiles and checks a config for a target once; failures are logged with their reason. */
  const prepare = async (
    target: Target,
    config: KernelConfig,
  ): Promise<CompiledKernel | undefined> => {
    const name = configName(config);
    const known = target.kernels.get(name);
    if (known) return "pipeline" in known ? known : undefined;
    const earlier = log.find(target.name, null, name, GENERATOR_VERSION);
    if (earlier && earlier.outcome !== "ok") {
      target.kernels.set(name, { outcome: earlier.outcome, reason: earlier.reason ?? "" });
      resumed++;
      return undefined;
    }
    const fail = async (outcome: Outcome, reason: string) => {
      target.kernels.set(name, { outcome, reason });
      await record(target.name, null, name, outcome, { reason });
      return undefined;
    };
    const invalid = configProblem(config, target.shape, dtype, gpu.caps);
    if (invalid) return await fail("invalid", invalid);
    let kernel: CompiledKernel;
    try {
      kernel = await (compiling.get(`${target.name}:${name}`) ??
        compileKernel(device, config, target.shape, dtype));
    } catch (e) {
      return await fail("compile", (e as Error).message);
    }
    for (const m of CHECK_ROWS) {
      const data = checkData(target, m);
      let mismatch: string | undefined;
      try {
        mismatch = await checkKernel(device, kernel, data);
      } catch (e) {
        return await fail("runtime", (e as Error).message);
      }
      if (mismatch) return await fail("verify", `at m=${m}: ${mismatch}`);
    }
    target.kernels.set(name, kernel);
    if (!earlier) await record(target.name, null, name, "ok", {});
    return kernel;
  };
  /** Compiles started ahead of prepare(), by target and config name. */
  const compiling = new Map<string, Promise<CompiledKernel>>();
  const compileAhead = (target: Target, config: KernelConfig) => {
    const key = `${target.name}:${configName(config)}`;
    if (target.kernels.has(configName(config)) || compiling.has(key)) return;
    if (configProblem(config, target.shape, dtype, gpu.caps)) return;
    const promise = compileKernel(device, config, target.shape, dtype);
    promise.catch(() => {}); // awaited (and its failure recorded) in prepare()
    compiling.set(key, promise);
  };
  const checkCache = new Map<string, ReturnType<typeof makeCheckData>>();
  const checkData = (target: Target, m: number) => {
    const key = `${target.name}:${m}`;
    let data = checkCache.get(key);
    if (!data) {
      data = makeCheckData(device, target.shape, dtype, m, options.seed + m);
      checkCache.set(key, data);
    }
    return data;
  };

  const params = new Map(buckets.map((m) => [m, paramsBuffer(device, m)]));
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
  ) =>
    await timeItems(
      device,
      kernels.map((kernel) => ({
        encode: (pass: GPUComputePassEncoder, rep: number) =>
          dispatchKernel(pass, kernel, groups[rep % groups.length], m),
      })),
      options.timing,
    );

  /** Times configs of a target at m (skipping those in the log) and returns all ok timings. */
  const search = async (
    target: Target,
    m: number,
    candidates: KernelConfig[],
    logTarget = target.name,
  ) => {
    const groups = bindGroups(target, m);
    const timed: { config: string; medianUs: number }[] = [];
    // Compile and check every candidate first, then time them back to back: the GPU lowers
    // its clocks while the CPU compiles, and a timing taken right after that reads 2-3x slow.
    const ready: CompiledKernel[] = [];
    // Start every compile at once (the driver may compile in parallel); prepare() awaits each.
    for (const config of candidates) {
      if (!log.find(logTarget, m, configName(config), GENERATOR_VERSION)) {
        compileAhead(target, config);
      }
    }
    for (const config of candidates) {
      const name = configName(config);
      const earlier = log.find(logTarget, m, name, GENERATOR_VERSION);
      if (earlier) {
        resumed++;
        report(m, logTarget, name, earlier.outcome);
        if (earlier.outcome === "ok") timed.push({ config: name, medianUs: earlier.medianUs! });
        continue;
      }
      if (outOfTime()) break;
      const kernel = await prepare(target, config);
      if (kernel) ready.push(kernel);
      else report(m, logTarget, name, (target.kernels.get(name) as { outcome: Outcome }).outcome);
    }
    for (let start = 0; start < ready.length; start += TIMING_CHUNK) {
      const chunk = ready.slice(start, start + TIMING_CHUNK);
      let timings: Timing[];
      try {
        timings = await timeKernels(chunk, groups, m);
      } catch (e) {
        for (const k of chunk) {
          await record(logTarget, m, k.name, "runtime", { reason: (e as Error).message });
          report(m, logTarget, k.name, "runtime");
        }
        continue;
      }
      for (const [i, kernel] of chunk.entries()) {
        let t = timings[i];
        if (t.spreadPct > 25 && t.clock === "gpu") {
          // Too noisy to trust: measure once more, with twice the repeats, and keep the tighter one.
          const again = (await timeItems(device, [{
            encode: (pass, rep) => dispatchKernel(pass, kernel, groups[rep % groups.length], m),
          }], { ...options.timing, repeats: options.timing.repeats * 2 }))[0];
          if (again.spreadPct < t.spreadPct) t = again;
        }
        await record(logTarget, m, kernel.name, "ok", t);
        report(m, logTarget, kernel.name, "ok");
        timed.push({ config: kernel.name, medianUs: t.medianUs });
      }
    }
    return timed.sort((a, b) => a.medianUs - b.medianUs);
  };

  const bucketResults: Record<string, BucketResult> = {};
  const skippedBuckets: number[] = [];
  // The unfused baseline: one GEMM per segment and per batched input, on the stage's buffers.
  const unfusedTargets: Target[] = unfusedShapes(spec).map(({ stage, shape }, i) => ({
    ...targets.find((t) => t.stage === stage)!,
    name: `unfused:${i}`,
    shape,
    kernels: new Map(),
    valid: [],
  }));
  for (const [bi, m] of buckets.entries()) {
    const winners: StageResult[] = [];
    const rankings: { config: string; medianUs: number }[][] = [];
    for (const [ti, target] of targets.entries()) {
      const candidates = options.strategy(target.valid.filter((c) => suitsRows(c, m)), random)
        .slice(0, plan[bi][ti]);
      const ranking = await search(target, m, candidates);
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
      });
    }
    if (winners.length < targets.length) {
      skippedBuckets.push(m);
      continue;
    }
    let fusedTotalUs = winners.reduce((sum, w) => sum + w.medianUs, 0);
    let unfused: BucketResult["unfused"] = null;
    if (options.unfused && !outOfTime()) {
      const apart: { kernel: CompiledKernel; target: Target }[] = [];
      total += unfusedTargets.length * UNFUSED_CANDIDATES;
      for (const own of unfusedTargets) {
        const stageRanking = rankings[targets.findIndex((t) => t.stage === own.stage)];
        const top = stageRanking.slice(0, UNFUSED_CANDIDATES).map((r) => parseConfigName(r.config));
        const ranking = await search(own, m, top);
        const kernel = ranking.length > 0
          ? await prepare(own, parseConfigName(ranking[0].config))
          : undefined;
        if (!kernel) break;
        apart.push({ kernel, target: own });
      }
      const together = await Promise.all(targets.map(async (target, i) => ({
        kernel: (await prepare(target, parseConfigName(winners[i].config)))!,
        target,
      })));
      if (apart.length === unfusedTargets.length) {
        const [whole, split] = await timeItems(
          device,
          [passOf(together, m), passOf(apart, m)],
          options.timing,
        );
        fusedTotalUs = whole.medianUs;
        unfused = { medianUs: round(split.medianUs), configs: apart.map((a) => a.kernel.name) };
      }
    }
    bucketResults[String(m)] = {
      fused: winners[0],
      batched: winners[1] ?? null,
      fusedTotalUs: round(fusedTotalUs),
      unfused,
    };
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

  await heater?.destroy();
  for (const data of checkCache.values()) destroyCheckData(data);
  for (const t of targets) {
    for (const w of t.buffers.ws) w.destroy();
    t.buffers.y.destroy();
  }
  fusedBuffers.x.destroy();
  for (const p of params.values()) p.destroy();

  return {
    entry: {
      problem: storedProblem(spec, dtype),
      generatorVersion: GENERATOR_VERSION,
      tunedAt: new Date().toISOString(),
      buckets: bucketResults,
    },
    skippedBuckets,
    outcomes,
    resumed,
  };
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

/** Bytes of weights a projection reads once (the decode floor's numerator). */
export function weightBytes(spec: ProjectionSpec, dtype: WeightDtype): number {
  const b = spec.batched;
  const batchedElems = b
    ? b.inputs.length * b.n * (spec.segments.find((s) => s.name === b.inputs[0])!.n)
    : 0;
  return (spec.k * fusedWidth(spec) + batchedElems) * bytesPerElement(dtype);
}
