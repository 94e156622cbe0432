// Probe: what a pipeline compile costs on this GPU, and whether compiles on the compile pool's
// worker threads (each with its own device) make the main thread's compile of the same WGSL
// cheaper (the driver's shader cache). Prints one line per case. Usage:
//   deno run -A bench/compile_probe.ts [configs per set] [workers]
import { openGpu } from "../tuner/gpu_device.ts";
import { compileKernel, kernelSource } from "../kernels/gpu.ts";
import { CompilePool } from "../tuner/compile_pool.ts";
import { configProblem, type KernelConfig } from "../kernels/config.ts";
import { DEFAULT_SPACE, enumerateSpace } from "../kernels/space.ts";
import { fusedShape, kimiLinearSpec } from "../kernels/problem.ts";
import { seededRandom, shuffled } from "../tuner/random.ts";

const perSet = Number(Deno.args[0] ?? 40);
const workers = Number(Deno.args[1] ?? 8);
const gpu = await openGpu();
const shape = fusedShape(kimiLinearSpec({ tp: 4 }));
const dtype = "f16" as const;
const valid = enumerateSpace(DEFAULT_SPACE).filter((c) =>
  !configProblem(c, shape, dtype, gpu.caps)
);
// A fixed shuffle, so that every set mixes the families.
const order = shuffled(valid, seededRandom(12345));
const sets = [0, 1, 2, 3].map((i) => order.slice(i * perSet, (i + 1) * perSet));
console.log(`${gpu.adapter.info.description || gpu.adapter.info.device}: ${valid.length} valid`);

async function mainCompile(set: KernelConfig[]): Promise<number[]> {
  const times: number[] = [];
  for (const c of set) {
    const t0 = performance.now();
    await compileKernel(gpu.device, c, shape, dtype);
    times.push(performance.now() - t0);
  }
  return times;
}
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const line = (label: string, ms: number[]) =>
  console.log(
    `${label.padEnd(44)} total ${(sum(ms) / 1000).toFixed(2)} s, median ${
      median(ms).toFixed(1)
    } ms, max ${Math.max(...ms).toFixed(1)} ms`,
  );

line("main thread alone", await mainCompile(sets[0]));

const pool = new CompilePool(workers);
const sourceOf = (c: KernelConfig) => kernelSource(gpu.device, c, shape, dtype);
// Workers compile set 1, then the main thread compiles it.
let t0 = performance.now();
const warm = await Promise.all(sets[1].map(async (c) => pool.warm(await sourceOf(c))));
const wallWorkers = performance.now() - t0;
console.log(
  `${workers} workers wall ${(wallWorkers / 1000).toFixed(2)} s, failed ${
    warm.filter((ok) => !ok).length
  }`,
);
line("main thread after the workers compiled it", await mainCompile(sets[1]));

// Pipelined: workers start set 2 while the main thread compiles each after its worker is done.
t0 = performance.now();
const done = sets[2].map(async (c) => pool.warm(await sourceOf(c)));
const piped: number[] = [];
for (let i = 0; i < sets[2].length; i++) {
  await done[i];
  const t = performance.now();
  await compileKernel(gpu.device, sets[2][i], shape, dtype);
  piped.push(performance.now() - t);
}
line("pipelined: main after each worker", piped);
console.log(`pipelined wall ${((performance.now() - t0) / 1000).toFixed(2)} s`);
line("main thread alone again (set 3)", await mainCompile(sets[3]));
await pool.close();
gpu.device.destroy();
