/**
 * The tuning loop for one problem and weight type: for each m bucket and each stage, a
 * strategy (strategies.ts) asks for candidates and is told every result (`runSearch`,
 * search.ts), the GPU runner (gpu_runner.ts) checks each against the reference before it is
 * ever timed and times the survivors in batches, and the fastest is kept; then the unfused
 * baseline and the whole projection both ways are timed in one batch, so their ratio comes from
 * one run. Before that, a stage's fastest configs whose timings come from different runs are
 * timed again together (recheck.ts). A time limit is spread over the searches by their planned
 * trials (time_share.ts), so that the first bucket cannot take it all.
 *
 * Every trial is appended to the log as it finishes (trial_book.ts); a trial already in the log
 * (same generator, target, bucket and config) is not run again, which is how a killed run
 * resumes. The one-pass timings of the whole projection, fused and unfused, are trials too
 * ("projection:fused" and "projection:unfused").
 *
 * Failures are outcomes, not exceptions (see gpu_runner.ts). What stops a run: bad input, found
 * before anything is written (`TuneInputError`, from plan.ts), and a lost device
 * (`DeviceLostError`, gpu_device.ts), after which the log holds every trial that finished.
 *
 * The loop calls no Deno API itself. The one Deno-bound part it makes is the time limit's
 * watchdog (a worker that writes the log, watchdog.ts), which the runner takes as a `TimeLimit`.
 *
 * @module
 */
import type { BucketResult, CacheEntry, StageResult } from "../cache/schema.ts";
import { GENERATOR_VERSION, storedProblem } from "../cache/schema.ts";
import type { KernelConfig } from "../kernels/config.ts";
import { defaultConfig } from "../kernels/defaults.ts";
import { configName, parseConfigName } from "../kernels/config.ts";
import type { Precision, WeightDtype } from "../kernels/dtype.ts";
import type { WgslMutation } from "../kernels/gpu.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import type { SearchSpace } from "../kernels/space.ts";
import { suitsRows } from "../kernels/space.ts";
import type { TrialBudget } from "./budget_plan.ts";
import { budgetPlan } from "./budget_plan.ts";
import { CROSS_CHECK_PASSES, neighbourWinners } from "./cross_check.ts";
import type { Gpu } from "./gpu_device.ts";
import type { CompileAhead } from "./gpu_runner.ts";
import { GpuRunner, TIMING_CHUNK } from "./gpu_runner.ts";
import type { ClockReport, PhaseTimes } from "./gpu_runner.ts";
import { planSpace } from "./plan.ts";
import { seededRandom } from "./random.ts";
import type { Evaluate, Strategy } from "./search.ts";
import { runSearch } from "./search.ts";
import type { Target } from "./targets.ts";
import { recheckNames, recheckTarget, reranked, withRecheckTimes } from "./recheck.ts";
import { stageTiers, withTierCandidates } from "./tiers.ts";
import { BASELINE_SHARE, FINISH_SHARE, timeShareMs } from "./time_share.ts";
import type { TimingOptions } from "./timing.ts";
import type { ProgressEvent, Ranked } from "./trial_book.ts";
import { newTrial, TrialBook } from "./trial_book.ts";
import type { Outcome, TimedTrial, TrialLog } from "./trial_log.ts";
import { isTimed } from "./trial_log.ts";
import { Watchdog } from "./watchdog.ts";

export type { ProgressEvent } from "./trial_book.ts";

/** Everything one tuning run needs. */
export interface TuneOptions {
  gpu: Gpu;
  spec: ProjectionSpec;
  dtype: WeightDtype;
  /** "fast" also searches f16-math configs (f16 weights only); default "exact". */
  precision?: Precision;
  buckets: number[];
  space: SearchSpace;
  strategy: Strategy;
  /**
   * Most configs timed per stage and bucket: a count, or a share of the stage's valid configs
   * at the bucket, the first bucket more (see budget_plan.ts).
   */
  maxTrials: TrialBudget;
  /**
   * Stop starting new trials after this many seconds. The searches share the first 80% by their
   * planned trials (time_share.ts), each bucket's unfused candidates checked after its search; the
   * cross-check and the recheck have what is left up to 90%, the unfused baseline's one-pass
   * batches the rest.
   */
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
   * The cache's buckets of this problem, weight type and precision, of this generator: with
   * `unfused`, each bucket's stored pair of stage configs, where it is not this run's, is timed
   * whole in the batch that times this run's winners whole, and the faster pair is the bucket's
   * result ({@linkcode TuneResult.judged}).
   */
  stored?: Record<string, BucketResult>;
  /**
   * Time limit of one check or timing submit, milliseconds (default 60 000); past it the
   * trials of the submit fail with "timed out after N s". `Infinity` for none.
   */
  trialTimeoutMs?: number;
  /**
   * Test-only: the clock, milliseconds, that the time limit and its shares read (default
   * `performance.now`).
   */
  clock?: () => number;
  /** Test-only: rewrites a config's WGSL before it is compiled (see kernels/gpu.ts). */
  mutateWgsl?: WgslMutation;
  /**
   * Compiles each kernel elsewhere ahead of the tuner's own compile, filling the driver's
   * shader cache: a `CompilePool` (compile_pool.ts), which the caller makes and closes.
   */
  ahead?: CompileAhead;
  onProgress?: (event: ProgressEvent) => void;
}

/** The default of {@linkcode TuneOptions.trialTimeoutMs}. */
export const DEFAULT_TRIAL_TIMEOUT_MS = 60_000;

/** What a run produced: the cache entry and what it could not do. */
export interface TuneResult {
  entry: CacheEntry;
  /**
   * The stored buckets ({@linkcode TuneOptions.stored}) that this run timed in one batch beside
   * its own winners, by bucket: `entry`'s bucket there is the faster of the two pairs by timings
   * of this run, so it replaces that stored bucket whatever the two runs' totals read.
   */
  judged: Record<string, BucketResult>;
  /** Buckets left untuned because the budget ran out. */
  skippedBuckets: number[];
  /**
   * Buckets tuned without their one-pass batch (with `unfused`): the time limit ran out before it
   * and the log had none, so they have no unfused baseline and no stored pair was timed beside
   * them. A rerun times it.
   */
  unbatchedBuckets: number[];
  /** Buckets left untuned because every candidate of a stage failed (see the log). */
  failedBuckets: number[];
  /** Count of trials by outcome in this run (resumed trials not counted). */
  outcomes: Record<Outcome, number>;
  resumed: number;
  /** Where the run's wall time went; `totalMs` also counts what none of the phases did. */
  phases: RunPhases;
  /** What the clock probe did; undefined without one (no heat, or no timestamps). */
  clock?: ClockReport;
}

/** Where a run's wall time went, milliseconds (the runner's phases and the loop's own). */
export interface RunPhases extends PhaseTimes {
  /** Making the targets' buffers and logging the configs the validator rejects. */
  setupMs: number;
  /** The strategies' own work (asking and being told). */
  searchMs: number;
  /** Writing trials to the log. */
  logMs: number;
  /** The whole run. */
  totalMs: number;
}

/** The unfused baseline tries this many of the stage's fastest configs on each of its GEMMs. */
const UNFUSED_CANDIDATES = 2;

/** One run's parts, shared by the loop's steps. */
interface Run {
  options: TuneOptions;
  runner: GpuRunner;
  book: TrialBook;
  outOfTime: () => boolean;
  /** The clock of the time limit, milliseconds. */
  clock: () => number;
  /** When the run started (`performance.now()`). */
  started: number;
  /** When the run started, as its trials' `at` stamps read (ISO 8601). */
  at: string;
  /** When (`clock()`) the searches' time is up: the rest is for the steps after them. */
  searchEnd: number;
  /**
   * Whether the cross-check and the recheck may start no more work: past the limit, or into the
   * time kept for the one-pass batches of the unfused baseline.
   */
  pastChecks: () => boolean;
  /** The winner of the bucket before, per stage: the strategy's hint at the next bucket. */
  hints: Map<string, KernelConfig>;
  /** Wall time of setup and of the strategies' own work, milliseconds. */
  setupMs: number;
  searchMs: number;
}

/**
 * Runs the tuning loop.
 *
 * @throws {TuneInputError} (plan.ts) Before anything is written, for inputs it cannot tune.
 * @throws {DeviceLostError} If the device is lost; the log keeps the trials that finished.
 */
export async function tune(options: TuneOptions): Promise<TuneResult> {
  const { gpu, spec, dtype, log } = options;
  const buckets = [...new Set(options.buckets)].sort((a, b) => a - b);
  const stagePlans = planSpace(spec, dtype, buckets, options.space, gpu.caps, options.precision);
  const random = seededRandom(options.seed);
  const started = performance.now();
  const at = new Date().toISOString();
  const clock = options.clock ?? (() => performance.now());
  const clockStart = clock();
  const outOfTime = () => (clock() - clockStart) / 1000 > options.maxSeconds;
  const limitMs = options.trialTimeoutMs ?? DEFAULT_TRIAL_TIMEOUT_MS;
  const book = new TrialBook(log, limitMs, options.onProgress);
  const runner = new GpuRunner({
    gpu,
    dtype,
    seed: options.seed,
    timing: options.timing,
    heat: options.heat,
    limitMs,
    timeLimit: Number.isFinite(limitMs) ? new Watchdog(limitMs, log.path) : undefined,
    book,
    outOfTime,
    mutateWgsl: options.mutateWgsl,
    ahead: options.ahead,
  });
  try {
    const valid = stagePlans.map((p) => p.valid);
    const stored = storedConfigs(options.stored);
    runner.start({ spec, valid, stored, buckets, rotateBytes: options.rotateBytes, random });
    const run: Run = {
      options,
      runner,
      book,
      outOfTime,
      clock,
      started,
      at,
      searchEnd: clockStart + options.maxSeconds * 1000 * (1 - FINISH_SHARE),
      pastChecks: () =>
        outOfTime() || clock() > clockStart + options.maxSeconds * 1000 * (1 - BASELINE_SHARE),
      hints: new Map(),
      setupMs: 0,
      searchMs: 0,
    };
    // Configs the validator rejects are logged once with the reason and never counted as trials.
    for (const [i, target] of runner.targets.entries()) {
      await logInvalid(book, target, stagePlans[i].invalid);
    }
    run.setupMs = performance.now() - started;
    return await tuneBuckets(run, buckets);
  } finally {
    await runner.destroy();
  }
}

/** Logs the configs the validator rejects for a target, each once, with the reason. */
async function logInvalid(book: TrialBook, target: Target, invalid: Map<string, string>) {
  for (const [name, reason] of invalid) {
    if (!book.find(target.name, null, name)) {
      await book.record(newTrial(target.name, null, name, "invalid", { reason }));
    }
  }
}

/**
 * Tunes every bucket, smallest first, and makes the run's result: each stage searched at each
 * bucket, then each bucket's stages given the winners of the buckets either side
 * ({@linkcode crossCheck}), then the fastest timed again where they mix runs ({@linkcode recheck}),
 * then each bucket's unfused baseline.
 */
async function tuneBuckets(run: Run, buckets: number[]): Promise<TuneResult> {
  const { options, runner, book } = run;
  const plan = budgetPlan(
    options.maxTrials,
    buckets.map((m) =>
      runner.targets.map((t) => t.valid.filter((c) => suitsRows(c, m, t.splitRows)).length)
    ),
  );
  book.total = plan.flat().reduce((a, b) => a + b, 0);
  const rankings: Ranked[][][] = [];
  for (const [bi, m] of buckets.entries()) {
    rankings.push(await searchBucket(run, m, plan, bi));
    // The bucket's unfused candidates compiled and checked now, in the searches' time. Left to
    // the end, they took the time of the one-pass batches on large problems (tp1 on the H100:
    // 12-20 s a run). Candidates the cross-check or the recheck bring in are checked below.
    if (options.unfused && !run.outOfTime()) await prepareUnfused(run, [m], [rankings[bi]]);
  }
  await crossCheck(run, buckets, rankings);
  await recheck(run, buckets, rankings);
  if (options.unfused && !run.outOfTime()) await prepareUnfused(run, buckets, rankings);
  const bucketResults: Record<string, BucketResult> = {};
  const judged: Record<string, BucketResult> = {};
  const skippedBuckets: number[] = [];
  const failedBuckets: number[] = [];
  const unbatchedBuckets: number[] = [];
  for (const [bi, m] of buckets.entries()) {
    const result = await finishBucket(run, m, rankings[bi]);
    if (result) bucketResults[String(m)] = result.bucket;
    else (run.outOfTime() ? skippedBuckets : failedBuckets).push(m);
    if (result?.judged) judged[String(m)] = result.judged;
    if (result?.unbatched) unbatchedBuckets.push(m);
  }
  runner.throwIfLost();
  return {
    entry: {
      problem: storedProblem(options.spec, options.dtype),
      generatorVersion: GENERATOR_VERSION,
      tunedAt: new Date().toISOString(),
      buckets: bucketResults,
    },
    judged,
    skippedBuckets,
    unbatchedBuckets,
    failedBuckets,
    outcomes: book.outcomes,
    resumed: book.resumed,
    phases: {
      ...runner.phases,
      setupMs: run.setupMs,
      searchMs: run.searchMs,
      logMs: book.logMs,
      totalMs: performance.now() - run.started,
    },
    clock: runner.clock,
  };
}

/**
 * Searches each stage at m, in order, until one finds nothing; each within its share of the
 * search time left (time_share.ts).
 *
 * @param plan The trial budget of each bucket's stages, buckets in search order.
 * @param bi This bucket's index in `plan`.
 * @returns Each stage's ranking, fastest first; shorter than the stages if one found nothing.
 */
async function searchBucket(
  run: Run,
  m: number,
  plan: number[][],
  bi: number,
): Promise<Ranked[][]> {
  const rankings: Ranked[][] = [];
  for (const [ti, target] of run.runner.targets.entries()) {
    // This search's planned trials, then those of every search after it.
    const planned = [...plan[bi].slice(ti), ...plan.slice(bi + 1).flat()];
    const now = run.clock();
    const deadline = now + timeShareMs(run.searchEnd - now, planned);
    const ranking = await searchStage(run, target, ti, m, plan[bi][ti], deadline);
    rankings.push(ranking);
    if (ranking.length === 0) break;
  }
  return rankings;
}

/**
 * Times, at each bucket and stage, the winners of the buckets either side that its search did
 * not try, and their forms scaled to its rows (cross_check.ts), and ranks them in; again while
 * that changes a winner, so that a rerun from the log
 * finds nothing left to time. The search runs smallest bucket first and starts from the winner
 * below; the winner above is only known afterwards. Measured on the H100 (tp4 f16): the batched
 * stage at m = 4096 settled on a tile config 16% slower than the outer config that won at
 * m = 8192, never tried at 4096.
 */
async function crossCheck(run: Run, buckets: number[], rankings: Ranked[][][]): Promise<void> {
  // What each bucket and stage asked for, timed or failed: a failed config is not asked again.
  const asked = rankings.map((stages) => stages.map((r) => new Set(r.map((x) => x.config))));
  for (let pass = 0; pass < CROSS_CHECK_PASSES; pass++) {
    let timed = 0;
    for (const bi of buckets.keys()) {
      timed += await crossCheckBucket(run, buckets, rankings, asked, bi);
    }
    if (timed === 0) return;
  }
}

/**
 * Times again, in this run and in shared submits, each bucket's fastest configs of a stage where
 * their timings come from different runs, and ranks them by those times (recheck.ts).
 */
async function recheck(run: Run, buckets: number[], rankings: Ranked[][][]): Promise<void> {
  const { runner, book } = run;
  for (const [bi, m] of buckets.entries()) {
    if (run.pastChecks()) return;
    const asked = runner.targets.map((target, ti) => {
      const thisRun = (config: string) => (book.find(target.name, m, config)?.at ?? "") >= run.at;
      return { target, ti, names: recheckNames(rankings[bi][ti] ?? [], thisRun) };
    }).filter((a) => a.names.length > 0);
    if (asked.length === 0) continue;
    book.total += asked.reduce((n, a) => n + a.names.length, 0);
    const got = await runner.timeEach(
      m,
      asked.map(({ target, names }) => ({
        target,
        candidates: names.map(parseConfigName),
        logTarget: recheckTarget(target.name),
        again: true,
      })),
    );
    for (const [i, { ti, names }] of asked.entries()) {
      rankings[bi][ti] = reranked(rankings[bi][ti], names, got[i]);
    }
  }
}

/** One bucket's part of a {@linkcode crossCheck} pass; how many configs it timed. */
async function crossCheckBucket(
  run: Run,
  buckets: number[],
  rankings: Ranked[][][],
  asked: Set<string>[][],
  bi: number,
): Promise<number> {
  const { runner, book } = run;
  const m = buckets[bi];
  let timed = 0;
  for (const [ti, target] of runner.targets.entries()) {
    const ranking = rankings[bi][ti];
    if (!ranking?.length || run.pastChecks()) continue;
    const tried = asked[bi][ti];
    const valid = new Map(
      target.valid.filter((c) => suitsRows(c, m, target.splitRows)).map((c) => [configName(c), c]),
    );
    const either = [bi - 1, bi + 1].filter((j) => j >= 0 && j < buckets.length)
      .map((j) => ({ m: buckets[j], winner: rankings[j]?.[ti]?.[0]?.config }));
    const names = neighbourWinners(m, either, new Set(valid.keys()), tried);
    const fresh = names.map((name) => valid.get(name)!);
    if (fresh.length === 0) continue;
    book.total += fresh.length;
    timed += fresh.length;
    for (const c of fresh) tried.add(configName(c));
    ranking.push(...await runner.time(target, m, fresh));
    ranking.sort((a, b) => a.medianUs - b.medianUs);
  }
  return timed;
}

/** The configs an unfused GEMM tries at a bucket: its stage's fastest, from that bucket's rankings. */
function unfusedCandidates(runner: GpuRunner, own: Target, rankings: Ranked[][]): KernelConfig[] {
  const ranking = rankings[runner.targets.findIndex((t) => t.stage === own.stage)] ?? [];
  return ranking.slice(0, UNFUSED_CANDIDATES).map((r) => parseConfigName(r.config));
}

/**
 * Compiles (all at once) and checks every bucket's unfused candidates
 * ({@linkcode unfusedBaseline}) that the log has not timed, before any of them is timed: a check
 * between two timings is CPU time in which the GPU's clock falls, and the next timing waits for
 * the clock probe to settle again (seconds per GEMM on the H100).
 */
async function prepareUnfused(run: Run, buckets: number[], rankings: Ranked[][][]) {
  const { runner } = run;
  const todo = runner.unfused.map(() => new Map<string, KernelConfig>());
  // GEMM by GEMM, so that the first GEMM's checks start while the pool compiles the others.
  for (const [ui, own] of runner.unfused.entries()) {
    for (const [bi, m] of buckets.entries()) {
      const untimed = runner.compileAhead(own, m, unfusedCandidates(runner, own, rankings[bi]));
      for (const c of untimed) todo[ui].set(configName(c), c);
    }
  }
  for (const [ui, own] of runner.unfused.entries()) {
    await runner.prepareAll(own, [...todo[ui].values()]);
  }
}

/**
 * Makes one bucket's result from its stages' rankings, with the unfused baseline. Where the
 * cache stores another pair at m, that pair is timed whole in the baseline's batch, and the
 * faster of the two pairs is the result.
 *
 * @returns The bucket's result and the stored bucket it was timed against, if it was; undefined
 * if a stage has no winner.
 */
async function finishBucket(
  run: Run,
  m: number,
  rankings: Ranked[][],
): Promise<{ bucket: BucketResult; judged?: BucketResult; unbatched?: true } | undefined> {
  const { options, runner } = run;
  let winners: StageResult[] = [];
  const kept = options.stored?.[String(m)];
  for (const [ti, target] of runner.targets.entries()) {
    if (!rankings[ti]?.length) return undefined;
    const keptStage = ti === 0 ? kept?.fused : kept?.batched;
    winners.push(stageResult(rankings[ti], target, options, keptStage ?? undefined));
  }
  let fusedTotalUs = winners.reduce((sum, w) => sum + w.medianUs, 0);
  let unfused: BucketResult["unfused"] = null;
  let judged: BucketResult | undefined;
  let unbatched = false;
  if (options.unfused) {
    const stored = storedRival(kept, winners);
    // Out of time, the log may still hold the baseline (a resumed run): taken, nothing timed.
    const late = run.outOfTime();
    const whole = late
      ? loggedBaseline(run, m, rankings, winners)
      : await unfusedBaseline(run, m, rankings, winners, stored && stagesOf(stored));
    unbatched = !whole && (late || run.outOfTime());
    if (whole) {
      fusedTotalUs = whole.fusedUs;
      unfused = { medianUs: round(whole.unfusedUs), configs: whole.apart };
      if (stored && whole.rivalUs !== undefined) {
        judged = stored;
        // A tie, to the nanosecond the cache keeps, keeps the stored pair (H100, tp4 bf16 m = 4:
        // both read 13.760 us in one batch, and the run's pair read 2.7% slower in the bench).
        if (round(whole.rivalUs) <= round(whole.fusedUs)) {
          winners = [stored.fused, ...(stored.batched ? [stored.batched] : [])];
          fusedTotalUs = whole.rivalUs;
        }
      }
    }
  }
  const bucket = {
    fused: winners[0],
    batched: winners[1] ?? null,
    fusedTotalUs: round(fusedTotalUs),
    unfused,
  };
  return { bucket, ...(judged ? { judged } : {}), ...(unbatched ? { unbatched: true } : {}) };
}

/**
 * The whole projection's one-pass times at a bucket: fused, unfused (with its GEMMs' configs)
 * and, where one was timed beside them, the stored rival pair's.
 */
interface WholeTimes {
  fusedUs: number;
  unfusedUs: number;
  rivalUs?: number;
  apart: string[];
}

/**
 * The cache's stored stage configs, fused then batched: the one-pass batches time them beside
 * the run's winners, so the buffers are made for them too (a stored split-K pair needs scratch
 * that a space of GEMVs alone would not make: H100, 2026-12-08, every such batch failed).
 */
function storedConfigs(stored?: Record<string, BucketResult>): KernelConfig[][] {
  const buckets = Object.values(stored ?? {});
  return [
    buckets.map((b) => parseConfigName(b.fused.config)),
    buckets.flatMap((b) => (b.batched ? [parseConfigName(b.batched.config)] : [])),
  ];
}

/** A bucket's stage configs, fused first. */
function stagesOf(b: BucketResult): string[] {
  return [b.fused.config, ...(b.batched ? [b.batched.config] : [])];
}

/**
 * The stored bucket to time against this run's winners: one with other stage configs, as many
 * as this run's stages, whose plan is its fused pair (a stored bucket that runs its unfused
 * baseline is left to the cache's merge, which weighs that plan).
 */
function storedRival(
  stored: BucketResult | undefined,
  winners: StageResult[],
): BucketResult | undefined {
  if (!stored || (stored.unfused?.medianUs ?? Infinity) < stored.fusedTotalUs) return undefined;
  const configs = stagesOf(stored);
  if (configs.length !== winners.length) return undefined;
  return configs.every((c, i) => c === winners[i].config) ? undefined : stored;
}

/**
 * A stage's winner, runner-up and tiers, from its ranking (fastest first, not empty). The
 * cache's stage at the bucket (`kept`: its winner and tiers, timed on this device) competes for
 * the tiers too, so that a run whose space holds no config of a tier (a space of subgroup GEMVs
 * only) keeps the tier the cache had instead of leaving devices of that tier without a config.
 */
function stageResult(
  ranking: Ranked[],
  target: Target,
  options: TuneOptions,
  kept?: StageResult,
): StageResult {
  const known = kept ? [kept, ...(kept.tiers ?? [])] : [];
  return {
    config: ranking[0].config,
    medianUs: ranking[0].medianUs,
    runnerUp: ranking[1]?.config ?? null,
    runnerUpMarginPct: ranking[1]
      ? round((ranking[1].medianUs / ranking[0].medianUs - 1) * 100)
      : null,
    trials: ranking.length,
    ...(ranking[0].noisy ? { noisy: true as const } : {}),
    // The winner by name: after a recheck it need not be the fastest reading in the ranking.
    tiers: stageTiers(
      [...ranking, ...known],
      target.shape,
      options.dtype,
      options.gpu.caps,
      ranking[0].config,
    ),
  };
}

/**
 * Searches one stage at m with the strategy, then times one config of each device tier the
 * search did not reach, and ranks them with what the log knows.
 *
 * @param deadline When (`run.clock()`) the search stops asking for more trials; its first
 * batch is always timed, so that every bucket has a search of its own while the run has time.
 */
async function searchStage(
  run: Run,
  target: Target,
  ti: number,
  m: number,
  budget: number,
  deadline: number,
): Promise<Ranked[]> {
  const { options, runner, book } = run;
  const valid = target.valid.filter((c) => suitsRows(c, m, target.splitRows));
  const hint = run.hints.get(target.name);
  const context = {
    candidates: valid,
    hints: hint ? [hint] : [],
    // Each bucket and stage draws from a stream of its own: adding buckets to a rerun
    // leaves the candidates of the others as they were (and their trials resumed).
    random: seededRandom(streamSeed(options.seed, m, ti)),
  };
  const timed: Ranked[] = [];
  let evaluating = 0;
  let batches = 0;
  const evaluate: Evaluate = async (configs) => {
    if (run.outOfTime() || (batches++ > 0 && run.clock() > deadline)) return [];
    const t0 = performance.now();
    const got = await runner.time(target, m, configs);
    evaluating += performance.now() - t0;
    timed.push(...got);
    return configs.map((config) => {
      const name = configName(config);
      return { config, name, medianUs: got.find((r) => r.config === name)?.medianUs ?? null };
    });
  };
  const t0 = performance.now();
  const done = await runSearch(options.strategy, context, evaluate, budget, TIMING_CHUNK);
  run.searchMs += performance.now() - t0 - evaluating;
  const tried = done.map((e) => e.config);
  const { dtype, gpu } = options;
  const extra = withTierCandidates(
    [...tried, ...valid],
    tried.length,
    target.shape,
    dtype,
    gpu.caps,
  )
    .slice(tried.length);
  // As the tiers: only beside a search that timed something (a run out of time times nothing).
  const fallback = tried.length > 0 && untunedDefault(run, target, m, valid, [...tried, ...extra]);
  if (fallback) extra.push(fallback);
  const outside = tried.length > 0 && storedOutside(run, ti, m, valid, [...tried, ...extra]);
  if (outside) extra.push(outside);
  book.total += extra.length + tried.length - budget;
  if (extra.length > 0) timed.push(...await runner.time(target, m, extra));
  // The next bucket's hint is the best this search asked for, not what else the log holds at m
  // (a cross-check's trials): so that a rerun from the log asks for the same configs.
  const asked = [...timed].sort((a, b) => a.medianUs - b.medianUs)[0];
  if (asked) run.hints.set(target.name, parseConfigName(asked.config));
  const ranking = book.withLogged(timed, target.name, new Set(valid.map(configName)), m);
  return withRecheckTimes(ranking, (config) => ({
    own: book.find(target.name, m, config),
    again: book.find(recheckTarget(target.name), m, config),
  }));
}

/**
 * The cache's config for stage `ti` at m where this run's space does not hold it, to be timed
 * beside the search's finds: so that a space of one stage's families (the batched stage's tiles,
 * say, whose fused configs are all far slower than the cache's) keeps the cache's config for the
 * other stage, and its pair can replace the cache's by the stage it improves (H100, 2026-12-08:
 * without it every pair of such a space lost whole).
 */
function storedOutside(
  run: Run,
  ti: number,
  m: number,
  valid: readonly KernelConfig[],
  timed: readonly KernelConfig[],
): KernelConfig | undefined {
  const kept = run.options.stored?.[String(m)];
  const name = (ti === 0 ? kept?.fused : kept?.batched)?.config;
  if (!name || [...valid, ...timed].some((c) => configName(c) === name)) return undefined;
  return parseConfigName(name);
}

/**
 * The config the dispatcher runs for this stage at m without a tuning (kernels/defaults.ts),
 * where the space has it and the search did not time it: timed beside the search's finds, so that
 * a winner is never a config slower than the untuned default by this run's timings.
 */
function untunedDefault(
  run: Run,
  target: Target,
  m: number,
  valid: readonly KernelConfig[],
  timed: readonly KernelConfig[],
): KernelConfig | undefined {
  const { dtype, gpu, precision } = run.options;
  let name: string;
  try {
    name = configName(defaultConfig(target.shape, dtype, gpu.caps, m, target.stage, precision));
  } catch {
    return undefined; // no default fits the shape: nothing for a winner to beat
  }
  if (timed.some((c) => configName(c) === name)) return undefined;
  return valid.find((c) => configName(c) === name);
}

/**
 * The unfused baseline at m: each of its GEMMs tried with the stage's fastest configs (all in
 * shared submits), then the whole projection timed both ways in one batch, with the rival pair
 * (the cache's) in that batch too where given.
 *
 * @returns The two times and the unfused GEMMs' configs, or undefined if they were not taken.
 */
async function unfusedBaseline(
  run: Run,
  m: number,
  rankings: Ranked[][],
  winners: StageResult[],
  rival?: string[],
): Promise<WholeTimes | undefined> {
  const { runner, book } = run;
  book.total += runner.unfused.length * UNFUSED_CANDIDATES;
  const requests = runner.unfused.map((own) => ({
    target: own,
    candidates: unfusedCandidates(runner, own, rankings),
  }));
  const timed = await runner.timeEach(m, requests);
  if (timed.some((ranking) => ranking.length === 0)) return undefined;
  const apart = timed.map((ranking) => ranking[0].config);
  const whole = await runner.timeProjection(m, winners.map((w) => w.config), apart, rival);
  return whole && { ...whole, apart };
}

/**
 * The unfused baseline at m as the log has it, for a run out of time: each unfused GEMM's fastest
 * logged candidate and the whole projection's logged timings with those configs, or undefined
 * where any of them is not logged. Nothing is timed.
 */
function loggedBaseline(
  run: Run,
  m: number,
  rankings: Ranked[][],
  winners: StageResult[],
): WholeTimes | undefined {
  const { runner, book } = run;
  const apart: string[] = [];
  for (const own of runner.unfused) {
    const [fastest] = unfusedCandidates(runner, own, rankings)
      .map((c) => book.find(own.name, m, configName(c)))
      .filter((t): t is TimedTrial => t !== undefined && isTimed(t))
      .sort((a, b) => a.medianUs - b.medianUs);
    if (!fastest) return undefined;
    apart.push(fastest.config);
  }
  const logged = runner.loggedProjection(m, winners.map((w) => w.config), apart);
  if (!logged) return undefined;
  const [fused, whole] = logged;
  if (!isTimed(fused) || !isTimed(whole)) return undefined;
  return { fusedUs: fused.medianUs, unfusedUs: whole.medianUs, apart };
}

/** The seed of one bucket's and stage's random stream. */
function streamSeed(seed: number, m: number, stage: number): number {
  return (seed ^ Math.imul(m, 0x9e3779b1) ^ Math.imul(stage + 1, 0x85ebca6b)) >>> 0;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
