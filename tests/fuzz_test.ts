/**
 * Fuzzing the validator against the generators (issue 4): seeded random configs from a space
 * widened with values no sane space holds (zero, negative, fractional, non-powers of two, vec 3,
 * bk past k, huge workgroups), on random problem shapes (odd and non-power-of-two k, batched
 * stages read in place, unfused segments), weight types and row counts. Each config is either
 * rejected by `configProblem` with a reason, or it compiles and matches the float64 reference
 * (`checkKernel`). Up to MAX_CHECKED valid configs per run go to the GPU (within
 * CHECK_BUDGET_MS); the rest of the valid ones are only counted. FUZZ_SEED replays a run; the
 * seed is printed.
 */
import assert from "node:assert/strict";
import type { KernelConfig } from "../kernels/config.ts";
import { configName, configProblem } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { WEIGHT_DTYPES } from "../kernels/dtype.ts";
import { compileKernel } from "../kernels/gpu.ts";
import type { GemmShape, ProjectionSpec } from "../kernels/problem.ts";
import { batchedShape, fusedShape, unfusedShapes } from "../kernels/problem.ts";
import { seededRandom } from "../tuner/random.ts";
import { checkKernel, destroyCheckData, makeCheckData } from "../tuner/verify.ts";
import { moduleGpu } from "./helpers.ts";

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? Date.now() % 2 ** 31);
const DRAWS = 200;
const MAX_CHECKED = 40;
/** llvmpipe compiles a kernel on its first dispatch, up to seconds for big unrolled tiles. */
const CHECK_BUDGET_MS = 20_000;

const gpu = await moduleGpu();

type Random = () => number;
const pick = <T>(random: Random, xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
const WILD = [0, -4, 1.5, 3, 5, 6, 12, 24, 48, 100, 128, 256, 512, 2048];

/** A config: a third of them wild (each knob often out of range), the rest from sane lists. */
function drawConfig(random: Random): KernelConfig {
  const wildness = random() < 1 / 3 ? 0.4 : 0;
  const knob = (sane: number[], wild = WILD) =>
    random() < wildness ? pick(random, wild) : pick(random, sane);
  const family = pick(random, ["tile", "outer", "gemv"] as const);
  if (family === "tile") {
    return {
      family,
      bm: knob([8, 16, 32, 64]),
      bn: knob([8, 16, 32, 64, 128]),
      bk: knob([4, 8, 16, 32]),
      rm: knob([1, 2, 4]),
      rn: knob([1, 2, 4, 8]),
      vec: knob([1, 2, 4], [0, 3, 8, 16, -2]),
      ...(random() < 0.3 ? { nest: true } : {}),
    };
  }
  if (family === "outer") {
    return {
      family,
      bm: knob([16, 32, 64]),
      bn: knob([16, 32, 64, 128]),
      bk: knob([4, 8, 16]),
      rm: knob([4, 8]),
      rn: knob([4, 8]),
      split: knob([1, 2, 4, 8]),
      half: random() < 0.3,
      double: random() < 0.5,
      // The half-math staging knobs, sometimes on without half math (invalid: refused).
      ...pick(random, [{}, {}, { splat: true }, { kpair: true }, { kpair: true, splat: true }]),
      ...(random() < 0.2 ? { fold: knob([1, 2], [0, 3, 4]) } : {}),
      // Stream-K, with or without a data-parallel part (which alone is invalid: refused).
      ...pick(random, [{}, {}, {}, { stream: knob([1, 3, 5]) }, {
        stream: knob([1, 3, 5]),
        dp: true,
      }, { dp: true }]),
      // Tiles split by k vector.
      ...(random() < 0.3 ? { kq: true } : {}),
    };
  }
  return {
    family,
    nc: knob([1, 2, 4, 8]),
    cn: knob([1, 2, 4, 8]),
    lanes: knob([1, 2, 4, 8, 16, 32]),
    rm: knob([1, 2, 4, 8, 16]),
    vec: knob([1, 2, 4, 8], [0, 3, 16, -2]),
    subgroup: random() < 0.3,
    ...(random() < 0.3 ? { dot: true } : {}),
    ...(random() < 0.3 ? { rw: knob([2, 4, 8], [0, 3]) } : {}),
    ...(random() < 0.3 ? { unroll: knob([1, 2, 4, 8], [3, 16]) } : {}),
    // X staged a trip, in one or two copies (two without staging: refused).
    ...(random() < 0.3 ? { xs: knob([4, 8, 16, 32], [-4, 3, 6, 12, 1.5]) } : {}),
    ...(random() < 0.2 ? { xd: true } : {}),
  };
}

/** A random problem and one of its GEMMs: fused, batched (strided, in place) or one segment. */
function drawShape(random: Random): { what: string; shape: GemmShape } {
  const k = pick(random, [32, 48, 64, 96, 128, 33, 36, 40, 100]);
  const segments = Array.from(
    { length: 1 + Math.floor(random() * 3) },
    (_, i) => ({ name: `s${i}`, n: 1 + Math.floor(random() * 48) }),
  );
  const spec: ProjectionSpec = { name: "fuzz", k, segments };
  if (random() < 0.5) {
    const kb = pick(random, [8, 12, 16, 32, 6, 7]);
    segments.push({ name: "f", n: kb }, { name: "g", n: kb });
    spec.batched = { inputs: ["f", "g"], outputs: ["fb", "gb"], n: 1 + Math.floor(random() * 40) };
  }
  const unfused = unfusedShapes(spec);
  const choice = random();
  const shapeOf = (s: GemmShape) =>
    `k ${s.k} n ${s.n} x${s.xOffsets}/${s.xRowStride} w+${s.wOffset}`;
  if (spec.batched && choice < 0.35) {
    const shape = batchedShape(spec)!;
    return { what: `batched ${shapeOf(shape)}`, shape };
  }
  if (choice < 0.65) {
    const { shape } = pick(random, unfused);
    return { what: `unfused ${shapeOf(shape)}`, shape };
  }
  const shape = fusedShape(spec);
  return { what: `fused ${shapeOf(shape)}`, shape };
}

Deno.test({
  name: "fuzz: each random config is rejected with a reason, or compiles and matches the reference",
  fn: async () => {
    console.log(`FUZZ_SEED=${SEED}`);
    const random = seededRandom(SEED);
    const failures: string[] = [];
    const reasons = new Map<string, number>();
    let rejected = 0, checked = 0, unchecked = 0;
    const started = performance.now();
    for (let i = 0; i < DRAWS; i++) {
      const config = drawConfig(random);
      const { what, shape } = drawShape(random);
      const dtype: WeightDtype = pick(random, WEIGHT_DTYPES);
      const m = pick(random, [1, 3, 37]);
      const name = configName(config);
      const where = `#${i} ${name} on ${what} ${dtype} m=${m}`;
      let problem: string | undefined;
      try {
        problem = configProblem(config, shape, dtype, gpu.caps);
      } catch (e) {
        failures.push(`${where}: configProblem threw ${e}`);
        continue;
      }
      if (problem !== undefined) {
        if (typeof problem !== "string" || problem.trim() === "") {
          failures.push(`${where}: rejected without a reason (${JSON.stringify(problem)})`);
        }
        rejected++;
        const key = problem.replace(/\d+/g, "N");
        reasons.set(key, (reasons.get(key) ?? 0) + 1);
        continue;
      }
      if (checked >= MAX_CHECKED || performance.now() - started > CHECK_BUDGET_MS) {
        unchecked++;
        continue;
      }
      checked++;
      let kernel;
      try {
        kernel = await compileKernel(gpu.device, config, shape, dtype);
      } catch (e) {
        failures.push(`${where}: valid but does not compile: ${(e as Error).message}`);
        continue;
      }
      const data = makeCheckData(gpu.device, shape, dtype, m, SEED + i);
      try {
        const mismatch = await checkKernel(gpu.device, kernel, data);
        if (mismatch) failures.push(`${where}: valid but wrong: ${mismatch}`);
      } finally {
        destroyCheckData(data);
      }
    }
    console.log(
      `fuzz: ${DRAWS} configs: ${rejected} rejected, ${checked} checked on the GPU, ${unchecked} valid but not checked (cap ${MAX_CHECKED} or ${
        CHECK_BUDGET_MS / 1000
      } s)`,
    );
    console.log(
      `rejections: ${
        [...reasons].sort((a, b) => b[1] - a[1]).map(([r, n]) => `${n} x ${r}`).join("; ")
      }`,
    );
    assert.deepEqual(failures, [], `FUZZ_SEED=${SEED}`);
    assert.ok(rejected >= DRAWS / 4, `the widened space is mostly invalid (${rejected} rejected)`);
    assert.ok(checked >= 10, `checked only ${checked} valid configs (FUZZ_SEED=${SEED})`);
  },
});
