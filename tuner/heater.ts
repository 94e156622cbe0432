/**
 * Keeps the GPU busy while the tuner works on the CPU, so that timings are taken at the clocks
 * a loaded GPU runs at.
 *
 * Measured on the H100 (nvidia-smi sampled every 100 ms during `deno task tune`): a few seconds
 * after the process starts, the SM clock falls from 1980 MHz to 345-525 MHz and stays there
 * through the tuner's bursts of timing work (50-70% utilization), and GEMVs then read 2-3x
 * slower than in a busy process. Running a streaming kernel back to back between the bursts
 * keeps utilization at 100% and the clock up; the heater's work is never timed.
 *
 * @module
 */

import { ClockProbe } from "./clock_probe.ts";

const HEATER_WGSL = `
// Heater: streams a large buffer, so the GPU stays at full load; its result is never used.
@group(0) @binding(0) var<storage, read_write> data: array<vec4<f32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
  let stride = n.x * 256u;
  var acc = vec4<f32>(0.0);
  for (var i = g.x; i < arrayLength(&data); i += stride) { acc += data[i]; }
  if (acc.x == 1.5e38) { data[g.x] = acc; } // never true: keeps the loads alive
}
`;

/** Submits back-to-back streaming work while running; at most `depth` submits in flight. */
export class GpuHeater {
  #device: GPUDevice;
  #pipeline: GPUComputePipeline;
  #bindGroup: GPUBindGroup;
  #buffer: GPUBuffer;
  #inFlight = 0;
  #running = false;
  #depth: number;
  #dispatches: number;

  /**
   * @param bytes Size of the streamed buffer (default 64 MB: past the L2 of current GPUs).
   * @param dispatchesPerSubmit Streams per submit; at ~25 us each on an H100, 200 is ~5 ms.
   */
  constructor(device: GPUDevice, { bytes = 64 << 20, dispatchesPerSubmit = 200, depth = 3 } = {}) {
    this.#device = device;
    this.#depth = depth;
    this.#dispatches = dispatchesPerSubmit;
    this.#buffer = device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.STORAGE,
      label: "heater",
    });
    this.#pipeline = device.createComputePipeline({
      layout: "auto",
      compute: {
        module: device.createShaderModule({ code: HEATER_WGSL, label: "heater" }),
        entryPoint: "main",
      },
    });
    this.#bindGroup = device.createBindGroup({
      layout: this.#pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: this.#buffer } }],
    });
  }

  /** Starts keeping the GPU busy. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#pump();
  }

  /** Stops submitting; work already submitted still runs (a few ms). */
  stop(): void {
    this.#running = false;
  }

  /** Stops and frees the buffer once submitted work is done. */
  async destroy(): Promise<void> {
    this.stop();
    await this.#device.queue.onSubmittedWorkDone();
    this.#buffer.destroy();
  }

  #pump(): void {
    while (this.#running && this.#inFlight < this.#depth) {
      const encoder = this.#device.createCommandEncoder({ label: "heater" });
      const pass = encoder.beginComputePass();
      pass.setPipeline(this.#pipeline);
      pass.setBindGroup(0, this.#bindGroup);
      for (let i = 0; i < this.#dispatches; i++) pass.dispatchWorkgroups(1024);
      pass.end();
      this.#device.queue.submit([encoder.finish()]);
      this.#inFlight++;
      this.#device.queue.onSubmittedWorkDone().then(() => {
        this.#inFlight--;
        this.#pump();
      }, () => {});
    }
  }
}

/**
 * What keeps timings honest while the clock moves: a heater, and a clock probe where the device
 * has timestamps (clock_probe.ts); neither when `on` is false (a software adapter, or the user
 * said so). The tuner's runner and the bench make theirs here, so that they time alike.
 */
export function clockKeepers(
  device: GPUDevice,
  on: boolean,
): { heater?: GpuHeater; probe?: ClockProbe } {
  if (!on) return {};
  return {
    heater: new GpuHeater(device),
    probe: device.features.has("timestamp-query") ? new ClockProbe(device) : undefined,
  };
}
