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
 * Each measuring submit starts with ~20 ms of its first item, untimed. (Clocks are a separate
 * matter: see heater.ts.)
 *
 * @module
 */

/** Something to time: records its work into a compute pass; `rep` picks rotating inputs. */
export interface TimedItem {
  encode(pass: GPUComputePassEncoder, rep: number): void;
}

/** Timing statistics of one item, in microseconds. */
export interface Timing {
  medianUs: number;
  /** (90th percentile - 10th percentile) / median, percent: how noisy the samples were. */
  spreadPct: number;
  samples: number;
  /** "gpu" from timestamp queries, "wall" when the device has none (whole batch / repeats). */
  clock: "gpu" | "wall";
}

/** How many warm-up runs and timed samples per item. */
export interface TimingOptions {
  warmup: number;
  /** Samples (timed passes) per item; the median is kept. */
  repeats: number;
  /** GPU time one timed pass should last (default 200 us). */
  passUs?: number;
}

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
 * Whether a timing is too noisy to trust as it is, so that it should be measured again. Wall
 * clock timings have no spread (one sample), so they never are.
 */
export function tooNoisy(t: Timing): boolean {
  return t.clock === "gpu" && t.spreadPct > NOISY_SPREAD_PCT;
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
  const perBatch = Math.max(1, Math.floor(MAX_QUERIES / (2 * options.repeats)));
  const out: Timing[] = [];
  for (let start = 0; start < items.length; start += perBatch) {
    const batch = items.slice(start, start + perBatch);
    // Calibration: warm up, then one timed run of each item, to size the timed passes.
    const once = await timedPasses(
      device,
      batch.map((item) => ({ item, passes: 1, runs: 1, warmup: options.warmup })),
    );
    const runs = once.map((us) =>
      Math.max(1, Math.min(MAX_RUNS_PER_PASS, Math.ceil(passUs / Math.max(us[0], 0.1))))
    );
    const heat = Math.min(20000, Math.ceil(20000 / Math.max(once[0][0], 0.1)));
    const samples = await timedPasses(
      device,
      batch.map((item, i) => ({
        item,
        passes: options.repeats,
        runs: runs[i],
        warmup: i === 0 ? heat : 0,
      })),
    );
    samples.forEach((s, i) => out.push(summarize(s.map((us) => us / runs[i]), "gpu")));
  }
  return out;
}

/** Records, per item, untimed warm-up runs and then `passes` timed passes of `runs` runs each. */
async function timedPasses(
  device: GPUDevice,
  plans: { item: TimedItem; passes: number; runs: number; warmup: number }[],
): Promise<number[][]> {
  const count = plans.reduce((sum, p) => sum + 2 * p.passes, 0);
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
  for (const { item, passes, runs, warmup } of plans) {
    let rep = 0;
    if (warmup > 0) {
      const pass = encoder.beginComputePass();
      for (let w = 0; w < warmup; w++) item.encode(pass, rep++);
      pass.end();
    }
    for (let p = 0; p < passes; p++) {
      const pass = encoder.beginComputePass({
        timestampWrites: {
          querySet,
          beginningOfPassWriteIndex: query,
          endOfPassWriteIndex: query + 1,
        },
      });
      for (let r = 0; r < runs; r++) item.encode(pass, rep++);
      pass.end();
      query += 2;
    }
  }
  encoder.resolveQuerySet(querySet, 0, count, resolve, 0);
  encoder.copyBufferToBuffer(resolve, 0, readback, 0, count * 8);
  device.queue.submit([encoder.finish()]);
  await readback.mapAsync(GPUMapMode.READ);
  const stamps = new BigUint64Array(readback.getMappedRange().slice(0));
  readback.unmap();
  for (const b of [resolve, readback]) b.destroy();
  querySet.destroy();
  let at = 0;
  return plans.map(({ passes }) =>
    Array.from({ length: passes }, () => {
      const us = Number(stamps[at + 1] - stamps[at]) / 1000;
      at += 2;
      return us;
    })
  );
}

/** Fallback without timestamp queries: one submit per item, wall-clock time / repeats. */
async function timeItemsByWallClock(
  device: GPUDevice,
  items: TimedItem[],
  options: TimingOptions,
): Promise<Timing[]> {
  const out: Timing[] = [];
  for (const item of items) {
    const run = async (reps: number, first: number) => {
      const encoder = device.createCommandEncoder();
      for (let rep = 0; rep < reps; rep++) {
        const pass = encoder.beginComputePass();
        item.encode(pass, first + rep);
        pass.end();
      }
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
    };
    await run(options.warmup, 0);
    const t0 = performance.now();
    await run(options.repeats, options.warmup);
    const us = ((performance.now() - t0) * 1000) / options.repeats;
    out.push({ medianUs: us, spreadPct: 0, samples: 1, clock: "wall" });
  }
  return out;
}
