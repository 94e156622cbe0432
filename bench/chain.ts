/**
 * Makes each timed run of a projection depend on the run before, as a model's layers do.
 *
 * The bench rotates the weights over several projections (copies past the L2), and each copy
 * writes outputs of its own, so nothing orders one run after the last: the GPU overlaps them,
 * and a decode-sized projection read about 2 us (a third) faster than when each run waits for
 * the one before (measured on the H100: the fused GEMM at m = 1 read 6.9 us in the bench and
 * 9.0 us in the tuner, whose runs all write one output). A link, a one-thread kernel that binds
 * the run's last output for reading and the input X for writing, puts a barrier on each side.
 * The link itself and its extra wait are measured alone, as a chain of links
 * ({@linkcode RunChain.alone}), and taken off: what is left is the projection's time in a chain
 * of dependent kernels, which is what the tuner times (tuner/timing.ts).
 *
 * @module
 */

const LINK_WGSL = `
// Chain link: orders the next run after this one; it never changes X (the branch is not taken).
@group(0) @binding(0) var<storage, read> done: array<f32>;
@group(0) @binding(1) var<storage, read_write> next: array<f32>;
@compute @workgroup_size(1)
fn main() {
  if (done[0] == 1.5e38) { next[0] = 0.0; }
}
`;

/** Links runs through the input buffer `x` (see the module documentation). */
export class RunChain {
  #device: GPUDevice;
  #x: GPUBuffer;
  #pipeline: GPUComputePipeline;
  #groups = new Map<GPUBuffer, GPUBindGroup>();
  #dummy: GPUBuffer;

  constructor(device: GPUDevice, x: GPUBuffer) {
    this.#device = device;
    this.#x = x;
    this.#pipeline = device.createComputePipeline({
      layout: "auto",
      compute: {
        module: device.createShaderModule({ code: LINK_WGSL, label: "chain link" }),
        entryPoint: "main",
      },
    });
    this.#dummy = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
  }

  /** Records a link after a run whose last output is `done`. */
  link(pass: GPUComputePassEncoder, done: GPUBuffer): void {
    let group = this.#groups.get(done);
    if (!group) {
      group = this.#device.createBindGroup({
        layout: this.#pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: done } },
          { binding: 1, resource: { buffer: this.#x } },
        ],
      });
      this.#groups.set(done, group);
    }
    pass.setPipeline(this.#pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(1);
  }

  /** A timed item of links alone, each waiting for the one before: the cost to take off. */
  alone(): { encode(pass: GPUComputePassEncoder): void } {
    return { encode: (pass) => this.link(pass, this.#dummy) };
  }

  /** Frees the link's own buffer. */
  destroy(): void {
    this.#dummy.destroy();
  }
}
