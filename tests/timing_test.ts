/**
 * The timing loop (tuner/timing.ts) and the clock probe (tuner/clock_probe.ts) on the CPU
 * adapter: interleaved rounds, the probe's drift rule, measuring again while it drifts, and the
 * wall-clock fallback's median and spread.
 */
import assert from "node:assert/strict";
import { ClockProbe, DRIFT_PCT } from "../tuner/clock_probe.ts";
import type { ClockWatch, TimedItem } from "../tuner/timing.ts";
import { MIN_PASSES, timeItems } from "../tuner/timing.ts";

const adapter = await navigator.gpu.requestAdapter();
if (!adapter) throw new Error("No WebGPU adapter");

/** A device with timestamps (the loop's GPU clock) or without (the wall-clock fallback). */
async function withDevice(timestamps: boolean, fn: (device: GPUDevice) => Promise<void>) {
  const device = await adapter!.requestDevice({
    requiredFeatures: timestamps ? ["timestamp-query"] : [],
  });
  try {
    await fn(device);
  } finally {
    device.destroy();
  }
}

/** Items that record nothing but the order their runs were encoded in. */
function recordingItems(count: number, order: string[]): TimedItem[] {
  return Array.from({ length: count }, (_, i) => ({
    encode: (_pass: GPUComputePassEncoder, rep: number) => void order.push(`${i}:${rep}`),
  }));
}

/** A tiny probe for the software adapter. */
const tinyProbe = (device: GPUDevice) =>
  new ClockProbe(device, { workgroups: 1, chain: 8, runs: 2, burstRuns: 2, minMs: 0, maxMs: 50 });

Deno.test("an item whose run outlasts a pass gets fewer samples, never under the minimum", async () => {
  await withDevice(true, async (device) => {
    const order: string[] = [];
    const options = { warmup: 1, repeats: 12 };
    // A pass meant to last 1 ns: every run outlasts it, so 12 passes' time is under one run.
    const [short] = await timeItems(device, recordingItems(1, order), {
      ...options,
      passUs: 0.001,
    });
    assert.equal(short.samples, MIN_PASSES);
    // Passes meant to last a minute: every run fits 64 times, and all 12 samples are taken.
    const [long] = await timeItems(device, recordingItems(1, order), { ...options, passUs: 6e7 });
    assert.equal(long.samples, 12);
  });
});

Deno.test("timed passes run the items round by round, each counting its own runs on", async () => {
  await withDevice(true, async (device) => {
    const order: string[] = [];
    const timings = await timeItems(device, recordingItems(2, order), {
      warmup: 1,
      repeats: 3,
      passUs: 0.001, // one run per pass
    });
    assert.equal(timings.length, 2);
    // Calibration: the warm-ups (one run each), then one timed run each.
    assert.deepEqual(order.slice(0, 4), ["0:0", "1:0", "0:1", "1:1"]);
    // Measuring: item 0 heats the GPU (untimed), then the rounds alternate 0, 1, 0, 1, ...
    const measuring = order.slice(4);
    const rounds = measuring.slice(measuring.findIndex((o) => o.startsWith("1:")) - 1);
    assert.deepEqual(rounds.map((o) => o[0]), ["0", "1", "0", "1", "0", "1"]);
    assert.deepEqual(rounds.filter((o) => o.startsWith("1:")), ["1:0", "1:1", "1:2"]);
    for (const t of timings) {
      assert.equal(t.clock, "gpu");
      assert.equal(t.samples, 3);
      assert.equal(t.probeUs, undefined, "no probe, no probe time");
    }
  });
});

Deno.test("with a lead-in, each timed pass follows an untimed run of its own item", async () => {
  await withDevice(true, async (device) => {
    const order: string[] = [];
    const timings = await timeItems(device, recordingItems(2, order), {
      warmup: 1,
      repeats: 3,
      passUs: 0.001, // one timed run per pass
      leadIn: true,
    });
    const measuring = order.slice(4);
    const rounds = measuring.slice(measuring.findIndex((o) => o.startsWith("1:")) - 2);
    // Per round and item: the lead-in run, then the timed one, both counting the item's runs on.
    assert.equal(rounds.map((o) => o[0]).join(""), "001100110011");
    assert.deepEqual(rounds.filter((o) => o.startsWith("1:")).slice(0, 2), ["1:0", "1:1"]);
    for (const t of timings) {
      assert.equal(t.samples, 3, "the lead-in runs are not samples");
      assert.equal(t.runsPerPass, 1);
    }
  });
});

Deno.test("the probe's drift is measured from its fastest time, which it lowers", async () => {
  await withDevice(true, async (device) => {
    const probe = tinyProbe(device);
    try {
      assert.equal(probe.referenceUs, Infinity);
      assert.equal(probe.drift(10), 0, "the first reading sets the reference");
      assert.equal(probe.referenceUs, 10);
      assert.ok(Math.abs(probe.drift(10.5) - 5) < 1e-9, "5% slower");
      assert.equal(probe.referenceUs, 10);
      assert.ok(Math.abs(probe.drift(8) - 20) < 1e-9, "20% faster: the clock was not up before");
      assert.equal(probe.referenceUs, 8);
      const settled = await probe.settle();
      assert.ok(settled.bursts >= 1 && settled.probeUs > 0, JSON.stringify(settled));
      assert.ok(probe.referenceUs <= settled.probeUs);
    } finally {
      probe.destroy();
    }
  });
});

Deno.test("with a real probe each timing carries the probe's time and drift", async () => {
  await withDevice(true, async (device) => {
    const probe = tinyProbe(device);
    try {
      await probe.settle();
      const [t] = await timeItems(device, recordingItems(1, []), {
        warmup: 1,
        repeats: 4,
        probe,
      });
      assert.ok(t.probeUs! > 0, `probe time ${t.probeUs}`);
      assert.ok(Number.isFinite(t.driftPct!) && t.driftPct! >= 0);
    } finally {
      probe.destroy();
    }
  });
});

Deno.test("passes sized by a slow calibration run are measured again, sized by the item's runs", async () => {
  await withDevice(true, async (device) => {
    const probe = tinyProbe(device);
    try {
      const [light] = await timeItems(device, [{ encode: (pass) => probe.encode(pass, 1) }], {
        warmup: 1,
        repeats: 3,
      });
      // The item's first timed run, the calibration's (after one warm-up), does 2000 runs' work:
      // sized by it, a pass of 10 runs' time would hold one run.
      let calls = 0;
      const item: TimedItem = { encode: (pass) => probe.encode(pass, calls++ === 1 ? 2000 : 1) };
      const [t] = await timeItems(device, [item], {
        warmup: 1,
        repeats: 3,
        passUs: 10 * light.medianUs,
      });
      assert.ok(t.runsPerPass! >= 2, `runs a pass ${t.runsPerPass}, a run ${t.medianUs} us`);
    } finally {
      probe.destroy();
    }
  });
});

/** A probe whose drift readings are scripted, counting how often the clock was settled. */
function scriptedProbe(drifts: number[], device: GPUDevice) {
  const real = tinyProbe(device);
  let reading = 0;
  const watch: ClockWatch & { settles: number } = {
    settles: 0,
    runs: real.runs,
    get referenceUs() {
      return real.referenceUs;
    },
    encode: (pass, runs) => real.encode(pass, runs),
    drift: () => drifts[Math.min(reading++, drifts.length - 1)],
    settle() {
      watch.settles++;
      return real.settle();
    },
  };
  return { watch, destroy: () => real.destroy() };
}

Deno.test("a submit whose probe drifted is measured again after the clock settles", async () => {
  await withDevice(true, async (device) => {
    // Readings come in pairs (before, after): drifted, drifted, then steady.
    const { watch, destroy } = scriptedProbe([0, 12, 9, 0, 1, 0.5], device);
    try {
      const [t] = await timeItems(device, recordingItems(1, []), {
        warmup: 1,
        repeats: 2,
        passUs: 0.001, // one run a pass, whatever the calibration reads: no measuring again
        probe: watch,
      });
      assert.equal(watch.settles, 3, "settled first, then before each of the two repeats");
      assert.equal(t.driftPct, 1, "the steady measurement is kept");
    } finally {
      destroy();
    }
    // Drifting every time: three measurements, the least drifted kept.
    const always = scriptedProbe([20, 20, 30, 0, 10, 10], device);
    try {
      const [t] = await timeItems(device, recordingItems(1, []), {
        warmup: 1,
        repeats: 2,
        passUs: 0.001,
        probe: always.watch,
      });
      assert.equal(always.watch.settles, 3, "settled first, then three measurements at most");
      assert.equal(t.driftPct, 10);
      assert.ok(t.driftPct! > DRIFT_PCT);
    } finally {
      always.destroy();
    }
  });
});

Deno.test("without timestamps, the wall clock gives a median and a spread of five samples", async () => {
  await withDevice(false, async (device) => {
    assert.equal(device.features.has("timestamp-query"), false);
    const order: string[] = [];
    const [t] = await timeItems(device, recordingItems(1, order), { warmup: 2, repeats: 10 });
    assert.equal(t.clock, "wall");
    assert.equal(t.samples, 5);
    assert.ok(t.medianUs > 0 && Number.isFinite(t.spreadPct) && t.spreadPct >= 0);
    assert.equal(order.length, 2 + 10, "warm-up runs, then the repeats spread over the samples");
  });
});
