/**
 * A reproduction of the abort at exit (NOTES.md, "The abort at exit: a first core"), with none of
 * this repository's code: tests that do plain WebGPU compute on the adapter, alternating with
 * tests that start a second thread of some kind and wait for it to end. On llvmpipe it printed "ok"
 * for every test and then aborted in glibc's malloc while the process exited (exit 134):
 *
 * - `REPRO=subprocess` (the default): this file's WebGPU work run as a subprocess; 3 of 100 runs
 *   (2026-12-07; 3 of 100 too with each test requesting its own adapter);
 * - `REPRO=worker`: the same work in a Web Worker; 1 of 80 (2026-12-07, seventh session);
 * - `REPRO=idle-worker`: a Web Worker that does nothing for 50 ms; 1 of 80.
 *
 * An earlier form with only the device work, or only the subprocesses, aborted in none of 80 runs
 * each. So WebGPU work on llvmpipe and any second thread or process that ends before the exit are
 * enough; the test suite has both (the compile pool's workers), whichever process it runs in.
 * Not named `*_test.ts`, so `deno task test` leaves it out; run it in a loop:
 *
 *   for i in $(seq 50); do REPRO=worker deno test -A --no-check bench/exit_abort_repro.ts \
 *     >/dev/null 2>&1 || echo "run $i: exit $?"; done
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

/** Which second thread the tests start: "subprocess", "worker" or "idle-worker". */
const REPRO = Deno.env.get("REPRO") ?? "subprocess";
/** This file's global scope when it runs as a worker (typed for the main thread here). */
const scope = self as unknown as {
  name?: string;
  onmessage: (() => void) | null;
  postMessage(message: unknown): void;
};

/** Runs this file as a subprocess doing the device work. */
async function subprocess(): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, "--child"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
}

/** Starts this file as a worker, lets it do the device work or nothing, and ends it. */
async function worker(): Promise<void> {
  const gpu = REPRO === "worker";
  const w = new Worker(import.meta.url, { type: "module", name: gpu ? "gpu" : "idle" });
  if (gpu) {
    const done = new Promise((resolve) => (w.onmessage = resolve));
    w.postMessage("go");
    await done;
  } else await new Promise((resolve) => setTimeout(resolve, 50));
  w.terminate();
}

if (scope.name === "gpu") {
  scope.onmessage = async () => {
    await computeOnce();
    scope.postMessage("done");
  };
} else if (scope.name === "idle") {
  // Nothing: the thread only starts and ends.
} else if (import.meta.main && Deno.args[0] === "--child") {
  await computeOnce();
} else {
  for (let t = 0; t < 4; t++) {
    Deno.test(`device work ${t}`, computeOnce);
    Deno.test(`${REPRO} ${t}`, REPRO === "subprocess" ? subprocess : worker);
  }
}
