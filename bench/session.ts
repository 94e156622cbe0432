/**
 * What the bench and its probes open first: the tuner's GPU with its heater running and its
 * clock probe (timings taken while the clock moved are measured again), the problem, the
 * adapter's tuned cache, and an input X whose runs are chained (chain.ts) with the link's own
 * time measured to take off.
 *
 * @module
 */
import type { CacheFile } from "../cache/schema.ts";
import { adapterFingerprint, cacheFileName } from "../cache/schema.ts";
import { loadCacheFile } from "../cache/store.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import type { Gpu } from "../tuner/gpu_device.ts";
import { isSoftwareAdapter, openGpu } from "../tuner/gpu_device.ts";
import type { ClockProbe } from "../tuner/clock_probe.ts";
import type { GpuHeater } from "../tuner/heater.ts";
import { clockKeepers } from "../tuner/heater.ts";
import { findProblem } from "../tuner/problems.ts";
import { randomNonZero } from "../tuner/random.ts";
import type { Timing } from "../tuner/timing.ts";
import { timeItems } from "../tuner/timing.ts";
import { RunChain } from "./chain.ts";

/** An open bench session (see the module documentation). */
export interface BenchSession {
  gpu: Gpu;
  heater?: GpuHeater;
  probe?: ClockProbe;
  spec: ProjectionSpec;
  fingerprint: ReturnType<typeof adapterFingerprint>;
  cachePath: string;
  /** The adapter's tuned cache, if the folder has one. */
  cache: CacheFile | undefined;
  /** Stops the heater and frees the probe. */
  close(): Promise<void>;
}

/** Opens the GPU, starts its heater (none on a software adapter) and loads problem and cache. */
export async function openSession(problem: string, cacheDir = "cache"): Promise<BenchSession> {
  const gpu = await openGpu();
  const { heater, probe } = clockKeepers(gpu.device, !isSoftwareAdapter(gpu.adapter));
  heater?.start();
  const spec = await findProblem(problem);
  const fingerprint = adapterFingerprint(gpu.adapter.info);
  const cachePath = `${cacheDir}/${cacheFileName(fingerprint)}`;
  return {
    gpu,
    heater,
    probe,
    spec,
    fingerprint,
    cachePath,
    cache: await loadCacheFile(cachePath),
    close: async () => {
      await heater?.destroy();
      probe?.destroy();
    },
  };
}

/**
 * X with `rows` rows of random non-zero values, the chain that makes each timed run wait for the
 * one before through it, and the link's own time (measured with `repeats` samples).
 */
export async function chainedInput(
  session: BenchSession,
  rows: number,
  random: () => number,
  repeats: number,
): Promise<{ x: GPUBuffer; chain: RunChain; link: Timing }> {
  const { gpu: { device }, spec, probe } = session;
  const x = device.createBuffer({
    size: rows * spec.k * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(x, 0, randomNonZero(rows * spec.k, random) as Float32Array<ArrayBuffer>);
  const chain = new RunChain(device, x);
  const [link] = await timeItems(device, [chain.alone()], { warmup: 3, repeats, probe });
  return { x, chain, link };
}
