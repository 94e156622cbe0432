/**
 * Generated kernels against the float64 reference on the real (software) GPU: a seeded random
 * sample of the default search space, on the stage shapes of problems/tiny.yaml and a k = 128
 * shape, at ragged row counts. Set KERNEL_TEST_SEED to replay a run; the seed is printed.
 */
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import type { KernelConfig, OuterConfig } from "../kernels/config.ts";
import { configName, configProblem } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import { WEIGHT_DTYPES } from "../kernels/dtype.ts";
import type { CompiledKernel } from "../kernels/gpu.ts";
import { compileKernel, dispatchKernel, kernelBindGroup } from "../kernels/gpu.ts";
import type { GemmShape } from "../kernels/problem.ts";
import { kernelWgsl } from "../kernels/generate.ts";
import { batchedShape, fusedShape, unfusedShapes } from "../kernels/problem.ts";
import { referenceRows } from "../kernels/reference.ts";
import { reductionGrid, streamLanes, streamReduceWgsl } from "../kernels/reduce.ts";
import { DEFAULT_SPACE, enumerateSpace } from "../kernels/space.ts";
import { seededRandom, shuffled } from "../tuner/random.ts";
import {
  checkDataWithin,
  checkKernel,
  compareOutput,
  destroyCheckData,
  makeCheckData,
  shapeExtents,
} from "../tuner/verify.ts";
import { loadProblem } from "../tuner/yaml_file.ts";
import { gemvConfig, moduleGpu, tileConfig } from "./helpers.ts";

const SEED = Number(Deno.env.get("KERNEL_TEST_SEED") ?? Date.now() % 2 ** 31);
const PER_FAMILY = 12;
const ROWS = [1, 3, 37];

const tiny = await loadProblem(fileURLToPath(new URL("../problems/tiny.yaml", import.meta.url)));
const unfused = unfusedShapes(tiny);
const SHAPES: [string, GemmShape][] = [
  ["tiny fused", fusedShape(tiny)],
  ["tiny batched (strided in-place read)", batchedShape(tiny)!],
  ["tiny unfused segment b", unfused[1].shape],
  ["k=128 fused", fusedShape({ name: "k128", k: 128, segments: [{ name: "a", n: 100 }] })],
];

const gpu = await moduleGpu();

/** The seeded sample for one dtype and shape: up to PER_FAMILY valid configs of each family. */
function sample(dtype: WeightDtype, shape: GemmShape): KernelConfig[] {
  const order = shuffled(enumerateSpace(DEFAULT_SPACE), seededRandom(SEED));
  const out: KernelConfig[] = [];
  const count = new Map<string, number>();
  for (const c of order) {
    if ((count.get(c.family) ?? 0) >= PER_FAMILY) continue;
    if (configProblem(c, shape, dtype, gpu.caps)) continue;
    count.set(c.family, (count.get(c.family) ?? 0) + 1);
    out.push(c);
  }
  return out;
}

const FAMILIES = new Set(enumerateSpace(DEFAULT_SPACE).map((c) => c.family));

for (const dtype of WEIGHT_DTYPES) {
  Deno.test({
    name: `sampled kernels with ${dtype} weights match the float64 reference on every shape`,
    fn: async () => {
      console.log(`KERNEL_TEST_SEED=${SEED}`);
      const failures: string[] = [];
      const tested = new Set<string>();
      let checked = 0;
      for (const [what, shape] of SHAPES) {
        const configs = sample(dtype, shape);
        assert.ok(configs.length > 0, `some configs are valid on ${what}`);
        for (const c of configs) tested.add(c.family);
        const data = ROWS.map((m, i) => makeCheckData(gpu.device, shape, dtype, m, SEED + i));
        try {
          for (const config of configs) {
            const name = configName(config);
            let kernel;
            try {
              kernel = await compileKernel(gpu.device, config, shape, dtype);
            } catch (e) {
              failures.push(`${what} ${name}: ${(e as Error).message}`);
              continue;
            }
            for (const d of data) {
              const mismatch = await checkKernel(gpu.device, kernel, d);
              checked++;
              if (mismatch) failures.push(`${what} m=${d.m} ${name}: ${mismatch}`);
            }
          }
        } finally {
          data.forEach(destroyCheckData);
        }
      }
      assert.ok(checked >= SHAPES.length * ROWS.length * 8, `checked only ${checked} kernels`);
      assert.deepEqual([...tested].sort(), [...FAMILIES].sort(), "every family was tested");
      assert.deepEqual(failures, [], `KERNEL_TEST_SEED=${SEED}`);
    },
  });
}

/** A correct Y for a shape: reference values in place, NaN poison everywhere else. */
function correctOutput(shape: GemmShape, m: number) {
  const random = seededRandom(7);
  const extent = shapeExtents(shape, m);
  const x = Float32Array.from({ length: extent.x }, () => random() - 0.5);
  const w = Float64Array.from({ length: extent.w }, () => random() - 0.5);
  const rows = Array.from({ length: m }, (_, i) => i);
  const reference = referenceRows(shape, x, w, rows);
  const y = new Float32Array(extent.y + 5).fill(NaN);
  const batches = shape.xOffsets.length;
  for (const r of rows) {
    for (let b = 0; b < batches; b++) {
      for (let c = 0; c < shape.n; c++) {
        y[r * shape.yRowStride + shape.yOffsets[b] + c] =
          reference.values[(r * batches + b) * shape.n + c];
      }
    }
  }
  return { y, rows, reference };
}

Deno.test("compareOutput() accepts a correct output and catches one wrong element", () => {
  const shape = batchedShape(tiny)!;
  const m = 3;
  const { y, rows, reference } = correctOutput(shape, m);
  assert.equal(compareOutput(shape, m, y, rows, reference), undefined);
  const at = 2 * shape.yRowStride + shape.yOffsets[1] + 5; // row 2, batch 1, column 5
  const wrong = y.slice();
  wrong[at] += 1e-3;
  assert.match(compareOutput(shape, m, wrong, rows, reference) ?? "", /row 2 batch 1 column 5/);
  const missing = y.slice();
  missing[at] = NaN; // an element the kernel never wrote
  assert.ok(compareOutput(shape, m, missing, rows, reference), "an unwritten element is caught");
});

Deno.test("compareOutput() catches a write outside the output region", () => {
  const shape = unfused[1].shape; // segment b: columns 40..47 of a 80-wide row
  const m = 3;
  const { y, rows, reference } = correctOutput(shape, m);
  assert.equal(compareOutput(shape, m, y, rows, reference), undefined);
  for (const at of [0, shape.yOffsets[0] - 1, shape.yOffsets[0] + shape.n, y.length - 1]) {
    const stray = y.slice();
    stray[at] = 0;
    assert.match(
      compareOutput(shape, m, stray, rows, reference) ?? "",
      new RegExp(`Y\\[${at}\\]`),
      `write at ${at}`,
    );
  }
});

Deno.test({
  name: "checkKernel() catches kernels compiled for the wrong shape",
  fn: async () => {
    const shape = fusedShape(tiny);
    const config: KernelConfig = { family: "tile", bm: 16, bn: 32, bk: 8, rm: 2, rn: 2, vec: 4 };
    const data = makeCheckData(gpu.device, shape, "f32", 3, SEED);
    try {
      const good = await compileKernel(gpu.device, config, shape, "f32");
      assert.equal(await checkKernel(gpu.device, good, data), undefined);
      // One column short: the last column keeps its NaN poison.
      const short = await compileKernel(gpu.device, config, { ...shape, n: shape.n - 1 }, "f32");
      assert.ok(await checkKernel(gpu.device, short, data), "a missing column is caught");
      // A wider row stride: rows land in the wrong place, some past the output.
      const strided = await compileKernel(
        gpu.device,
        config,
        { ...shape, yRowStride: shape.yRowStride + 1 },
        "f32",
      );
      assert.ok(await checkKernel(gpu.device, strided, data), "a misplaced row is caught");
      // Reads the wrong weights.
      const shifted = await compileKernel(gpu.device, config, { ...shape, wOffset: 4 }, "f32");
      assert.ok(await checkKernel(gpu.device, shifted, data), "wrong weights are caught");
    } finally {
      destroyCheckData(data);
    }
  },
});

Deno.test({
  name: "an unfused GEMM is checked on its stage's buffers: its own columns, and no others",
  fn: async () => {
    const config: KernelConfig = { family: "tile", bm: 16, bn: 32, bk: 8, rm: 2, rn: 2, vec: 4 };
    const stage = makeCheckData(gpu.device, fusedShape(tiny), "f32", 3, SEED);
    try {
      const parts = unfusedShapes(tiny).filter((u) => u.stage === "fused").map((u) => u.shape);
      const views = parts.map((shape) => checkDataWithin(stage, shape));
      for (const [i, shape] of parts.entries()) {
        const kernel = await compileKernel(gpu.device, config, shape, "f32");
        assert.equal(await checkKernel(gpu.device, kernel, views[i]), undefined, `part ${i}`);
        // The same kernel checked as the next part: other columns, so it is caught.
        const next = views[(i + 1) % views.length];
        assert.ok(await checkKernel(gpu.device, kernel, next), `part ${i} as the next`);
      }
      const past = { ...parts[0], wOffset: stage.wRounded.length };
      assert.throws(() => checkDataWithin(stage, past), RangeError);
      assert.throws(() => checkDataWithin(stage, past), /needs \d+ elements of w, they have/);
    } finally {
      destroyCheckData(stage);
    }
  },
});

Deno.test({
  name: "a stage's check data and the data made within it share one scratch, however it grows",
  fn: async () => {
    // H100, 2026-12-05: an unfused GEMM's check of a stream-K config grew the scratch, destroying
    // the one its stage's data still held; the stage's next check read back zeros.
    const stage = makeCheckData(gpu.device, fusedShape(tiny), "f32", 3, SEED);
    try {
      const [part] = unfusedShapes(tiny).filter((u) => u.stage === "fused");
      const split = await compileKernel(gpu.device, splitConfig(2), stage.shape, "f32");
      const stream = { ...splitConfig(1), stream: 64 } as KernelConfig;
      const wide = await compileKernel(gpu.device, stream, part.shape, "f32");
      assert.equal(await checkKernel(gpu.device, split, stage), undefined, "the first scratch");
      // Made after the stage's scratch, as the tuner makes it: the unfused GEMMs come later.
      const view = checkDataWithin(stage, part.shape);
      assert.equal(await checkKernel(gpu.device, wide, view), undefined, "grown within");
      assert.equal(await checkKernel(gpu.device, split, stage), undefined, "the stage after it");
    } finally {
      destroyCheckData(stage);
    }
  },
});

/**
 * Checks each config valid there on every shape and weight type at 37 rows (`each` sees every
 * compiled kernel first): the mismatches, named, and how many kernels were checked.
 */
async function checkOnShapes(
  configs: KernelConfig[],
  dtypes: readonly WeightDtype[],
  each: (kernel: CompiledKernel) => void = () => {},
): Promise<{ failures: string[]; checked: number }> {
  const failures: string[] = [];
  let checked = 0;
  for (const [what, shape] of SHAPES) {
    for (const dtype of dtypes) {
      const data = makeCheckData(gpu.device, shape, dtype, 37, SEED);
      try {
        for (const config of configs) {
          if (configProblem(config, shape, dtype, gpu.caps)) continue;
          const kernel = await compileKernel(gpu.device, config, shape, dtype);
          each(kernel);
          const mismatch = await checkKernel(gpu.device, kernel, data);
          if (mismatch) failures.push(`${what} ${dtype} ${configName(config)}: ${mismatch}`);
          checked++;
        }
      } finally {
        destroyCheckData(data);
      }
    }
  }
  return { failures, checked };
}

Deno.test({
  name:
    "gemv kernels with scalar (dot) accumulators match the reference at every vec and reduction",
  fn: async () => {
    const dot = (vec: number, subgroup: boolean, rm = 4, cn = 2) =>
      gemvConfig({ nc: 2, cn, lanes: 4, rm, vec, subgroup, dot: true });
    // Every vec with either reduction, and once the 64 accumulators the knob allows.
    const configs = [2, 4, 8].flatMap((vec) => [dot(vec, false), dot(vec, true)]);
    configs.push(dot(2, true, 8, 8));
    const { failures, checked } = await checkOnShapes(configs, ["f32", "f16"]);
    assert.deepEqual(failures, []);
    // vec 8 is valid with 16-bit weights only; subgroups where the adapter has them.
    assert.ok(checked >= (gpu.caps.subgroups ? 24 : 12), `${checked} kernels checked`);
  },
});

Deno.test({
  name: "gemv kernels with row groups, a set unroll or 64 lanes match the reference at 37 rows",
  fn: async () => {
    // 37 rows: the last workgroup's second or later row group starts past m or holds rows past
    // it (clamped), and every row group of a workgroup must store rows of its own.
    const rows = (rw: number, subgroup: boolean, dot: boolean, rm = 2) =>
      gemvConfig({ nc: 2, cn: 2, lanes: 4, rm, vec: 4, subgroup, dot, rw });
    const configs = [2, 4].flatMap((rw) =>
      [false, true].flatMap((subgroup) => [rows(rw, subgroup, false), rows(rw, subgroup, true)])
    );
    configs.push(rows(8, true, true, 4)); // 32 rows a workgroup: eight groups of 8 threads
    // Fewer loop iterations a trip than the default rule (up to 8 with cn 2), with and without
    // row groups.
    for (const unroll of [1, 2, 4]) {
      configs.push({ ...rows(unroll === 2 ? 2 : 1, true, true), unroll });
    }
    const { failures, checked } = await checkOnShapes(configs, ["f32", "f16"]);
    assert.deepEqual(failures, []);
    assert.ok(checked >= (gpu.caps.subgroups ? 26 : 8), `${checked} kernels checked`);
    // 64 lanes a column (bench/spaces/gemv-lanes64.yaml), reduced in workgroup memory: k 64 in
    // single values, k 128 in single values and in pairs (f32 and f16) give each lane a whole
    // number of k vectors.
    const wide = await checkOnShapes(
      [1, 2].map((vec) =>
        gemvConfig({ nc: 1, cn: 2, lanes: 64, rm: 2, vec, subgroup: false, rw: 2 })
      ),
      ["f32", "f16"],
    );
    assert.deepEqual(wide.failures, []);
    assert.equal(wide.checked, 5, "tiny fused, segment b and k 128 in singles; k 128 in pairs");
  },
});

Deno.test({
  name: "gemv kernels with X staged in workgroup memory match the reference at 37 rows",
  fn: async () => {
    // A trip of 4 k vectors (one a lane) is 1 to 16 trips on these shapes, of 16 one to four;
    // the last row group holds rows past m (staged clamped), and vec 8 stages each k vector as
    // two halves.
    const staged = (xs: number, vec: number, rw: number, subgroup: boolean, dot = true) =>
      gemvConfig({ nc: 2, cn: 2, lanes: 4, rm: 2, vec, subgroup, dot, rw, xs });
    const configs = [4, 16].flatMap((xs) =>
      [2, 4, 8].flatMap((vec) => [staged(xs, vec, 1, true), staged(xs, vec, 2, false, false)])
    );
    // Four row groups, two k vectors a lane: 128 staged vectors for 32 threads, four each; and
    // eight k vectors a lane: the whole of k = 128 in one trip.
    configs.push(staged(8, 4, 4, true), staged(32, 4, 1, true));
    // Two copies in turn, one barrier a trip: an odd and an even number of trips.
    for (const vec of [4, 8]) configs.push({ ...staged(4, vec, 2, true), xd: true });
    configs.push({ ...staged(16, 4, 1, false), xd: true }, {
      ...staged(4, 4, 2, true),
      nc: 4,
      xd: true,
    });
    const { failures, checked } = await checkOnShapes(configs, ["f32", "f16"]);
    assert.deepEqual(failures, []);
    assert.ok(checked >= (gpu.caps.subgroups ? 36 : 18), `${checked} kernels checked`);
    // A copy that stages the first trip's X every trip is caught.
    const first = await checkMutant(
      staged(4, 4, 1, false),
      (code) => code.replace(/k0 \+ (v\d+)/g, "$1"),
    );
    assert.ok(first.code, "the mutation reached the copy");
    assert.match(first.found ?? "", /expected/);
    // Two copies that do not take turns are one copy with one barrier a trip: llvmpipe runs a
    // workgroup's invocations one after another between barriers (eight at a time), so the
    // first 16, of row group 0, overwrite group 1's X with the next trip's before the last 16
    // read it.
    const one = await checkMutant(
      { ...staged(4, 4, 2, true), nc: 4, xd: true },
      (code) => code.replace("copy ^= 1u;", ""),
    );
    assert.ok(one.code, "the mutation reached the turns");
    assert.match(one.found ?? "", /expected/);
  },
});

Deno.test({
  name: "double-buffered outer kernels match the reference, split or not, with either math",
  fn: async () => {
    const { failures, checked } = await checkOnShapes([
      { ...splitConfig(1), double: true } as KernelConfig,
      { ...splitConfig(2), double: true } as KernelConfig,
      { ...splitConfig(1), bk: 8, rm: 8, double: true } as KernelConfig,
      { ...splitConfig(2), half: true, double: true } as KernelConfig,
    ], ["f32", "f16"]);
    assert.deepEqual(failures, []);
    assert.ok(checked >= 20, `${checked} kernels checked`);
  },
});

Deno.test({
  name: "f16-math outer kernels with a splatted X or two slices per fold match the reference",
  fn: async () => {
    const half = { ...splitConfig(1), half: true } as KernelConfig;
    const { failures, checked } = await checkOnShapes(
      [
        { ...half, splat: true },
        { ...half, fold: 2 },
        { ...half, splat: true, fold: 2 },
        { ...half, bk: 8, rm: 8, splat: true, fold: 2 },
        { ...half, split: 2, fold: 2 },
        { ...half, splat: true, fold: 2, double: true },
        // Runs that start and end inside tiles, on odd and even slices.
        { ...half, splat: true, fold: 2, stream: 7 },
        { ...half, fold: 2, double: true, stream: 5 },
      ] as KernelConfig[],
      ["f16"],
    );
    assert.deepEqual(failures, []);
    assert.ok(checked >= 16, `${checked} kernels checked`);
  },
});

Deno.test({
  name:
    "f16-math outer kernels with k pairs match the reference, split, folded, doubled or streamed",
  fn: async () => {
    const pairs = { ...splitConfig(1), half: true, kpair: true } as KernelConfig;
    const { failures, checked } = await checkOnShapes(
      [
        pairs,
        { ...pairs, bk: 8, rm: 8, rn: 8 },
        { ...pairs, fold: 2 },
        { ...pairs, split: 2 },
        { ...pairs, double: true },
        // Runs that start and end inside tiles, on odd and even slices.
        { ...pairs, fold: 2, stream: 7 },
        { ...pairs, double: true, stream: 5 },
      ] as KernelConfig[],
      ["f16"],
    );
    assert.deepEqual(failures, []);
    assert.ok(checked >= 14, `${checked} kernels checked`);
  },
});

Deno.test({
  name:
    "stream-K kernels match the reference for any number of workgroups, and a lost part is caught",
  fn: async () => {
    // 1 workgroup runs every tile; 3 and 7 split tiles unevenly; 64 have runs shorter than a tile
    // (tiny's k = 64 is 16 slices of bk 4), some of them empty.
    const { failures, checked } = await checkOnShapes(
      [
        ...[1, 3, 7, 64].map((stream) => ({ ...splitConfig(1), stream }) as KernelConfig),
        { ...splitConfig(1), bk: 8, rm: 8, stream: 5 } as KernelConfig,
        { ...splitConfig(1), half: true, stream: 7 } as KernelConfig,
        // Double-buffered: runs rounded up to whole pairs of slices, the last ones empty at 64.
        ...[3, 7, 64].map((stream) =>
          ({ ...splitConfig(1), double: true, stream }) as KernelConfig
        ),
        { ...splitConfig(1), bk: 8, rm: 8, double: true, stream: 5 } as KernelConfig,
      ],
      ["f32", "f16"],
      (kernel) => assert.ok(kernel.reduce, "a stream-K kernel has its reduction"),
    );
    assert.deepEqual(failures, []);
    assert.ok(checked >= 50, `${checked} kernels checked`);
    // A workgroup whose run starts inside a tile skips its partial: the reduction reads poison.
    const lazy = await checkMutant(
      { ...splitConfig(1), stream: 7 } as KernelConfig,
      (code) => code.replace("let yAt =", "if (s0 != 0u) { return; }\n    let yAt ="),
    );
    assert.match(lazy.found ?? "", /NaN|expected/);
  },
});

Deno.test({
  name:
    "stream-K kernels with a data-parallel first part match the reference, with or without stream-K tiles left",
  fn: async () => {
    // tiny's fused stage at 37 rows is 2 x 3 tiles of 32 x 32: 1 and 2 workgroups leave whole
    // waves to the data-parallel part and one wave to stream-K, 4 a wave and 2 tiles, 5 and 7 no
    // whole wave (all stream-K).
    const dp = (c: Partial<OuterConfig>) => ({ ...splitConfig(1), dp: true, ...c }) as KernelConfig;
    const { failures, checked } = await checkOnShapes(
      [
        ...[1, 2, 4, 5, 7].map((stream) => dp({ stream })),
        ...[1, 4].map((stream) => dp({ double: true, stream })),
        dp({ half: true, stream: 2 }),
        dp({ half: true, kpair: true, bk: 8, stream: 4 }),
      ],
      ["f32", "f16"],
      (kernel) => assert.ok(kernel.head && kernel.reduce, "both extra dispatches"),
    );
    assert.deepEqual(failures, []);
    assert.ok(checked >= 30, `${checked} kernels checked`);
    // A data-parallel part that leaves its last tile out is caught: Y keeps the poison there.
    const short = await checkMutant(
      dp({ stream: 2 }),
      (code) =>
        code.replace("tile < dpTiles; tile += GROUPS", "tile + 1u < dpTiles; tile += GROUPS"),
    );
    assert.ok(short.kernel.head && short.code, "the mutation reached the data-parallel part");
    assert.match(short.found ?? "", /NaN|expected/);
  },
});

/**
 * A mutant of a config, compiled for tiny's fused stage with f32 weights and checked at 37 rows:
 * what the check found (undefined: it matched the reference), the mutated WGSL and the kernel.
 */
async function checkMutant(
  config: KernelConfig,
  mutate: (code: string) => string,
): Promise<{ found: string | undefined; code: string; kernel: CompiledKernel }> {
  const shape = fusedShape(tiny);
  let code = "";
  const kernel = await compileKernel(gpu.device, config, shape, "f32", (_, wgsl) => {
    const mutated = mutate(wgsl);
    if (mutated !== wgsl) code = mutated;
    return mutated;
  });
  const data = makeCheckData(gpu.device, shape, "f32", 37, SEED);
  try {
    return { found: await checkKernel(gpu.device, kernel, data), code, kernel };
  } finally {
    destroyCheckData(data);
  }
}

/** A small split-K `outer` config. */
function splitConfig(split: number): KernelConfig {
  return {
    family: "outer",
    bm: 32,
    bn: 32,
    bk: 4,
    rm: 4,
    rn: 4,
    split,
    half: false,
    double: false,
  };
}

Deno.test({
  name:
    "nested tiles match the reference at every vec and slice depth, and a read from the wrong row is caught",
  fn: async () => {
    const configs = [
      tileConfig({ nest: true }),
      tileConfig({ nest: true, vec: 1, rm: 2, rn: 8 }),
      tileConfig({ nest: true, vec: 2, bk: 16 }),
      tileConfig({ nest: true, bm: 16, bk: 64, rm: 2, rn: 2 }), // the whole k of the k = 64 shapes
    ];
    for (const c of configs) {
      const code = kernelWgsl(c, fusedShape(tiny), "f32");
      assert.match(code, /var<workgroup> xTile: array<array<(vec\d<f32>|f32), \d+>, \d+>;/);
      assert.doesNotMatch(code, /\* PITCH/, configName(c));
    }
    const { failures, checked } = await checkOnShapes(configs, WEIGHT_DTYPES);
    assert.deepEqual(failures, []);
    assert.ok(checked >= 30, `${checked} kernels checked`);
    // A read of the row next to a thread's own: the products go wrong.
    const shifted = await checkMutant(
      tileConfig({ nest: true }),
      (code) => code.replace("xTile[lid.y + 0u][0u]", "xTile[lid.y + 1u][0u]"),
    );
    assert.ok(shifted.code, "the mutation applied");
    assert.match(shifted.found ?? "", /expected/);
  },
});

Deno.test({
  name:
    "k-quad tiles match the reference single- and double-buffered, split, stream-K, with bk 4 and with every half-math staging, and a swapped k row is caught",
  fn: async () => {
    const kq = (c: Partial<OuterConfig>) => ({ ...splitConfig(1), kq: true, ...c }) as KernelConfig;
    const configs = [
      kq({}), // bk 4: one k vector a slice
      kq({ bk: 8, rm: 8, rn: 8 }),
      kq({ bk: 16, double: true }),
      kq({ bk: 8, rm: 8, double: true, split: 2 }),
      kq({ bk: 8, double: true, stream: 4 }),
      kq({ stream: 2, dp: true }),
      kq({ bk: 8, half: true }), // quad stores
      kq({ bk: 8, half: true, splat: true, double: true }),
      kq({ bk: 8, half: true, kpair: true, stream: 4 }), // two k pairs a k vector
    ];
    const shape = fusedShape(tiny);
    for (const c of configs) {
      const { bk, half, kpair } = c as OuterConfig;
      const rows = kpair ? 2 : 4;
      const tiles = `, ${rows}>, ${bk / 4}>, ${(c as OuterConfig).double ? 2 : 1}>;`;
      const code = kernelWgsl(c, shape, half ? "f16" : "f32");
      assert.ok(code.includes(tiles), `${configName(c)}: ${tiles}`);
    }
    const { failures, checked } = await checkOnShapes(configs, WEIGHT_DTYPES);
    assert.deepEqual(failures, []);
    assert.ok(checked >= 70, `${checked} kernels checked`);
    // Two of a k vector's components stored to each other's k rows: the products go wrong.
    const swapped = await checkMutant(
      kq({ bk: 8 }),
      (code) =>
        code.replaceAll("[xq0][0u]", "[xq0][9u]").replaceAll("[xq0][1u]", "[xq0][0u]")
          .replaceAll("[xq0][9u]", "[xq0][1u]"),
    );
    assert.match(swapped.code, /\[xq0\]\[1u\]\[xr0 \/ 4u\]\[xr0 % 4u\] = xNext0\.x/);
    assert.match(swapped.found ?? "", /expected/);
  },
});

Deno.test({
  name:
    "split-K kernels match the reference at every split, a part left unwritten is caught, and a missing scratch refused",
  fn: async () => {
    const splits: number[] = [];
    const { failures } = await checkOnShapes(
      [2, 4, 8, 16, 32].map(splitConfig),
      ["f16"],
      (kernel) => {
        assert.ok(kernel.reduce, "a split kernel has its reduction");
        if (kernel.config.family === "outer") splits.push(kernel.config.split);
      },
    );
    assert.deepEqual(failures, []);
    // k = 128 is 32 slices of 4: split 32 leaves each workgroup one slice.
    assert.ok(splits.includes(16) && splits.includes(32), `checked splits ${splits}`);
    // The last part skips its stores: its slab of the scratch keeps the poison.
    const shape = fusedShape(tiny);
    const lazy = await compileKernel(
      gpu.device,
      splitConfig(2),
      shape,
      "f16",
      (_, code) => code.replace("let yPart =", "if (part == 1u) { return; }\n  let yPart ="),
    );
    const data = makeCheckData(gpu.device, shape, "f16", 3, SEED);
    try {
      assert.match(await checkKernel(gpu.device, lazy, data) ?? "", /NaN|expected/);
      // Without a scratch buffer the split kernel is refused before anything is recorded.
      const { params, xBuffer: x, wBuffer: w, yBuffer: y } = data;
      const groups = kernelBindGroup(gpu.device, { params, x, w, y });
      const pass = gpu.device.createCommandEncoder().beginComputePass();
      assert.throws(
        () => dispatchKernel(pass, lazy, groups, 3),
        (e) => e instanceof RangeError && /needs \d+ bytes of scratch, got 0/.test(e.message),
      );
      pass.end();
    } finally {
      destroyCheckData(data);
    }
  },
});

/**
 * Batched shapes for the stream-K reduction's two paths, k = 64: the vec4 one has three batches
 * of 36 columns (a partial column tile at bn 32) at offsets that are multiples of 4 in rows of
 * 116 (gaps between and after them); each scalar one breaks one condition of `streamLanes`.
 */
const REDUCE_BASE: GemmShape = {
  k: 64,
  n: 36,
  xRowStride: 128,
  xOffsets: [0, 64],
  wOffset: 0,
  yOffsets: [0, 40],
  yRowStride: 80,
};
const REDUCE_SHAPES: { what: string; lanes: 1 | 4; shape: GemmShape }[] = [
  {
    what: "three batches, every row and batch on a vec4",
    lanes: 4,
    shape: {
      ...REDUCE_BASE,
      xRowStride: 192,
      xOffsets: [0, 64, 128],
      yOffsets: [0, 40, 76],
      yRowStride: 116,
    },
  },
  { what: "n = 38, not a multiple of 4", lanes: 1, shape: { ...REDUCE_BASE, n: 38 } },
  {
    what: "a batch offset of 42, not a multiple of 4",
    lanes: 1,
    shape: { ...REDUCE_BASE, yOffsets: [4, 42] },
  },
  {
    what: "a row stride of 78, not a multiple of 4",
    lanes: 1,
    shape: { ...REDUCE_BASE, yRowStride: 78 },
  },
];

/** Stream-K configs for the reduction's tests: bn 32 and 64 (two vec4 workgroups a tile). */
const REDUCE_CONFIGS: OuterConfig[] = [
  ...[3, 64].map((stream) => ({ ...splitConfig(1), stream }) as OuterConfig),
  { ...splitConfig(1), bn: 64, stream: 7 } as OuterConfig,
  { ...splitConfig(1), bm: 64, bn: 64, double: true, stream: 5 } as OuterConfig,
];

Deno.test("streamLanes() takes a vec4 only where Y allows it, and reductionGrid() follows it", () => {
  for (const { what, lanes, shape } of REDUCE_SHAPES) {
    for (const c of REDUCE_CONFIGS) {
      assert.equal(streamLanes(c, shape), lanes, what);
      const [x, y, z] = reductionGrid(c, shape, 37);
      assert.equal(x, Math.ceil((c.bm * c.bn) / (256 * lanes)), `${what}: workgroups a tile`);
      const tiles = Math.ceil(37 / c.bm) * Math.ceil(shape.n / c.bn) * shape.yOffsets.length;
      assert.deepEqual([y, z], [tiles, 1], `${what}: a workgroup row per tile`);
      const wgsl = streamReduceWgsl(c, shape);
      assert.equal(wgsl.includes("array<vec4<f32>>"), lanes === 4, `${what}: the shader's view`);
    }
  }
  const c = REDUCE_CONFIGS[0];
  assert.equal(reductionGrid(c, REDUCE_SHAPES[0].shape, 37)[0], 1, "1024 elements, 256 vec4s");
  assert.equal(reductionGrid(c, REDUCE_SHAPES[1].shape, 37)[0], 4, "1024 elements, one each");
  assert.equal(streamLanes({ ...c, bn: 2 }, REDUCE_SHAPES[0].shape), 1, "bn 2");
});

Deno.test({
  name:
    "the stream-K reduction matches the reference with a vec4 per thread and on its scalar fallback",
  fn: async () => {
    const failures: string[] = [];
    let checked = 0;
    for (const { what, lanes, shape } of REDUCE_SHAPES) {
      // 37 rows: a partial last row tile at bm 32 and 64; 5: fewer rows than a tile.
      const data = [37, 5].map((m) => makeCheckData(gpu.device, shape, "f32", m, SEED));
      try {
        for (const config of REDUCE_CONFIGS) {
          assert.equal(configProblem(config, shape, "f32", gpu.caps), undefined, what);
          assert.equal(streamLanes(config, shape), lanes, what);
          const kernel = await compileKernel(gpu.device, config, shape, "f32");
          assert.ok(kernel.reduce, "a stream-K kernel has its reduction");
          for (const d of data) {
            const mismatch = await checkKernel(gpu.device, kernel, d);
            if (mismatch) failures.push(`${what} m=${d.m} ${configName(config)}: ${mismatch}`);
            checked++;
          }
        }
      } finally {
        data.forEach(destroyCheckData);
      }
    }
    assert.deepEqual(failures, [], `KERNEL_TEST_SEED=${SEED}`);
    assert.equal(checked, REDUCE_SHAPES.length * REDUCE_CONFIGS.length * 2);
  },
});
