/**
 * The compile pool (tuner/compile_pool.ts) on the software adapter: a worker compiles the exact
 * WGSL the tuner then compiles, a pool whose workers cannot start answers at once, and closing
 * ends waits and workers.
 */
import assert from "node:assert/strict";
import { configName, parseConfigName } from "../kernels/config.ts";
import { compileKernel } from "../kernels/gpu.ts";
import { fusedShape } from "../kernels/problem.ts";
import { CompilePool } from "../tuner/compile_pool.ts";
import { loadProblem } from "../tuner/yaml_file.ts";
import { requestTunedDevice } from "../kernels/device.ts";
import { ROOT, tileConfig } from "./helpers.ts";

const shape = fusedShape(await loadProblem(`${ROOT}problems/tiny.yaml`));

/** A pool of one worker for the test's body, closed after it. */
async function withPool(fn: (pool: CompilePool) => Promise<void>, url?: URL) {
  const pool = new CompilePool(1, url);
  try {
    await fn(pool);
  } finally {
    await pool.close();
  }
}

/** A tuned device of this thread and a pool of one worker, for the test's body. */
async function withDeviceAndPool(fn: (device: GPUDevice, pool: CompilePool) => Promise<void>) {
  const adapter = await navigator.gpu.requestAdapter();
  const device = await requestTunedDevice(adapter!);
  try {
    await withPool((pool) => fn(device, pool));
  } finally {
    device.destroy();
  }
}

Deno.test("the pool compiles the exact source before the tuner's compile of it", async () => {
  await withDeviceAndPool(async (device, pool) => {
    const warmed: string[] = [];
    const order: string[] = [];
    const warm = async (code: string, name: string) => {
      warmed.push(code);
      assert.equal(await pool.warm(code, name), true, "the worker compiled it");
      order.push("warmed");
    };
    const config = tileConfig();
    const kernel = await compileKernel(device, config, shape, "f32", undefined, warm);
    order.push("compiled");
    assert.equal(warmed.length, 1);
    assert.match(warmed[0], /fn main\(/);
    assert.deepEqual(order, ["warmed", "compiled"]);
    assert.equal(kernel.name, configName(config));
    // A second compile of the same source comes from the device's cache: no second warm.
    await compileKernel(device, config, shape, "f32", undefined, warm);
    assert.equal(warmed.length, 1);
  });
});

Deno.test("a stream-K config with a data-parallel part warms each of its three pipelines", async () => {
  await withDeviceAndPool(async (device, pool) => {
    const warmed: string[] = [];
    const warm = async (code: string, name: string) => {
      warmed.push(name);
      assert.equal(await pool.warm(code, name), true, `the worker compiled ${name}`);
    };
    const config = parseConfigName("outer-bm32-bn32-bk8-rm4-rn4-sk4-dp");
    const kernel = await compileKernel(device, config, shape, "f32", undefined, warm);
    const name = configName(config);
    assert.deepEqual(warmed.sort(), [name, `${name} data-parallel part`, `${name} reduce`]);
    assert.ok(kernel.head && kernel.reduce, "the kernel has both parts");
    assert.deepEqual(pool.compiled, { done: 3, ok: 3 });
  });
});

Deno.test("a source the tuner waits for goes before prefetched ones, and none compiles twice", async () => {
  const source = (i: number) => `@compute @workgroup_size(1)\nfn main() { var x${i} = ${i}; }`;
  await withPool(async (pool) => {
    // The worker is still opening its device: all four wait in the queues.
    for (let i = 0; i < 3; i++) pool.prefetch(source(i), `later${i}`);
    assert.equal(await pool.warm(source(3), "now"), true);
    assert.deepEqual(pool.compiled, { done: 1, ok: 1 }, "the urgent one went first");
    // Awaited, the last prefetched source jumps the queue too: only the one the worker had
    // started meanwhile (the first) went before it.
    assert.equal(await pool.warm(source(2), "later2"), true);
    assert.deepEqual(pool.compiled, { done: 3, ok: 3 });
    assert.equal(await pool.warm(source(1), "later1"), true);
    assert.deepEqual(pool.compiled, { done: 4, ok: 4 }, "each source compiled once");
    assert.equal(await pool.warm(source(1), "later1"), true, "a known source answers at once");
    assert.deepEqual(pool.compiled, { done: 4, ok: 4 });
  });
});

Deno.test("a source the worker cannot compile still resolves: the tuner's compile reports it", async () => {
  await withPool(async (pool) => {
    assert.equal(await pool.warm("this is not WGSL", "broken"), false);
  });
});

Deno.test("a pool whose worker fails to start answers at once and closes", async () => {
  const failing = new URL("data:text/javascript,throw new Error('no start')");
  await withPool(async (pool) => {
    const t0 = performance.now();
    assert.equal(await pool.warm("fn main() {}", "any"), false);
    assert.equal(await pool.warm("fn main() {}", "any"), false);
    assert.ok(performance.now() - t0 < 1500, "no wait for a worker that is gone");
  }, failing);
});

Deno.test("closing the pool resolves what still waits", async () => {
  const pool = new CompilePool(1);
  const waits = Array.from({ length: 5 }, (_, i) =>
    pool.warm(
      `@compute @workgroup_size(1)
fn main() { var x${i} = 1; }`,
      `k${i}`,
    ));
  await pool.close();
  const done = await Promise.all(waits);
  assert.equal(done.length, 5);
});

Deno.test("a pool of no workers is a RangeError naming the size", () => {
  assert.throws(() => new CompilePool(0), RangeError);
  assert.throws(() => new CompilePool(0), /positive integer, got 0/);
});
