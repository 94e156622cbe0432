/**
 * GPU timing with timestamp queries. Every await on the GPU costs about 10 ms in Deno, so many
 * measurements go into one command buffer and come back in one read-back.
 *
 * A compute pass with timestamps costs about 10 us of its own on the H100 (measured: an empty
 * dispatch read 12 us), as much as a decode-sized kernel. So each sample is one pass that runs
 * the item back to back enough times to last about `passUs`, divided by that count: the
 * steady-state cost of the item inside a longer stream of work, which is what a model sees. A
 * first, calibration submit times one run of each item (after the warm-up) to pick the count.
 *
 * Each measuring submit starts with ~20 ms of its first item, untimed, then runs its items'
 * passes interleaved, round after round, so that a drift of the clock hits them all alike. The
 * runs of one pass write the same output, so each waits for the one before (a barrier between
 * dispatches), as a model's layers do: no overlap of one run with the next. With a
 * {@linkcode ClockProbe} (clock_probe.ts), the probe is timed before and after the rounds, and
 * a submit whose probe drifted more than {@linkcode DRIFT_PCT} from its fastest is measured
 * again after the clock settles. (Keeping the clock up between timings: heater.ts.)
 *
 * @module
 */

/** Something to time: records its work into a compute pass; `rep` picks rotating inputs. */
export interface TimedItem {
  encode(pass: GPUComputePassEncoder, rep: number): void;
}

import type { ClockProbe } from "./clock_probe.ts";
import { DRIFT_PCT } from "./clock_probe.ts";

/** Timing statistics of one item, in microseconds. */
export interface Timing {
  medianUs: number;
  /** (90th percentile - 10th percentile) / median, percent: how noisy the samples were. */
  spreadPct: number;
  samples: number;
  /** "gpu" from timestamp queries, "wall" when the device has none (submits timed on the CPU). */
  clock: "gpu" | "wall";
  /** The clock probe's time per run during the measurement, microseconds (with a probe). */
  probeUs?: number;
  /** How far the probe was from its fastest then, percent (with a probe). */
  driftPct?: number;
  /**
   * Runs of the item in each timed pass (GPU clock): sized from the calibration run, or from a
   * first measurement where that called for many more ({@linkcode RECALIBRATE_RATIO}).
   */
  runsPerPass?: number;
}

/** How many warm-up runs and timed samples per item. */
export interface TimingOptions {
  warmup: number;
  /**
   * Samples (timed passes) per item; the median is kept. An item of which one run outlasts a
   * pass gets fewer: as many as fit in `repeats` passes' time, at least {@linkcode MIN_PASSES}
   * (at m = 16384 one run takes 6-25 ms on an H100, and 20 of them per candidate were a tenth
   * of a tuning run).
   */
  repeats: number;
  /** GPU time one timed pass should last (default 200 us). */
  passUs?: number;
  /** Watches the clock: a submit taken while it moved is measured again (see the module docs). */
  probe?: ClockWatch;
  /**
   * One untimed run of the item just before each of its timed passes, so that the pass's first
   * run follows a run of its own and not the item timed before it (default false).
   */
  leadIn?: boolean;
}

/** What the timing loop uses of a {@linkcode ClockProbe}. */
export type ClockWatch = Pick<ClockProbe, "runs" | "referenceUs" | "encode" | "drift" | "settle">;

/** Most measurements of one submit when its probe keeps drifting. */
const ATTEMPTS = 3;

/** Fewest timed passes of an item, however long it runs (see {@linkcode TimingOptions}). */
export const MIN_PASSES = 5;

/** Most runs of an item in one timed pass. */
const MAX_RUNS_PER_PASS = 64;

const MAX_QUERIES = 4096;

function quantile(sorted: number[], q: number): number {
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at), hi = Math.ceil(at);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
}

/** Median and spread of samples in microseconds. */
export function summarize(samplesUs: number[], clock: "gpu" | "wall"): Timing {
  const sorted = [...samplesUs].sort((a, b) => a - b);
  const medianUs = quantile(sorted, 0.5);
  const spreadPct = medianUs > 0
    ? ((quantile(sorted, 0.9) - quantile(sorted, 0.1)) / medianUs) * 100
    : 0;
  return { medianUs, spreadPct, samples: sorted.length, clock };
}

/** A GPU timing whose spread (see {@linkcode Timing}) is over this many percent is not trusted. */
export const NOISY_SPREAD_PCT = 25;

/** A timing to keep, flagged when it is too noisy to trust. */
export type SettledTiming = Timing & { noisy?: boolean };

/**
 * Whether a timing is too noisy to trust as it is, so that it should be measured again: its
 * spread is over {@linkcode NOISY_SPREAD_PCT}, on either clock.
 */
export function tooNoisy(t: Timing): boolean {
  return t.spreadPct > NOISY_SPREAD_PCT;
}

/**
 * Decides what to keep of a measurement and, when it was too noisy ({@linkcode tooNoisy}), its
 * repeat: the one of tighter spread, flagged `noisy: true` when even that one is too noisy.
 * A repeat that failed (undefined) keeps the first, flagged as noisy.
 */
export function settleTiming(first: Timing, again?: Timing): SettledTiming {
  if (!tooNoisy(first)) return first;
  const kept = again && again.spreadPct < first.spreadPct ? again : first;
  return tooNoisy(kept) ? { ...kept, noisy: true } : kept;
}

/**
 * Times items on the GPU, batching as many as fit in one query set per submit.
 *
 * @returns One timing per item, in order.
 */
export async function timeItems(
  device: GPUDevice,
  items: TimedItem[],
  options: TimingOptions,
): Promise<Timing[]> {
  if (!device.features.has("timestamp-query")) {
    return await timeItemsByWallClock(device, items, options);
  }
  const passUs = options.passUs ?? 200;
  const perBatch = Math.max(1, Math.floor((MAX_QUERIES - 4) / (2 * options.repeats)));
  const out: Timing[] = [];
  for (let start = 0; start < items.length; start += perBatch) {
    out.push(...await timeBatch(device, items.slice(start, start + perBatch), options, passUs));
  }
  return out;
}

/**
 * A measurement is taken again, with the runs a pass its own times call for, where they call for
 * this many times the runs the calibration run gave some item.
 */
export const RECALIBRATE_RATIO = 1.5;

/**
 * One submit's items: a calibration run of each sizes its passes, then the measurement. Where an
 * item's runs then read much faster than its calibration run ({@linkcode RECALIBRATE_RATIO}),
 * its passes held too few runs: each pass's own start (about 4-5 us on the H100) was shared by
 * too few of them. Measured on the H200 (2026-12-07, `bench/order_probe.ts`): the first timing
 * of freshly made projections calibrated 4-5 runs a pass where later ones took 11-13, and read
 * 0.5-0.9 us (5-6%) slower at m = 1. So the batch is then measured again, sized by those runs.
 */
async function timeBatch(
  device: GPUDevice,
  batch: TimedItem[],
  options: TimingOptions,
  passUs: number,
): Promise<Timing[]> {
  // Calibration: warm up, then one timed run of each item, to size the timed passes.
  const { samples: once } = await timedPasses(
    device,
    batch.map((item) => ({ item, passes: 1, runs: 1, warmup: options.warmup })),
  );
  const first = await measureSized(device, batch, options, passUs, once.map((us) => us[0]));
  const slow = first.timings.some((t, i) =>
    runsFor(passUs, t.medianUs) >= first.runs[i] * RECALIBRATE_RATIO
  );
  if (!slow) return first.timings;
  const again = await measureSized(
    device,
    batch,
    options,
    passUs,
    first.timings.map((t) => t.medianUs),
  );
  return again.timings;
}

/** Runs of an item of `runUs` a run that fill a pass of `passUs`. */
function runsFor(passUs: number, runUs: number): number {
  return Math.max(1, Math.min(MAX_RUNS_PER_PASS, Math.ceil(passUs / Math.max(runUs, 0.1))));
}

/** Measures the items with passes sized by a time per run of each. */
async function measureSized(
  device: GPUDevice,
  batch: TimedItem[],
  options: TimingOptions,
  passUs: number,
  runUs: number[],
): Promise<{ timings: Timing[]; runs: number[] }> {
  const runs = runUs.map((us) => runsFor(passUs, us));
  const heat = Math.min(20000, Math.ceil(20000 / Math.max(runUs[0], 0.1)));
  const plans = batch.map((item, i) => ({
    item,
    passes: passesFor(options.repeats, passUs, runs[i] * runUs[i]),
    runs: runs[i],
    warmup: i === 0 ? heat : 0,
    leadIn: options.leadIn ?? false,
  }));
  const { samples, probeUs, driftPct } = await measureSteady(device, plans, options.probe);
  const timings = samples.map((s, i) => {
    const timing = { ...summarize(s.map((us) => us / runs[i]), "gpu"), runsPerPass: runs[i] };
    return options.probe ? { ...timing, probeUs, driftPct } : timing;
  });
  return { timings, runs };
}

/** Timed passes for an item whose pass lasts `passLastsUs`: see {@linkcode TimingOptions}. */
function passesFor(repeats: number, passUs: number, passLastsUs: number): number {
  const fit = Math.ceil((repeats * passUs) / Math.max(passLastsUs, 0.1));
  return Math.min(repeats, Math.max(MIN_PASSES, fit));
}

/** One measuring submit's samples, and the probe's reading around them. */
interface Measured {
  samples: number[][];
  /** The probe's mean time per run before and after, and its drift (0 without a probe). */
  probeUs: number;
  driftPct: number;
}

/**
 * Measures the plans in one submit; with a probe (settled first if it never was), again, after
 * the clock settles, while the probe drifted more than {@linkcode DRIFT_PCT}, up to {@linkcode ATTEMPTS} times, keeping the
 * measurement of least drift.
 */
async function measureSteady(
  device: GPUDevice,
  plans: PassPlan[],
  probe?: ClockWatch,
): Promise<Measured> {
  let best: Measured | undefined;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    // Settle before the first measurement of a run, and before each measuring again.
    if (probe && (attempt > 0 || !Number.isFinite(probe.referenceUs))) await probe.settle();
    const got = await timedPasses(device, plans, probe);
    if (!probe) return { samples: got.samples, probeUs: 0, driftPct: 0 };
    const [before, after] = got.probe!;
    const driftPct = Math.max(probe.drift(before), probe.drift(after));
    const measured = { samples: got.samples, probeUs: (before + after) / 2, driftPct };
    if (!best || driftPct < best.driftPct) best = measured;
    if (driftPct <= DRIFT_PCT) break;
  }
  return best!;
}

/**
 * Per item: untimed warm-up runs, then `passes` timed passes of `runs` runs each (with
 * `leadIn`, each after one untimed run).
 */
interface PassPlan {
  item: TimedItem;
  passes: number;
  runs: number;
  leadIn?: boolean;
  warmup: number;
}

/**
 * Records the plans' warm-ups, then their timed passes interleaved round by round (each
 * item's `rep` counting on), with a timed probe pass before and after the rounds if given.
 *
 * @returns Per plan, each pass's time in microseconds; the probe's two times per run.
 */
async function timedPasses(
  device: GPUDevice,
  plans: PassPlan[],
  probe?: ClockWatch,
): Promise<{ samples: number[][]; probe?: [number, number] }> {
  const probes = probe ? 2 : 0;
  const count = 2 * (plans.reduce((sum, p) => sum + p.passes, 0) + probes);
  const querySet = device.createQuerySet({ type: "timestamp", count });
  const resolve = device.createBuffer({
    size: count * 8,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const readback = device.createBuffer({
    size: count * 8,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const encoder = device.createCommandEncoder();
  let query = 0;
  const timedPass = () => {
    const pass = encoder.beginComputePass({
      timestampWrites: {
        querySet,
        beginningOfPassWriteIndex: query,
        endOfPassWriteIndex: query + 1,
      },
    });
    query += 2;
    return pass;
  };
  const reps = plans.map(() => 0);
  plans.forEach(({ item, warmup }, i) => {
    if (warmup === 0) return;
    const pass = encoder.beginComputePass();
    for (let w = 0; w < warmup; w++) item.encode(pass, reps[i]++);
    pass.end();
  });
  const probeAt = query;
  const probePass = () => {
    const pass = timedPass();
    probe!.encode(pass);
    pass.end();
  };
  if (probe) probePass();
  // Round by round: query 2 * (round * plans + plan) after the probe's.
  const rounds = Math.max(...plans.map((p) => p.passes));
  const at: number[][] = plans.map(() => []);
  for (let round = 0; round < rounds; round++) {
    plans.forEach(({ item, passes, runs, leadIn }, i) => {
      if (round >= passes) return;
      if (leadIn) {
        const lead = encoder.beginComputePass();
        item.encode(lead, reps[i]++);
        lead.end();
      }
      at[i].push(query);
      const pass = timedPass();
      for (let r = 0; r < runs; r++) item.encode(pass, reps[i]++);
      pass.end();
    });
  }
  const probeEnd = query;
  if (probe) probePass();
  encoder.resolveQuerySet(querySet, 0, count, resolve, 0);
  encoder.copyBufferToBuffer(resolve, 0, readback, 0, count * 8);
  device.queue.submit([encoder.finish()]);
  await readback.mapAsync(GPUMapMode.READ);
  const stamps = new BigUint64Array(readback.getMappedRange().slice(0));
  readback.unmap();
  for (const b of [resolve, readback]) b.destroy();
  querySet.destroy();
  const us = (q: number) => Number(stamps[q + 1] - stamps[q]) / 1000;
  return {
    samples: at.map((queries) => queries.map(us)),
    probe: probe ? [us(probeAt) / probe.runs, us(probeEnd) / probe.runs] : undefined,
  };
}

/** Wall-clock samples per item when the device has no timestamps. */
const WALL_SAMPLES = 5;

/**
 * Fallback without timestamp queries: per item, {@linkcode WALL_SAMPLES} submits of a share of
 * the repeats each, timed on the CPU from submit to done; their median and spread per run. Each
 * sample includes the wait for the GPU (about 10 ms in Deno), so the times are upper bounds.
 */
async function timeItemsByWallClock(
  device: GPUDevice,
  items: TimedItem[],
  options: TimingOptions,
): Promise<Timing[]> {
  const out: Timing[] = [];
  const perSample = Math.max(1, Math.ceil(options.repeats / WALL_SAMPLES));
  for (const item of items) {
    let rep = 0;
    const run = async (reps: number) => {
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      for (let r = 0; r < reps; r++) item.encode(pass, rep++);
      pass.end();
      const t0 = performance.now();
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
      return ((performance.now() - t0) * 1000) / reps;
    };
    if (options.warmup > 0) await run(options.warmup);
    const samples: number[] = [];
    for (let s = 0; s < WALL_SAMPLES; s++) samples.push(await run(perSample));
    out.push(summarize(samples, "wall"));
  }
  return out;
}
