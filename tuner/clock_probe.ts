/**
 * A fixed probe kernel that tells whether the GPU's clock moved while something was timed.
 *
 * The H100 idles at 345 MHz and boosts to 1980 MHz only under sustained load, so the same
 * kernel reads up to 3x slower at one moment than at another (NOTES.md). The probe is a chain
 * of dependent FMAs: its time is the SM clock's inverse and nothing else (no memory traffic),
 * so a change of its time is a change of clock. {@linkcode ClockProbe.settle} warms the GPU
 * until the probe is steady at its fastest; the timing loop (timing.ts) times the probe at the
 * start and the end of every measuring submit and measures a submit again whose probe drifted.
 * No Deno API here.
 *
 * @module
 */

/** The probe's WGSL: `chain` dependent vec4 FMAs per thread. */
const probeWgsl = (chain: number) => `
// Clock probe: dependent FMAs, no memory traffic; the store is never taken.
@group(0) @binding(0) var<storage, read_write> sink: array<vec4<f32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  var a = vec4<f32>(f32(g.x) * 1e-9);
  let b = vec4<f32>(0.999999);
  let c = vec4<f32>(1e-7);
  for (var i = 0u; i < ${chain}u; i++) { a = fma(a, b, c); }
  if (a.x == 1.5e38) { sink[g.x & 255u] = a; }
}
`;

/** What {@linkcode ClockProbe.settle} saw. */
export interface Settled {
  /** Whether the probe became steady at its fastest before the time ran out. */
  steady: boolean;
  /** The probe's time per run at the end, microseconds. */
  probeUs: number;
  /** Wall time the warm-up took, milliseconds. */
  ms: number;
  /** Bursts it took. */
  bursts: number;
}

/** How a {@linkcode ClockProbe} warms up (defaults in parentheses). */
export interface ProbeOptions {
  /** Workgroups per probe run (132, one per H100 SM; fewer on a software adapter). */
  workgroups?: number;
  /**
   * Dependent FMAs per thread per run (4096, about 8 us on an H100): long enough that the
   * probe's time is the clock's, not the launch's.
   */
  chain?: number;
  /** Probe runs in one timed probe pass (8). */
  runs?: number;
  /** Untimed probe runs before each timed pass while settling: ~30 ms on an H100 (4000). */
  burstRuns?: number;
  /** Least warm-up, milliseconds, even when the probe looks steady at once (300). */
  minMs?: number;
  /** Most warm-up, milliseconds; then it gives up and says so (5000). */
  maxMs?: number;
}

/** Drift, percent, over which a timing is taken again (see timing.ts). */
export const DRIFT_PCT = 3;

/** A fixed FMA-chain kernel timed beside the kernels under test (see the module docs). */
export class ClockProbe {
  #device: GPUDevice;
  #pipeline: GPUComputePipeline;
  #bindGroup: GPUBindGroup;
  #sink: GPUBuffer;
  #options: Required<ProbeOptions>;
  #referenceUs = Infinity;
  #settles = 0;
  #settleMs = 0;

  constructor(device: GPUDevice, options: ProbeOptions = {}) {
    this.#device = device;
    this.#options = {
      workgroups: 132,
      chain: 4096,
      runs: 8,
      burstRuns: 4000,
      minMs: 300,
      maxMs: 5000,
      ...options,
    };
    this.#sink = device.createBuffer({
      size: 256 * 16,
      usage: GPUBufferUsage.STORAGE,
      label: "clock probe",
    });
    this.#pipeline = device.createComputePipeline({
      layout: "auto",
      compute: {
        module: device.createShaderModule({
          code: probeWgsl(this.#options.chain),
          label: "clock probe",
        }),
        entryPoint: "main",
      },
    });
    this.#bindGroup = device.createBindGroup({
      layout: this.#pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: this.#sink } }],
    });
  }

  /** Probe runs per timed probe pass: a pass's time divided by this is one run's. */
  get runs(): number {
    return this.#options.runs;
  }

  /**
   * The fastest steady probe time per run seen so far, microseconds: the clock the timings
   * are meant to be taken at. Infinity before the first {@linkcode settle}.
   */
  get referenceUs(): number {
    return this.#referenceUs;
  }

  /** How many times {@linkcode settle} ran. */
  get settles(): number {
    return this.#settles;
  }

  /** The wall time of every {@linkcode settle} so far, milliseconds. */
  get settleMs(): number {
    return this.#settleMs;
  }

  /** Records `runs` probe runs into a pass. */
  encode(pass: GPUComputePassEncoder, runs = this.#options.runs): void {
    pass.setPipeline(this.#pipeline);
    pass.setBindGroup(0, this.#bindGroup);
    for (let r = 0; r < runs; r++) pass.dispatchWorkgroups(this.#options.workgroups);
  }

  /**
   * How far a probe time (per run) is from the reference, percent; a faster probe than the
   * reference lowers the reference (the clock was not at its fastest before). The first
   * reading sets the reference: its drift is 0.
   */
  drift(probeUs: number): number {
    const reference = this.#referenceUs;
    if (probeUs < reference) this.#referenceUs = probeUs;
    return Number.isFinite(reference) ? Math.abs(probeUs / reference - 1) * 100 : 0;
  }

  /**
   * Keeps the GPU busy with the probe until its time is steady at the fastest seen: the last
   * three readings within {@linkcode DRIFT_PCT} / 2 of the best, after at least `minMs`.
   * Each reading is one submit of `burstRuns` untimed runs and one timed pass.
   */
  async settle(): Promise<Settled> {
    const { minMs, maxMs } = this.#options;
    const t0 = performance.now();
    const readings: number[] = [];
    for (;;) {
      const us = await this.#burst();
      readings.push(us);
      this.drift(us);
      const ms = performance.now() - t0;
      const last = readings.slice(-3);
      const steady = last.length === 3 &&
        last.every((r) => (r / this.#referenceUs - 1) * 100 <= DRIFT_PCT / 2);
      if ((steady && ms >= minMs) || ms >= maxMs) {
        this.#settles++;
        this.#settleMs += ms;
        return { steady, probeUs: us, ms, bursts: readings.length };
      }
    }
  }

  /** Frees the probe's buffer. */
  destroy(): void {
    this.#sink.destroy();
  }

  /** One warm-up burst and one timed probe pass; returns the probe's time per run. */
  async #burst(): Promise<number> {
    const device = this.#device;
    const querySet = device.createQuerySet({ type: "timestamp", count: 2 });
    const resolve = device.createBuffer({
      size: 16,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const readback = device.createBuffer({
      size: 16,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const encoder = device.createCommandEncoder({ label: "clock probe" });
    const warm = encoder.beginComputePass();
    this.encode(warm, this.#options.burstRuns);
    warm.end();
    const timed = encoder.beginComputePass({
      timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 },
    });
    this.encode(timed);
    timed.end();
    encoder.resolveQuerySet(querySet, 0, 2, resolve, 0);
    encoder.copyBufferToBuffer(resolve, 0, readback, 0, 16);
    device.queue.submit([encoder.finish()]);
    try {
      await readback.mapAsync(GPUMapMode.READ);
      const [begin, end] = new BigUint64Array(readback.getMappedRange());
      return Number(end - begin) / 1000 / this.#options.runs;
    } finally {
      readback.unmap();
      resolve.destroy();
      readback.destroy();
      querySet.destroy();
    }
  }
}
