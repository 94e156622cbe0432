/**
 * The runner's chunk timer (tuner/timed_chunks.ts) on the CPU adapter: kernels of several
 * targets share submits, and each timing is logged under its own target.
 */
import assert from "node:assert/strict";
import { configName } from "../kernels/config.ts";
import { compileKernel, kernelBindGroup, paramsBuffer, storageBuffer } from "../kernels/gpu.ts";
import type { GemmShape } from "../kernels/problem.ts";
import { DeviceGuard } from "../tuner/device_guard.ts";
import type { TimedEntry } from "../tuner/timed_chunks.ts";
import { ChunkTimer } from "../tuner/timed_chunks.ts";
import type { Ranked } from "../tuner/trial_book.ts";
import { TrialBook } from "../tuner/trial_book.ts";
import { TrialLog } from "../tuner/trial_log.ts";
import { gemvConfig, withGpuAndTempDir } from "./helpers.ts";

const shapeOf = (n: number): GemmShape => ({
  k: 32,
  n,
  xOffsets: [0],
  xRowStride: 32,
  wOffset: 0,
  yOffsets: [0],
  yRowStride: n,
});

Deno.test("kernels of two targets are timed in one submit and logged under their own targets", async () => {
  await withGpuAndTempDir("timed_chunks", async (gpu, dir) => {
    const device = gpu.device;
    const log = await TrialLog.open(`${dir}/log.jsonl`);
    const book = new TrialBook(log, 60_000);
    const m = 2;
    const buffers: GPUBuffer[] = [];
    const keep = (b: GPUBuffer) => (buffers.push(b), b);
    const params = keep(paramsBuffer(device, m));
    const entries: TimedEntry[] = [];
    const into: Ranked[][] = [[], []];
    const configs = [gemvConfig({ nc: 4 }), gemvConfig({ nc: 2 })];
    for (const [t, n] of [8, 16].entries()) {
      const shape = shapeOf(n);
      const group = kernelBindGroup(device, {
        params,
        x: keep(storageBuffer(device, new Float32Array(m * 32).fill(1), "x")),
        w: keep(storageBuffer(device, new Float32Array(n * 32).fill(1), "w")),
        y: keep(storageBuffer(device, new Float32Array(m * n), "y")),
      });
      for (const config of configs) {
        const kernel = await compileKernel(device, config, shape, "f32");
        entries.push({ logTarget: `unfused:${t}`, kernel, groups: [group], into: into[t] });
      }
    }
    const timer = new ChunkTimer(device, {
      book,
      guard: new DeviceGuard(device, log.path),
      timing: { warmup: 1, repeats: 3 },
      limitMs: 60_000,
      timed: (work) => work(),
    });
    // Each timing submit makes one query set: two timestamps per timed pass. The first is the
    // calibration submit, one pass of each item timed.
    const create = device.createQuerySet.bind(device);
    const querySets: number[] = [];
    device.createQuerySet = (descriptor) => (querySets.push(descriptor.count), create(descriptor));
    try {
      await timer.timeAll(entries, m);
    } finally {
      device.createQuerySet = create;
      for (const b of buffers) b.destroy();
    }
    assert.equal(querySets[0], 2 * entries.length, "all four calibrated in one submit");
    for (const t of [0, 1]) {
      assert.deepEqual(into[t].map((r) => r.config).sort(), configs.map(configName).sort());
      assert.ok(into[t].every((r) => r.medianUs > 0));
      const logged = log.trials.filter((x) => x.target === `unfused:${t}` && x.bucket === m);
      assert.deepEqual(logged.map((x) => x.outcome), ["ok", "ok"]);
    }
  });
});
