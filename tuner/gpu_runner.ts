/**
 * The GPU runner: compiles, checks and times a batch of candidate configs of a target in one
 * call ({@linkcode GpuRunner.time}), and times the whole projection fused and unfused in one
 * batch ({@linkcode GpuRunner.timeProjection}). It owns what that takes on the device: the
 * targets' buffers, the checks (gpu_checks.ts), the compiles started ahead, the heater and the guard
 * (time limit and device loss, device_guard.ts).
 *
 * Every candidate is compiled and checked at m = 3 and m = 67 against the reference with its
 * output poisoned with NaN first (gpu_checks.ts), before it is ever timed; once per target, up
 * to {@linkcode TIMING_CHUNK} configs in one submit. Each trial goes to the
 * {@linkcode TrialBook} as it finishes, and a trial the log already has is not run again.
 * Configs are timed up to {@linkcode TIMING_CHUNK} in one submit, so a kill loses at most the
 * trials of the submit in flight.
 *
 * Failures are outcomes, not exceptions: a config the validator rejects ("invalid"), that does
 * not compile ("compile"), that computes wrong results ("verify"), or whose GPU work fails or
 * runs past the time limit ("runtime") is logged with its reason and the runner goes on. It
 * throws only for a lost device ({@linkcode DeviceLostError}). It uses WebGPU but no Deno API:
 * the time limit (the Deno watchdog) is injected.
 *
 * @module
 */
import type { KernelConfig } from "../kernels/config.ts";
import { configName, configProblem, parseConfigName } from "../kernels/config.ts";
import { suitsRows } from "../kernels/space.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import type { CompiledKernel, KernelBindGroup, WgslMutation } from "../kernels/gpu.ts";
import {
  compileKernel,
  dispatchKernel,
  kernelBindGroup,
  kernelSources,
  paramsBuffer,
} from "../kernels/gpu.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import type { TimeLimit } from "./device_guard.ts";
import { DeviceGuard } from "./device_guard.ts";
import type { Gpu } from "./gpu_device.ts";
import { DeviceLostError } from "./gpu_device.ts";
import type { ClockProbe } from "./clock_probe.ts";
import type { GpuHeater } from "./heater.ts";
import { clockKeepers } from "./heater.ts";
import type { Target } from "./targets.ts";
import { stageTargets, unfusedTargets } from "./targets.ts";
import type { TimedItem, Timing, TimingOptions } from "./timing.ts";
import { settleTiming, timeItems } from "./timing.ts";
import type { Ranked, TrialBook } from "./trial_book.ts";
import { newTrial } from "./trial_book.ts";
import type { Outcome, Trial } from "./trial_log.ts";
import { Failures, GpuChecks } from "./gpu_checks.ts";
import type { TimedEntry } from "./timed_chunks.ts";
import { ChunkTimer } from "./timed_chunks.ts";
import { formatSeconds, TrialTimeoutError } from "./watchdog.ts";

export { TIMING_CHUNK } from "./gpu_checks.ts";

/** Where a run's time went, milliseconds of wall time. */
export interface PhaseTimes {
  /** Waiting for pipelines (compiles run ahead, in parallel where the driver allows). */
  compileMs: number;
  /** Configs compiled in this run (each with its data-parallel part and reduction, if any). */
  compiles: number;
  /** Checking kernels against the float64 reference. */
  verifyMs: number;
  /** Timing kernels: GPU work and reading the timestamps back, settling the clock included. */
  timeMs: number;
}

/** What the clock probe did in a run (clock_probe.ts). */
export interface ClockReport {
  /** The probe's fastest steady time per run, microseconds: the clock timings were taken at. */
  probeUs: number;
  /** Warm-ups until the probe was steady (the first, and one before each re-measured submit). */
  settles: number;
  /** Their wall time, milliseconds. */
  settleMs: number;
}

/** What a {@linkcode GpuRunner} works with. */
export interface GpuRunnerOptions {
  /** The device and what kernels may use on it. */
  gpu: Gpu;
  /** The weight type of the kernels. */
  dtype: WeightDtype;
  /** Seeds the check data (the seed plus m). */
  seed: number;
  /** Warm-up runs and samples per timing. */
  timing: TimingOptions;
  /**
   * Keep the GPU busy between timings so its clocks stay up (see heater.ts), and watch its
   * clock with a probe kernel, measuring again what was timed while it moved (timing.ts).
   */
  heat: boolean;
  /** Time limit of one check or timing submit, milliseconds, as named in failed trials. */
  limitMs: number;
  /** Keeps that limit (the watchdog); none for no limit. */
  timeLimit?: TimeLimit;
  /** Where trials are looked up and recorded. */
  book: TrialBook;
  /** Whether the run's time budget is spent: no new config is started then. */
  outOfTime: () => boolean;
  /** Test-only: rewrites a config's WGSL before it is compiled (see kernels/gpu.ts). */
  mutateWgsl?: WgslMutation;
  /** Compiles on other threads ahead of this one's (compile_pool.ts's `CompilePool`). */
  ahead?: CompileAhead;
}

/** What the runner uses of a compile pool (compile_pool.ts). */
export interface CompileAhead {
  /** Compiles a source elsewhere first; awaited before each compile here. */
  warm(code: string, name: string): Promise<unknown>;
  /** Queues a source that will probably be compiled here later. */
  prefetch(code: string, name: string): void;
}

/** What the runner's targets are made from (see {@linkcode GpuRunner.start}). */
export interface RunnerSetup {
  /** The problem. */
  spec: ProjectionSpec;
  /** The valid configs of each stage (fused, then batched), from `planSpace` (plan.ts). */
  valid: KernelConfig[][];
  /** Stored configs of each stage the run may time beside its own (`StageSetup.stored`). */
  stored?: KernelConfig[][];
  /** The run's buckets, smallest first. */
  buckets: number[];
  /** Weight bytes to rotate through when timing, so small-m timings read from memory. */
  rotateBytes: number;
  /** The run's seeded generator, for the buffers' contents. */
  random: () => number;
}

/** Configs of one target to time at a bucket ({@linkcode GpuRunner.timeEach}). */
export interface TimeRequest {
  target: Target;
  candidates: KernelConfig[];
  /** The target the trials are logged under (default the target's name). */
  logTarget?: string;
  /** Time every candidate, even one the log has timed (a recheck, recheck.ts). */
  again?: boolean;
}

/**
 * The log's stage name and config key of the whole projection, fused (`together`, each stage's
 * config) and unfused (`apart`, one GEMM per projection), then fused with a rival's stage
 * configs where given: the one place they are built.
 */
function projectionKeys(together: string[], apart: string[], rival?: string[]): [string, string][] {
  return [
    ["projection:fused", together.join("+")],
    ["projection:unfused", apart.join("+")],
    ...(rival ? [["projection:fused", rival.join("+")] as [string, string]] : []),
  ];
}

/** Compiles, checks and times configs on the GPU (see the module documentation). */
export class GpuRunner {
  #options: GpuRunnerOptions;
  #device: GPUDevice;
  #book: TrialBook;
  #guard: DeviceGuard;
  #heater?: GpuHeater;
  #probe?: ClockProbe;
  #timing: TimingOptions;
  #timer: ChunkTimer;
  #buffers: GPUBuffer[] = [];
  #params = new Map<number, GPUBuffer>();
  #checks: GpuChecks;
  #failures: Failures;
  /** Compiles started ahead of prepare(), by target and config name. */
  #compiling = new Map<string, Promise<CompiledKernel>>();
  #targets: Target[] = [];
  #unfused: Target[] = [];
  #phases: PhaseTimes = { compileMs: 0, compiles: 0, verifyMs: 0, timeMs: 0 };

  /** Watches the device for its loss and makes the heater; nothing is submitted yet. */
  constructor(options: GpuRunnerOptions) {
    this.#options = options;
    this.#device = options.gpu.device;
    this.#book = options.book;
    this.#guard = new DeviceGuard(this.#device, options.book.path, options.timeLimit);
    this.#failures = new Failures(options.book, this.#guard);
    this.#checks = new GpuChecks(this.#device, {
      dtype: options.dtype,
      seed: options.seed,
      limitMs: options.limitMs,
      guard: this.#guard,
      book: options.book,
      failures: this.#failures,
    });
    ({ heater: this.#heater, probe: this.#probe } = clockKeepers(this.#device, options.heat));
    this.#timing = { ...options.timing, probe: this.#probe };
    this.#timer = new ChunkTimer(this.#device, {
      book: options.book,
      guard: this.#guard,
      timing: this.#timing,
      limitMs: options.limitMs,
      timed: (work) => this.#in("timeMs", work),
    });
  }

  /** What the clock probe did so far; undefined without one. */
  get clock(): ClockReport | undefined {
    const p = this.#probe;
    return p && { probeUs: p.referenceUs, settles: p.settles, settleMs: p.settleMs };
  }

  /**
   * Starts the heater and makes the targets and their buffers.
   *
   * @throws {RangeError} If an output at the largest bucket is over the storage binding limit.
   */
  start(setup: RunnerSetup): void {
    this.#heater?.start();
    const keep = (b: GPUBuffer) => (this.#buffers.push(b), b);
    const { gpu, dtype } = this.#options;
    const maxM = setup.buckets[setup.buckets.length - 1];
    this.#targets = stageTargets({ gpu, dtype, maxM, keep, ...setup });
    this.#params = new Map(setup.buckets.map((m) => [m, keep(paramsBuffer(this.#device, m))]));
    this.#unfused = unfusedTargets(setup.spec, this.#targets);
    this.#prefetch(setup.buckets).catch(() => {}); // only ever a head start
  }

  /**
   * Starts compiling configs of a target that the log has not timed at m, all at once, so that
   * a compile pool works on them together; {@linkcode time} then waits for them. The unfused
   * baseline times two configs per GEMM, so its compiles alone would keep two workers busy.
   *
   * @returns The configs the log has not timed at m.
   */
  compileAhead(target: Target, m: number, configs: KernelConfig[]): KernelConfig[] {
    const untimed = configs.filter((c) => !this.#book.earlier(target.name, m, configName(c)));
    for (const config of untimed) this.#compileAhead(target, config);
    return untimed;
  }

  /**
   * Queues every valid config of every stage on the compile pool that the log has not checked,
   * in the order the run is likely to want them: bucket by bucket, smallest first; each with its
   * data-parallel part and reduction, which the tuner compiles too.
   */
  async #prefetch(buckets: number[]): Promise<void> {
    const { ahead, dtype, mutateWgsl } = this.#options;
    if (!ahead) return;
    const queued = new Set<string>();
    for (const m of buckets) {
      for (const target of this.#targets) {
        for (const config of target.valid) {
          const name = configName(config), key = `${target.name}:${name}`;
          if (!suitsRows(config, m, target.splitRows) || queued.has(key)) continue;
          if (this.#book.find(target.name, null, name)) continue;
          queued.add(key);
          const sources = await kernelSources(
            this.#device,
            config,
            target.shape,
            dtype,
            mutateWgsl,
          );
          for (const part of [sources.main, sources.head, sources.reduce]) {
            if (part) ahead.prefetch(part.code, part.label);
          }
        }
      }
    }
  }

  /**
   * Milliseconds spent so far waiting for compiles, checking kernels against the reference, and
   * timing (on the GPU and reading the timestamps back).
   */
  get phases(): Readonly<PhaseTimes> {
    return this.#phases;
  }

  /** Runs `work` and adds its wall time to a phase. */
  async #in<T>(phase: keyof PhaseTimes, work: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await work();
    } finally {
      this.#phases[phase] += performance.now() - t0;
    }
  }

  /** The stages' targets: fused, and batched where the problem has one. */
  get targets(): readonly Target[] {
    return this.#targets;
  }

  /** The unfused baseline's targets: one GEMM per segment and per batched input. */
  get unfused(): readonly Target[] {
    return this.#unfused;
  }

  /** Throws the {@linkcode DeviceLostError} if the device is known to be lost. */
  throwIfLost(): void {
    this.#guard.throwIfLost();
  }

  /** Compiles and checks a config for a target once; failures are logged with their reason. */
  async prepare(target: Target, config: KernelConfig): Promise<CompiledKernel | undefined> {
    return (await this.prepareAll(target, [config]))[0];
  }

  /**
   * Compiles configs for a target (awaiting the compiles started ahead) and checks those not
   * checked before, up to {@linkcode TIMING_CHUNK} and both check sizes in one submit
   * (gpu_checks.ts); each config once per target. Failures are logged with their reason.
   *
   * @returns Per config, its checked kernel, or undefined where it failed.
   */
  async prepareAll(
    target: Target,
    configs: KernelConfig[],
  ): Promise<(CompiledKernel | undefined)[]> {
    const out: (CompiledKernel | undefined)[] = [];
    const unchecked: { at: number; kernel: CompiledKernel; logged: boolean }[] = [];
    for (const config of configs) {
      const got = await this.#compiled(target, config);
      if (got && !got.checked) unchecked.push({ at: out.length, ...got });
      out.push(got?.checked ? got.kernel : undefined);
    }
    if (unchecked.length === 0) return out;
    const passed = await this.#in(
      "verifyMs",
      () => this.#checks.check(target, unchecked.map((u) => u.kernel)),
    );
    for (const [i, u] of unchecked.entries()) {
      if (!passed[i]) continue;
      target.kernels.set(u.kernel.name, u.kernel);
      if (!u.logged) await this.#book.record(newTrial(target.name, null, u.kernel.name, "ok", {}));
      out[u.at] = u.kernel;
    }
    return out;
  }

  /**
   * A config's kernel for a target: checked already, or compiled and still to check (`logged`
   * when the log already has its passed check); undefined if it failed (logged).
   */
  async #compiled(
    target: Target,
    config: KernelConfig,
  ): Promise<{ kernel: CompiledKernel; checked: boolean; logged: boolean } | undefined> {
    const name = configName(config);
    const known = target.kernels.get(name);
    if (known) {
      return "pipeline" in known ? { kernel: known, checked: true, logged: true } : undefined;
    }
    const earlier = this.#book.earlier(target.name, null, name);
    if (earlier && earlier.outcome !== "ok") {
      target.kernels.set(name, { outcome: earlier.outcome, reason: earlier.reason ?? "" });
      this.#book.resumed++;
      return undefined;
    }
    const { dtype, gpu } = this.#options;
    const invalid = configProblem(config, target.shape, dtype, gpu.caps);
    if (invalid) return await this.#failures.fail(target, name, "invalid", invalid);
    try {
      const kernel = await this.#in(
        "compileMs",
        () => this.#compiling.get(`${target.name}:${name}`) ?? this.#compile(target, config),
      );
      return { kernel, checked: false, logged: earlier !== undefined };
    } catch (e) {
      return await this.#failures.failWith(target, name, "compile", e);
    }
  }

  /**
   * Times configs of a target at m (skipping those in the log) and returns all ok timings:
   * every candidate is compiled and checked first, then they are timed back to back.
   *
   * @param logTarget The target the trials are logged under.
   * @returns The timed configs, with those the log had, fastest first.
   */
  async time(
    target: Target,
    m: number,
    candidates: KernelConfig[],
    logTarget = target.name,
  ): Promise<Ranked[]> {
    return (await this.timeEach(m, [{ target, candidates, logTarget }]))[0];
  }

  /**
   * {@linkcode time} for several targets at once: their candidates share submits (the unfused
   * baseline's eight GEMMs of two configs each take two submits, not eight).
   *
   * @returns Per request, its timed configs with those the log had, fastest first.
   */
  async timeEach(m: number, requests: TimeRequest[]): Promise<Ranked[][]> {
    const timed = requests.map(() => [] as Ranked[]);
    // Compile and check every candidate first, then time them back to back: the GPU lowers
    // its clocks while the CPU compiles, and a timing taken right after that reads 2-3x slow.
    const fresh = requests.map((r, i) => this.#untimed(r, m, timed[i]));
    const sorted = () => timed.map((t) => t.sort((a, b) => a.medianUs - b.medianUs));
    if (this.#options.outOfTime()) return sorted();
    const ready: TimedEntry[] = [];
    for (const [i, { target, logTarget = target.name }] of requests.entries()) {
      const groups = this.#bindGroups(target, m);
      const kernels = await this.prepareAll(target, fresh[i]);
      for (const [j, kernel] of kernels.entries()) {
        if (kernel) ready.push({ logTarget, kernel, groups, into: timed[i] });
        else {
          const failed = target.kernels.get(configName(fresh[i][j])) as { outcome: Outcome };
          this.#book.report(m, logTarget, configName(fresh[i][j]), failed.outcome);
        }
      }
    }
    await this.#timer.timeAll(ready, m);
    return sorted();
  }

  /**
   * A request's candidates the log has not timed at m, their compiles started; what the log
   * has goes to `timed` (its ok timings) and is reported.
   */
  #untimed(request: TimeRequest, m: number, timed: Ranked[]): KernelConfig[] {
    const { target, candidates, logTarget = target.name, again = false } = request;
    const fresh: KernelConfig[] = [];
    for (const config of candidates) {
      const name = configName(config);
      const earlier = again ? undefined : this.#book.earlier(logTarget, m, name);
      if (!earlier) {
        // Start every compile at once (the driver may compile in parallel); awaited in turn.
        // What runs at once (Deno's wgpu compiles on this thread) counts as compile time too.
        const t0 = performance.now();
        this.#compileAhead(target, config);
        this.#phases.compileMs += performance.now() - t0;
        fresh.push(config);
        continue;
      }
      this.#book.resumed++;
      this.#book.report(m, logTarget, name, earlier.outcome);
      if (earlier.outcome === "ok") {
        timed.push({ config: name, medianUs: earlier.medianUs!, noisy: earlier.noisy });
      }
    }
    return fresh;
  }

  /**
   * The log's trials of the whole projection with these configs, fused and unfused
   * ({@linkcode timeProjection}'s), where both are logged; nothing is timed.
   */
  loggedProjection(m: number, together: string[], apart: string[]): [Trial, Trial] | undefined {
    const [f, u] = projectionKeys(together, apart).map(([stage, key]) =>
      this.#book.find(stage, m, key)
    );
    return f && u ? [f, u] : undefined;
  }

  /**
   * Times the whole projection fused (each stage's winner) and unfused (one GEMM per
   * projection) in one batch, so their ratio comes from one run; both are logged, and a
   * resumed run takes them from the log. With a rival (another pair of stage configs, such as
   * the cache's), that pair's whole projection is timed in the same batch too, and taken from
   * the log only where it was logged with that batch, so that the faster pair is chosen by
   * timings of one run.
   *
   * @param together The stages' winners, fused first.
   * @param apart The unfused targets' winners, in their order.
   * @param rival Other stage configs, fused first, to time beside `together`.
   * @returns The times (`rivalUs` where the rival passed its checks and was timed), or undefined
   * if they could not be taken.
   */
  async timeProjection(
    m: number,
    together: string[],
    apart: string[],
    rival?: string[],
  ): Promise<{ fusedUs: number; unfusedUs: number; rivalUs?: number } | undefined> {
    const book = this.#book;
    const resumed = this.#loggedBatch(m, together, apart, rival);
    if (resumed) return resumed.times;
    const rivalKernels = rival && await this.#kernelsOf(rival, this.#targets);
    const keys = projectionKeys(together, apart, rivalKernels ? rival : undefined);
    // A rival that fails its checks leaves the pair's own batch, which the log may hold.
    const logged = rivalKernels ? undefined : this.#loggedBatch(m, together, apart);
    if (logged) return logged.times;
    const whole = await this.#kernelsOf(together, this.#targets);
    const split = await this.#kernelsOf(apart, this.#unfused);
    if (!whole || !split) return undefined;
    const items = [whole, split, ...(rivalKernels ? [rivalKernels] : [])];
    const failures = (reason: string) =>
      keys.map(([stage, key]) => newTrial(stage, m, key, "runtime", { reason }));
    let timings: Timing[];
    try {
      timings = await this.#guard.run(
        `the timing of the whole projection at m=${m}`,
        failures(`timed out after ${formatSeconds(this.#options.limitMs / 1000)} s`),
        () =>
          this.#in(
            "timeMs",
            () => timeItems(this.#device, items.map((k) => this.#passOf(k, m)), this.#timing),
          ),
      );
    } catch (e) {
      const error = await this.#guard.lostOr(e);
      if (error instanceof DeviceLostError) throw error;
      const logged = error instanceof TrialTimeoutError && error.logged;
      for (const t of failures((error as Error).message)) await book.record(t, logged);
      return undefined;
    }
    const settled = timings.map((t) => settleTiming(t));
    for (const [i, [stage, key]] of keys.entries()) {
      await book.record(newTrial(stage, m, key, "ok", settled[i]));
    }
    const [fusedUs, unfusedUs, rivalUs] = settled.map((t) => t.medianUs);
    return { fusedUs, unfusedUs, ...(rivalKernels ? { rivalUs } : {}) };
  }

  /**
   * A batch of {@linkcode timeProjection} as the log has it: the pair's and the unfused
   * projection's latest trials, and with a rival its latest trial where that is no older than
   * both (they were timed in one batch, the rival logged last); counted as resumed.
   *
   * @returns The batch's times (undefined inside where a trial failed), or undefined if the log
   * does not hold it.
   */
  #loggedBatch(
    m: number,
    together: string[],
    apart: string[],
    rival?: string[],
  ): { times: { fusedUs: number; unfusedUs: number; rivalUs?: number } | undefined } | undefined {
    const logged = this.loggedProjection(m, together, apart);
    if (!logged) return undefined;
    const [f, u] = logged;
    const rivalKey = projectionKeys(together, apart, rival)[2];
    const r = rivalKey && this.#book.find(rivalKey[0], m, rivalKey[1]);
    if (rival && !(r && r.at >= f.at && r.at >= u.at)) return undefined;
    this.#book.resumed += r ? 3 : 2;
    if (f.outcome !== "ok" || u.outcome !== "ok") return { times: undefined };
    const rivalUs = r?.outcome === "ok" ? { rivalUs: r.medianUs! } : {};
    return { times: { fusedUs: f.medianUs!, unfusedUs: u.medianUs!, ...rivalUs } };
  }

  /** Stops the watchdog and the heater and frees every buffer. */
  async destroy(): Promise<void> {
    this.#guard.close();
    await this.#heater?.destroy().catch(() => {});
    this.#probe?.destroy();
    this.#checks.destroy();
    for (const b of this.#buffers) b.destroy();
  }

  #compile(target: Target, config: KernelConfig): Promise<CompiledKernel> {
    const { dtype, mutateWgsl, ahead } = this.#options;
    this.#phases.compiles++;
    return compileKernel(this.#device, config, target.shape, dtype, mutateWgsl, ahead?.warm);
  }

  #compileAhead(target: Target, config: KernelConfig): void {
    const key = `${target.name}:${configName(config)}`;
    if (target.kernels.has(configName(config)) || this.#compiling.has(key)) return;
    const { dtype, gpu } = this.#options;
    if (configProblem(config, target.shape, dtype, gpu.caps)) return;
    const promise = this.#compile(target, config);
    promise.catch(() => {}); // awaited (and its failure recorded) in prepare()
    this.#compiling.set(key, promise);
  }

  /** A bind group per weight copy of the target, at m. */
  #bindGroups(target: Target, m: number): KernelBindGroup[] {
    const { x, y, scratch } = target.buffers;
    return target.buffers.ws.map((w) =>
      kernelBindGroup(this.#device, { params: this.#params.get(m)!, x, w, y, scratch })
    );
  }

  /** The kernels of configs, the i-th for the i-th target; undefined if any fails its check. */
  async #kernelsOf(
    names: string[],
    of: readonly Target[],
  ): Promise<{ kernel: CompiledKernel; target: Target }[] | undefined> {
    const out: { kernel: CompiledKernel; target: Target }[] = [];
    for (const [i, name] of names.entries()) {
      const kernel = await this.prepare(of[i], parseConfigName(name));
      if (!kernel) return undefined;
      out.push({ kernel, target: of[i] });
    }
    return out;
  }

  /** A timed item that runs several kernels in one pass, each on its target's buffers. */
  #passOf(kernels: { kernel: CompiledKernel; target: Target }[], m: number): TimedItem {
    const groups = kernels.map(({ target }) => this.#bindGroups(target, m));
    return {
      encode: (pass: GPUComputePassEncoder, rep: number) => {
        kernels.forEach(({ kernel }, i) =>
          dispatchKernel(pass, kernel, groups[i][rep % groups[i].length], m)
        );
      },
    };
  }
}
