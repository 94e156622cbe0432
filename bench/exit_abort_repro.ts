/**
 * A reproduction of the abort at exit (NOTES.md, "The abort at exit: a first core"), with none of
 * this repository's code: tests that do plain WebGPU compute on the adapter, alternating with
 * tests that run this file's WebGPU work as a subprocess. On llvmpipe it printed "ok" for every
 * test and then aborted in glibc's malloc while the process exited (exit 134) in 3 of 100 runs
 * (2026-12-07; 3 of 100 too with each test requesting its own adapter); an earlier form with only
 * the device work or only the subprocesses, in none of 80 each.
 * Not named `*_test.ts`, so `deno task test` leaves it out; run it in a loop:
 *
 *   for i in $(seq 50); do deno test -A --no-check bench/exit_abort_repro.ts >/dev/null 2>&1 ||
 *     echo "run $i: exit $?"; done
 *
 * @module
 */

const SHADER = `@group(0) @binding(0) var<storage, read_write> d: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) { d[g.x] = d[g.x] * 2.0 + 1.0; }`;

/** The adapter, requested once per process and kept to its end. */
const adapter = await navigator.gpu.requestAdapter();
if (!adapter) throw new Error("No WebGPU adapter");

/** Requests a device, runs ten dispatches with a read-back after each, destroys it. */
async function computeOnce(): Promise<void> {
  const device = await adapter!.requestDevice();
  const size = 1 << 20;
  const data = device.createBuffer({
    size,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const read = device.createBuffer({
    size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const pipeline = await device.createComputePipelineAsync({
    layout: "auto",
    compute: { module: device.createShaderModule({ code: SHADER }), entryPoint: "main" },
  });
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: data } }],
  });
  for (let i = 0; i < 10; i++) {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(size / 4 / 64);
    pass.end();
    encoder.copyBufferToBuffer(data, 0, read, 0, size);
    device.queue.submit([encoder.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    read.unmap();
  }
  device.destroy();
}

if (import.meta.main && Deno.args[0] === "--child") {
  await computeOnce();
} else {
  for (let t = 0; t < 4; t++) {
    Deno.test(`device work ${t}`, computeOnce);
    Deno.test(`subprocess ${t}`, async () => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL(import.meta.url).pathname, "--child"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
    });
  }
}
