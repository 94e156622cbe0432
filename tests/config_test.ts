import assert from "node:assert/strict";
import type { DeviceCaps, GemvConfig, KernelConfig } from "../kernels/config.ts";
import {
  configName,
  configProblem,
  DOUBLE_ROWS,
  MAX_SPLIT,
  parseConfigName,
  scratchBytes,
  SPLIT_ROWS,
  splitRows,
  STREAM_ROWS,
  workgroupBytes,
  workgroupRows,
  workgroupThreads,
} from "../kernels/config.ts";
import { kernelWgsl } from "../kernels/generate.ts";
import type { GemmShape } from "../kernels/problem.ts";
import { batchedShape, fusedShape, kimiLinearSpec } from "../kernels/problem.ts";
import { configErrorBound, halfErrorBound } from "../kernels/reference.ts";
import { DEFAULT_SPACE, enumerateSpace, nextPow2, suitsRows } from "../kernels/space.ts";
import { CAPS, gemvConfig, tileConfig } from "./helpers.ts";

const SUBGROUP_CAPS: DeviceCaps = { ...CAPS, subgroups: true, subgroupMinSize: 32 };

function shape(k: number, extra: Partial<GemmShape> = {}): GemmShape {
  return {
    k,
    n: 64,
    xOffsets: [0],
    xRowStride: k,
    wOffset: 0,
    yOffsets: [0],
    yRowStride: 64,
    ...extra,
  };
}

const tile = tileConfig;
const gemv = gemvConfig;

Deno.test("configName() writes the documented names of both families", () => {
  assert.equal(
    configName({ family: "tile", bm: 64, bn: 64, bk: 16, rm: 4, rn: 4, vec: 4 }),
    "tile-bm64-bn64-bk16-rm4-rn4-v4",
  );
  assert.match(configName(gemv()), /^gemv-nc4-.*l16-rm1-v4$/);
  assert.match(configName(gemv({ subgroup: true, lanes: 32 })), /^gemv-nc4-.*l32-rm1-v4-sg$/);
  assert.notEqual(configName(gemv({ rm: 2 })), configName(gemv({ rm: 1 })));
  const dot = gemv({ subgroup: true, lanes: 32, dot: true });
  assert.match(configName(dot), /^gemv-nc4-.*l32-rm1-v4-sg-dt$/);
  assert.deepEqual(parseConfigName(configName(dot)), dot);
  const rows = gemv({ subgroup: true, lanes: 32, dot: true, rw: 4 });
  assert.match(configName(rows), /^gemv-nc4-.*l32-rm1-v4-sg-dt-rw4$/);
  assert.deepEqual(parseConfigName(configName(rows)), rows);
  assert.equal(configName(gemv({ rw: 1 })), configName(gemv()), "rw 1 is left out of the name");
  const short = gemv({ subgroup: true, dot: true, rw: 2, unroll: 2 });
  assert.match(configName(short), /-sg-dt-rw2-u2$/);
  assert.deepEqual(parseConfigName(configName(short)), short);
});

Deno.test("configProblem() bounds a GEMV's row groups (threads, 64 rows) and its unroll (8)", () => {
  const shape = fusedShape({ name: "t", k: 256, segments: [{ name: "a", n: 64 }] });
  const rows = gemv({ nc: 2, lanes: 16, rm: 8, rw: 8 }); // 256 threads, 64 rows
  assert.equal(configProblem(rows, shape, "f32", CAPS), undefined);
  assert.equal(workgroupThreads(rows), 256);
  assert.equal(workgroupRows(rows), 64);
  assert.match(configProblem({ ...rows, rm: 16 }, shape, "f32", CAPS) ?? "", /128 rows per/);
  assert.match(configProblem({ ...rows, rw: 3 }, shape, "f32", CAPS) ?? "", /power of two/);
  assert.match(configProblem({ ...rows, rw: 16 }, shape, "f32", CAPS) ?? "", /512 threads/);
  assert.equal(configProblem({ ...rows, unroll: 8 }, shape, "f32", CAPS), undefined);
  assert.match(configProblem({ ...rows, unroll: 16 }, shape, "f32", CAPS) ?? "", /exceeds 8/);
  assert.match(configProblem({ ...rows, unroll: 3 }, shape, "f32", CAPS) ?? "", /power of two/);
  // A trip loads `unroll x cn` weight vectors: 8 x 2 by the default rule (16 k vectors a lane
  // at k 256), else as set.
  const loads = (c: GemvConfig) => kernelWgsl(c, shape, "f32").match(/= loadW\(/g)?.length;
  const walk = gemv({ lanes: 4, vec: 4, cn: 2 });
  assert.equal(loads(walk), 16);
  assert.equal(loads({ ...walk, unroll: 2 }), 4);
});

Deno.test("configProblem() takes a staged X (xs) that divides k / vec in whole lanes and fits", () => {
  // k 2304 as in Kimi Linear: 576 vectors of 4, 288 of 8.
  const k2304 = shape(2304);
  const h100 = { ...SUBGROUP_CAPS, maxWorkgroupStorage: 49152 };
  const staged = gemv({
    nc: 2,
    cn: 4,
    lanes: 32,
    rm: 4,
    rw: 4,
    subgroup: true,
    dot: true,
    xs: 192,
  });
  assert.equal(configName(staged), "gemv-nc2-cn4-l32-rm4-v4-sg-dt-rw4-xs192");
  assert.deepEqual(parseConfigName(configName(staged)), staged);
  // 16 rows of 192 vec4s: exactly the H100's 48 KiB, three times the portable limit.
  assert.equal(workgroupBytes(staged), 16 * 192 * 16);
  assert.equal(configProblem(staged, k2304, "f32", h100), undefined);
  assert.match(configProblem(staged, k2304, "f32", SUBGROUP_CAPS) ?? "", /the device's 16384/);
  assert.match(configProblem({ ...staged, rm: 8 }, k2304, "f32", h100) ?? "", /98304 bytes/);
  const xs = (n: number, more = {}) =>
    configProblem({ ...staged, xs: n, ...more }, k2304, "f32", h100);
  assert.match(xs(144) ?? "", /1 to 8 times 32 lanes/, "not whole lanes");
  // A trip holds 32 / cn k vectors of weights a lane, at most: 8 with cn 4, 16 with cn 2.
  assert.match(xs(288, { rw: 1 }) ?? "", /1 to 8 times 32 lanes \(32 \/ cn\)/, "9 a lane, cn 4");
  assert.equal(xs(288, { rw: 1, cn: 2 }), undefined, "9 k vectors a lane with cn 2");
  assert.match(xs(576, { rw: 1, rm: 2, cn: 2 }) ?? "", /1 to 16 times/, "18 a lane, cn 2");
  assert.equal(xs(576, { rw: 1, rm: 2, cn: 1 }), undefined, "the whole of k in one trip, cn 1");
  assert.match(xs(128) ?? "", /divide k \/ vec = 576/);
  assert.equal(xs(32), undefined, "one k vector a lane");
  assert.match(xs(-32) ?? "", /1 to 8 times 32 lanes/, "negative");
  assert.match(xs(32, { unroll: 2 }) ?? "", /no unroll/);
  // Two copies: twice the bytes, one more knob in the name, and only with xs.
  const two = { ...staged, xs: 96, xd: true };
  assert.equal(configName(two), "gemv-nc2-cn4-l32-rm4-v4-sg-dt-rw4-xs96-xd");
  assert.deepEqual(parseConfigName(configName(two)), two);
  assert.equal(workgroupBytes(two), 2 * workgroupBytes({ ...two, xd: false }));
  assert.equal(configProblem(two, k2304, "f32", h100), undefined);
  assert.match(xs(192, { xd: true }) ?? "", /98304 bytes/);
  assert.match(configProblem({ ...two, xs: 0 }, k2304, "f32", h100) ?? "", /need xs/);
  // vec 8 stages a k vector as two vec4s: the same bytes for half as many vectors.
  const half = { ...staged, vec: 8, xs: 96 };
  assert.equal(workgroupBytes(half), 16 * 96 * 32);
  assert.equal(configProblem(half, k2304, "f16", h100), undefined);
  // The space enumerates it, and 0 leaves it out.
  const space = { gemv: { ...DEFAULT_SPACE.gemv!, xs: [0, 64], xd: [false, true] } };
  const names = enumerateSpace(space).map(configName);
  assert.equal(names.filter((n) => n.includes("-xs64")).length, (names.length * 2) / 3);
  assert.equal(names.filter((n) => n.endsWith("-xd")).length, names.length / 3, "xd with xs only");
});

Deno.test("configProblem() lets scalar (dot) accumulators reach rm x cn = 64, not vector ones", () => {
  const shape = fusedShape({ name: "t", k: 256, segments: [{ name: "a", n: 64 }] });
  const wide = gemv({ rm: 16, cn: 4, nc: 1 }); // within the default limits
  assert.match(configProblem(wide, shape, "f32", CAPS) ?? "", /more than 32 accumulators/);
  assert.equal(configProblem({ ...wide, dot: true }, shape, "f32", CAPS), undefined);
  assert.match(
    configProblem({ ...wide, cn: 8, dot: true }, shape, "f32", CAPS) ?? "",
    /more than 64 accumulators/,
  );
  assert.match(configProblem(gemv({ vec: 1, dot: true }), shape, "f32", CAPS) ?? "", /needs vec/);
});

Deno.test("parseConfigName() inverts configName() for every config of the default space", () => {
  const space = enumerateSpace(DEFAULT_SPACE);
  assert.ok(space.some((c) => c.family === "tile") && space.some((c) => c.family === "gemv"));
  const names = new Set<string>();
  for (const c of space) {
    const name = configName(c);
    assert.deepEqual(parseConfigName(name), c, name);
    names.add(name);
  }
  assert.equal(names.size, space.length, "names are unique");
});

Deno.test("parseConfigName() rejects names that are not config names with a SyntaxError", () => {
  for (
    const bad of [
      "nope",
      "",
      "tile-bm64",
      "gemv-nc4-l16-rm1-v4-sg-extra",
      "tile-bm-1-bn2-bk2-rm1-rn1-v1",
    ]
  ) {
    assert.throws(() => parseConfigName(bad), SyntaxError, JSON.stringify(bad));
  }
});

Deno.test("workgroupThreads() and workgroupBytes() count what each family declares", () => {
  assert.equal(workgroupThreads(tile({ bm: 64, bn: 32, rm: 4, rn: 2 })), 16 * 16);
  assert.equal(workgroupThreads(gemv({ nc: 8, lanes: 32 })), 256);
  // (bm + bn) rows of (bk / vec + 1) padded vectors of 4 floats.
  assert.equal(workgroupBytes(tile({ bm: 32, bn: 32, bk: 8, vec: 4 })), 64 * 3 * 4 * 4);
  assert.equal(workgroupBytes(gemv({ nc: 4, lanes: 16, rm: 2 })), 2 * 64 * 4);
  assert.equal(workgroupBytes(gemv({ subgroup: true })), 0);
});

Deno.test("configProblem() accepts plain valid configs of both families", () => {
  assert.equal(configProblem(tile(), shape(64), "f32", CAPS), undefined);
  assert.equal(configProblem(tile(), shape(64), "f16", CAPS), undefined);
  assert.equal(configProblem(gemv(), shape(64), "bf16", CAPS), undefined);
  assert.equal(configProblem(gemv({ subgroup: true }), shape(64), "f32", SUBGROUP_CAPS), undefined);
  const kimi = kimiLinearSpec({ tp: 4 });
  assert.equal(configProblem(tile(), fusedShape(kimi), "f16", CAPS), undefined);
  assert.equal(configProblem(gemv(), batchedShape(kimi)!, "f16", CAPS), undefined);
});

Deno.test("configProblem() rejects more threads than the device allows", () => {
  const c = tile({ bm: 64, bn: 64, rm: 2, rn: 2, bk: 4 }); // 32 x 32 threads
  const reason = configProblem(c, shape(64), "f32", CAPS);
  assert.match(reason ?? "", /1024 threads .* 256/);
  assert.equal(
    configProblem(c, shape(64), "f32", {
      ...CAPS,
      maxInvocations: 1024,
      maxWorkgroupSizeX: 1024,
      maxWorkgroupSizeY: 1024,
    }),
    undefined,
  );
  assert.match(configProblem(gemv({ nc: 8, lanes: 64 }), shape(64), "f32", CAPS) ?? "", /threads/);
});

Deno.test("configProblem() rejects more workgroup memory than the device allows", () => {
  const c = tile({ bm: 128, bn: 128, bk: 32, rm: 8, rn: 8 }); // 256 threads, 36 KiB
  const reason = configProblem(c, shape(64), "f32", CAPS);
  assert.match(reason ?? "", /36864 bytes of workgroup memory/);
  const big = configProblem(c, shape(64), "f32", { ...CAPS, maxWorkgroupStorage: 65536 });
  assert.equal(big, undefined);
  const g = gemv({ nc: 4, lanes: 64, rm: 16 }); // 16 * 256 * 4 = 16 KiB
  assert.match(
    configProblem(g, shape(256), "f32", { ...CAPS, maxWorkgroupStorage: 8192 }) ?? "",
    /workgroup memory/,
  );
});

Deno.test("configProblem() rejects a vec that does not divide k, the offsets or the strides", () => {
  assert.match(configProblem(tile({ vec: 4 }), shape(66), "f32", CAPS) ?? "", /multiple/);
  assert.match(
    configProblem(gemv({ vec: 4, lanes: 8 }), shape(64, { xOffsets: [0, 2] }), "f32", CAPS) ?? "",
    /multiple/,
  );
  assert.match(
    configProblem(gemv({ vec: 4, lanes: 8 }), shape(64, { xRowStride: 66 }), "f32", CAPS) ?? "",
    /multiple/,
  );
  assert.match(
    configProblem(gemv({ vec: 4, lanes: 8 }), shape(64, { wOffset: 6 }), "f32", CAPS) ?? "",
    /multiple/,
  );
  // The same offsets are fine with vec 2.
  assert.equal(
    configProblem(
      gemv({ vec: 2, lanes: 8 }),
      shape(64, { xOffsets: [0, 2], wOffset: 6 }),
      "f32",
      CAPS,
    ),
    undefined,
  );
});

Deno.test("configProblem() rejects vec 1 with 16-bit weights, which are packed in pairs", () => {
  for (const dtype of ["f16", "bf16"] as const) {
    assert.match(
      configProblem(gemv({ vec: 1 }), shape(64), dtype, CAPS) ?? "",
      /packed in pairs/,
    );
    assert.match(
      configProblem(tile({ vec: 1 }), shape(64), dtype, CAPS) ?? "",
      /packed in pairs/,
    );
  }
  assert.equal(configProblem(gemv({ vec: 1 }), shape(64), "f32", CAPS), undefined);
});

Deno.test("configProblem() rejects a k that is not a multiple of bk", () => {
  assert.match(configProblem(tile({ bk: 16 }), shape(72), "f32", CAPS) ?? "", /k 72 .* bk 16/);
  assert.equal(configProblem(tile({ bk: 8 }), shape(72), "f32", CAPS), undefined);
});

Deno.test("configProblem() rejects gemv lanes that do not divide k / vec", () => {
  // k / vec = 24, not a multiple of 16 lanes.
  assert.match(configProblem(gemv({ lanes: 16 }), shape(96), "f32", CAPS) ?? "", /16 lanes/);
  assert.equal(configProblem(gemv({ lanes: 8 }), shape(96), "f32", CAPS), undefined);
});

Deno.test("configProblem() rejects subgroup reduction on a device without subgroups", () => {
  assert.match(
    configProblem(gemv({ subgroup: true }), shape(64), "f32", CAPS) ?? "",
    /no subgroups/,
  );
  // More lanes than the smallest subgroup cannot be reduced by one subgroup.
  assert.match(
    configProblem(gemv({ subgroup: true, lanes: 64 }), shape(256), "f32", SUBGROUP_CAPS) ?? "",
    /64 lanes exceed the smallest subgroup \(32\)/,
  );
});

Deno.test("configProblem() rejects sizes that are not powers of two and oversized blocks", () => {
  assert.match(configProblem(tile({ bm: 48 }), shape(64), "f32", CAPS) ?? "", /power of two/);
  assert.match(configProblem(gemv({ vec: 16 }), shape(64), "f32", CAPS) ?? "", /vec 16/);
  assert.match(configProblem(tile({ rm: 64, bm: 32 }), shape(64), "f32", CAPS) ?? "", /rm and rn/);
  assert.match(configProblem(tile({ bk: 2, vec: 4 }), shape(64), "f32", CAPS) ?? "", /bk/);
  assert.match(
    configProblem(gemv({ rm: 32, lanes: 8, nc: 1 }), shape(64), "f32", CAPS) ?? "",
    /16 rows/,
  );
});

Deno.test("suitsRows() sends few rows to gemv and many rows to tiles", () => {
  assert.equal(suitsRows(gemv({ rm: 1 }), 1), true);
  assert.equal(suitsRows(gemv({ rm: 4 }), 1), false, "more rows per workgroup than m needs");
  assert.equal(suitsRows(gemv({ rm: 4 }), 3), true);
  assert.equal(suitsRows(gemv({ rm: 1 }), 64), false);
  assert.equal(suitsRows(gemv({ rm: 4, rw: 4 }), 64), true, "row groups reach 64 rows");
  assert.equal(suitsRows(gemv({ rm: 4, rw: 4 }), 8), false, "16 rows a workgroup for 8");
  assert.equal(suitsRows(gemv({ rm: 2, rw: 2 }), 16), true, "4 rows of 16: a quarter");
  assert.equal(suitsRows(tile({ bm: 16 }), 4), false);
  assert.equal(suitsRows(tile({ bm: 16 }), 8), true);
  assert.equal(suitsRows(tile({ bm: 128 }), 16), false);
  assert.equal(suitsRows(tile({ bm: 128 }), 100), true);
  assert.deepEqual([0, 1, 3, 4, 5, 100].map(nextPow2), [1, 1, 4, 4, 8, 128]);
  // Double buffering: f32 math, from DOUBLE_ROWS rows times split.
  const db = { ...outer(1), double: true } as KernelConfig;
  assert.equal(suitsRows(db, DOUBLE_ROWS), true);
  assert.equal(suitsRows(db, DOUBLE_ROWS / 2), false);
  assert.equal(suitsRows({ ...db, half: true } as KernelConfig, DOUBLE_ROWS), false);
  const db2 = { ...db, split: 2 } as KernelConfig;
  assert.equal(suitsRows(db2, DOUBLE_ROWS / 2), true, "split 2 doubles the rows it counts");
  assert.equal(suitsRows(db2, DOUBLE_ROWS / 4), false);
  assert.equal(suitsRows(outer(1), DOUBLE_ROWS / 2), true, "the single-buffered tile is kept");
});

/** A small `outer` config, split `split` ways. */
function outer(split: number): KernelConfig {
  return {
    family: "outer",
    bm: 32,
    bn: 64,
    bk: 16,
    rm: 4,
    rn: 4,
    split,
    half: false,
    double: false,
  };
}

Deno.test("split-K and half math: names, validation against k and the scratch limit, and the rows it suits", () => {
  assert.equal(configName(outer(1)), "outer-bm32-bn64-bk16-rm4-rn4", "unsplit names are unchanged");
  assert.equal(configName(outer(4)), "outer-bm32-bn64-bk16-rm4-rn4-s4");
  assert.deepEqual(parseConfigName("outer-bm32-bn64-bk16-rm4-rn4-s4"), outer(4));
  assert.deepEqual(parseConfigName("outer-bm32-bn64-bk16-rm4-rn4"), outer(1));
  const half = { ...outer(2), half: true } as KernelConfig;
  assert.equal(configName(half), "outer-bm32-bn64-bk16-rm4-rn4-s2-h");
  assert.deepEqual(parseConfigName("outer-bm32-bn64-bk16-rm4-rn4-s2-h"), half);
  assert.match(configProblem(half, shape(2048), "bf16", CAPS) ?? "", /f16 weights, not bf16/);
  assert.match(configProblem(half, shape(2048), "f16", CAPS) ?? "", /shader-f16/);
  assert.equal(configProblem(half, shape(2048), "f16", { ...CAPS, shaderF16: true }), undefined);
  assert.equal(configProblem(outer(8), shape(2048), "f32", CAPS), undefined);
  assert.match(configProblem(outer(8), shape(64), "f32", CAPS) ?? "", /4 slices do not split/);
  assert.match(configProblem(outer(3), shape(2048), "f32", CAPS) ?? "", /split 3/);
  assert.equal(configProblem(outer(MAX_SPLIT), shape(2048), "f32", CAPS), undefined);
  assert.match(configProblem(outer(MAX_SPLIT * 2), shape(2048), "f32", CAPS) ?? "", /split 64/);
  const small = { ...CAPS, maxStorageBinding: (SPLIT_ROWS / 2) * 64 * 4 - 1 };
  assert.match(configProblem(outer(2), shape(2048), "f32", small) ?? "", /scratch of 2048 x 64/);
  assert.equal(configProblem(outer(1), shape(2048), "f32", small), undefined);
  // A binding that holds half of SPLIT_ROWS rows: split-K is valid, and tried at half the rows.
  const halfRows = { ...CAPS, maxStorageBinding: SPLIT_ROWS * 64 * 4 - 1 };
  assert.equal(configProblem(outer(2), shape(2048), "f32", halfRows), undefined);
  assert.equal(splitRows(shape(2048), halfRows), SPLIT_ROWS / 2);
  assert.equal(splitRows(shape(2048), CAPS), SPLIT_ROWS);
  assert.equal(suitsRows(outer(2), SPLIT_ROWS / 2, splitRows(shape(2048), halfRows)), false);
  assert.equal(suitsRows(outer(2), SPLIT_ROWS / 4, splitRows(shape(2048), halfRows)), true);
  assert.equal(suitsRows(outer(8), SPLIT_ROWS / 8), true);
  assert.equal(suitsRows(outer(8), SPLIT_ROWS / 8 + 1), false, "scratch past SPLIT_ROWS rows");
  assert.equal(suitsRows(outer(2), SPLIT_ROWS / 2), true);
  assert.equal(suitsRows(outer(1), 16384), true);
  const deep = { ...outer(1), bk: 32 } as KernelConfig;
  assert.equal(suitsRows(deep, 4096), false, "32-step slices only with f16 math");
  assert.equal(suitsRows({ ...deep, half: true } as KernelConfig, 4096), true);
  const double = { ...half, double: true } as KernelConfig;
  assert.equal(configName(double), "outer-bm32-bn64-bk16-rm4-rn4-s2-h-db");
  assert.deepEqual(parseConfigName("outer-bm32-bn64-bk16-rm4-rn4-s2-h-db"), double);
  assert.equal(workgroupBytes(double), 2 * workgroupBytes(half));
  const tight = { ...CAPS, shaderF16: true, maxWorkgroupStorage: workgroupBytes(half) };
  assert.equal(configProblem(half, shape(2048), "f16", tight), undefined);
  assert.match(configProblem(double, shape(2048), "f16", tight) ?? "", /workgroup/);
  const odd = { ...double, half: false, split: 1 } as KernelConfig;
  assert.equal(configProblem(odd, shape(32), "f32", CAPS), undefined, "2 slices");
  assert.match(configProblem(odd, shape(48), "f32", CAPS) ?? "", /two slices per trip, and 3/);
});

Deno.test("stream-K: names, validation, the rows it suits and its scratch", () => {
  const plain = outer(1);
  const stream = { ...plain, stream: 264 } as KernelConfig;
  assert.equal(configName(stream), "outer-bm32-bn64-bk16-rm4-rn4-sk264");
  assert.deepEqual(parseConfigName("outer-bm32-bn64-bk16-rm4-rn4-sk264"), stream);
  assert.deepEqual(parseConfigName(configName({ ...plain, stream: 0 } as KernelConfig)), plain);
  assert.equal(configProblem(stream, shape(2048), "f32", CAPS), undefined);
  assert.match(
    configProblem({ ...stream, split: 2 } as KernelConfig, shape(2048), "f32", CAPS) ?? "",
    /not for split-K/,
  );
  // Double-buffered: whole pairs of slices (shape(k) has k / bk slices per tile).
  const pairs = { ...stream, double: true } as KernelConfig;
  assert.equal(configProblem(pairs, shape(2048), "f32", CAPS), undefined);
  assert.match(configProblem(pairs, shape(48), "f32", CAPS) ?? "", /two slices per trip, and 3/);
  assert.deepEqual([32, 64, 256, STREAM_ROWS + 1].map((m) => suitsRows(pairs, m)), [
    false,
    true,
    true,
    false,
  ]);
  assert.equal(suitsRows({ ...pairs, half: true } as KernelConfig, 256), false, "not f16 math");
  assert.match(
    configProblem({ ...stream, stream: 1.5 } as KernelConfig, shape(2048), "f32", CAPS) ?? "",
    /not an integer/,
  );
  const small = { ...CAPS, maxStorageBinding: scratchBytes(stream, shape(2048), STREAM_ROWS) - 1 };
  assert.match(configProblem(stream, shape(2048), "f32", small) ?? "", /stream-K scratch/);
  assert.deepEqual([32, 64, STREAM_ROWS, STREAM_ROWS + 1].map((m) => suitsRows(stream, m)), [
    false,
    true,
    true,
    false,
  ]);
  // Every tile of the output, and one partial tile per workgroup.
  assert.equal(scratchBytes(stream, shape(2048), 33), (2 * 1 + 264) * 32 * 64 * 4);
  const outers = enumerateSpace({ outer: { ...DEFAULT_SPACE.outer!, stream: [0, 132] } })
    .filter((c) => c.family === "outer");
  assert.ok(outers.some((c) => c.family === "outer" && c.stream === 132));
  assert.ok(outers.some((c) => !("stream" in c)), "stream 0 leaves the knob out of the config");
  assert.ok(
    outers.every((c) => c.family !== "outer" || !c.stream || c.split === 1),
    "stream-K is not enumerated with split-K",
  );
  assert.ok(outers.some((c) => c.family === "outer" && c.stream && c.double));
});

Deno.test("splat and fold: names, half math only, memory, and enumerated with half math only", () => {
  const half = { ...outer(1), bk: 32, half: true } as KernelConfig;
  const both = { ...half, splat: true, fold: 2 } as KernelConfig;
  assert.equal(configName(both), "outer-bm32-bn64-bk32-rm4-rn4-h-sp-f2");
  assert.deepEqual(parseConfigName("outer-bm32-bn64-bk32-rm4-rn4-h-sp-f2"), both);
  const streamDouble = { ...half, fold: 2, stream: 264, double: true } as KernelConfig;
  assert.equal(configName(streamDouble), "outer-bm32-bn64-bk32-rm4-rn4-sk264-h-f2-db");
  assert.deepEqual(parseConfigName(configName(streamDouble)), streamDouble);
  assert.equal(
    configName({ ...half, fold: 1 } as KernelConfig),
    configName(half),
    "fold 1: as before",
  );
  const f16 = { ...CAPS, shaderF16: true };
  assert.equal(configProblem(both, shape(2048), "f16", f16), undefined);
  const f32 = { ...outer(1), splat: true } as KernelConfig;
  assert.match(configProblem(f32, shape(2048), "f32", CAPS) ?? "", /splatted X is for half math/);
  assert.match(
    configProblem({ ...outer(1), fold: 2 } as KernelConfig, shape(2048), "f32", CAPS) ?? "",
    /folding several slices is for half math/,
  );
  assert.match(
    configProblem({ ...half, fold: 4 } as KernelConfig, shape(2048), "f16", f16) ?? "",
    /fold 4 is not 1 or 2/,
  );
  // Two slices' sums in f16: checked against the bound of 64 k steps, not 32.
  assert.equal(configErrorBound(both)(2304, 1), halfErrorBound(2304, 64, 1));
  assert.ok(configErrorBound(both)(2304, 1) > configErrorBound(half)(2304, 1));
  // X's tile holds every value twice: 32 x (16 + 1) vec4<f16> for X instead of 32 x (8 + 1).
  assert.equal(workgroupBytes(both) - workgroupBytes(half), 32 * 8 * 8);
  const space = {
    outer: { ...DEFAULT_SPACE.outer!, splat: [false, true], kpair: [false], fold: [1, 2] },
  };
  const outers = enumerateSpace(space).filter((c) => c.family === "outer");
  const base = { outer: { ...DEFAULT_SPACE.outer!, splat: [false], kpair: [false] } };
  const plain = enumerateSpace(base).filter((c) => c.family === "outer");
  const halves = plain.filter((c) => c.family === "outer" && c.half).length;
  assert.equal(outers.length, plain.length + 3 * halves, "splat and fold 2 only with half math");
  assert.ok(outers.every((c) => c.family !== "outer" || c.half || !("splat" in c || "fold" in c)));
  assert.ok(plain.every((c) => !("splat" in c) && !("fold" in c)), "off: left out of the config");
});

Deno.test("k pairs: names, half math without splat, memory, and enumerated that way", () => {
  const half = { ...outer(1), bk: 32, half: true } as KernelConfig;
  const pairs = { ...half, kpair: true, fold: 2 } as KernelConfig;
  assert.equal(configName(pairs), "outer-bm32-bn64-bk32-rm4-rn4-h-kp-f2");
  assert.deepEqual(parseConfigName("outer-bm32-bn64-bk32-rm4-rn4-h-kp-f2"), pairs);
  const streamDouble = { ...half, kpair: true, stream: 264, double: true } as KernelConfig;
  assert.equal(configName(streamDouble), "outer-bm32-bn64-bk32-rm4-rn4-sk264-h-kp-db");
  assert.deepEqual(parseConfigName(configName(streamDouble)), streamDouble);
  const f16 = { ...CAPS, shaderF16: true };
  assert.equal(configProblem(pairs, shape(2048), "f16", f16), undefined);
  assert.match(
    configProblem({ ...outer(1), kpair: true } as KernelConfig, shape(2048), "f32", CAPS) ?? "",
    /k pairs are for half math/,
  );
  assert.match(
    configProblem({ ...pairs, splat: true } as KernelConfig, shape(2048), "f16", f16) ?? "",
    /k pairs take no splatted X/,
  );
  // Half the k rows, each of half a row's vec4s (+ 1): 16 x (16 + 1 + 32 + 1) vec4<f16>.
  assert.equal(workgroupBytes(pairs), 16 * (16 + 1 + 32 + 1) * 8);
  // Each f16 sum covers half a slice's k steps: the same bound holds.
  assert.equal(
    configErrorBound(pairs)(2304, 1),
    configErrorBound({ ...half, fold: 2 } as KernelConfig)(2304, 1),
  );
  const space = { outer: { ...DEFAULT_SPACE.outer!, splat: [false, true], kpair: [false, true] } };
  const outers = enumerateSpace(space).filter((c) => c.family === "outer");
  const plain = enumerateSpace({
    outer: { ...DEFAULT_SPACE.outer!, splat: [false], kpair: [false] },
  })
    .filter((c) => c.family === "outer");
  const halves = plain.filter((c) => c.family === "outer" && c.half).length;
  assert.equal(outers.length, plain.length + 2 * halves, "k pairs with half math, not with splat");
  assert.ok(outers.every((c) => c.family !== "outer" || !(c.kpair && (c.splat || !c.half))));
  assert.deepEqual(
    enumerateSpace(DEFAULT_SPACE).filter((c) => c.family === "outer"),
    outers,
    "in the default space",
  );
  assert.ok(plain.every((c) => !("kpair" in c)), "off: left out of the config");
});

Deno.test("a data-parallel first part: names, stream-K only, and enumerated with stream-K only", () => {
  const stream = { ...outer(1), stream: 264, dp: true } as KernelConfig;
  const name = "outer-bm32-bn64-bk16-rm4-rn4-sk264-dp";
  assert.equal(configName(stream), name);
  assert.deepEqual(parseConfigName(name), stream);
  const fast = { ...stream, bk: 32, half: true, kpair: true, double: true } as KernelConfig;
  assert.equal(configName(fast), "outer-bm32-bn64-bk32-rm4-rn4-sk264-dp-h-kp-db");
  assert.deepEqual(parseConfigName(configName(fast)), fast);
  assert.throws(() => parseConfigName("outer-bm32-bn64-bk16-rm4-rn4-dp"), SyntaxError);
  assert.equal(configProblem(stream, shape(2048), "f32", CAPS), undefined);
  const sk = { ...outer(1), stream: 264 } as KernelConfig;
  assert.equal(scratchBytes(stream, shape(2048), 256), scratchBytes(sk, shape(2048), 256));
  assert.match(
    configProblem({ ...outer(1), dp: true } as KernelConfig, shape(2048), "f32", CAPS) ?? "",
    /data-parallel first part is for stream-K/,
  );
  assert.deepEqual(DEFAULT_SPACE.outer!.dp, [false, true], "in the default space");
  const outers = enumerateSpace(DEFAULT_SPACE).filter((c) => c.family === "outer");
  const plain = enumerateSpace({ outer: { ...DEFAULT_SPACE.outer!, dp: [false] } })
    .filter((c) => c.family === "outer");
  const streams = plain.filter((c) => c.family === "outer" && c.stream).length;
  assert.ok(streams > 0);
  assert.equal(outers.length, plain.length + streams, "dp only with stream-K");
  assert.ok(plain.every((c) => !("dp" in c)), "off: left out of the config");
});

Deno.test("nested tiles: names, the same memory, enumerated beside every tile config, and the default", () => {
  const nested = tile({ nest: true });
  assert.equal(configName(nested), "tile-bm32-bn32-bk8-rm4-rn4-v4-nt");
  assert.deepEqual(parseConfigName(configName(nested)), nested);
  assert.deepEqual(parseConfigName("tile-bm32-bn32-bk8-rm4-rn4-v4"), tile());
  assert.throws(() => parseConfigName("tile-bm32-bn32-bk8-rm4-rn4-nt-v4"), SyntaxError);
  assert.equal(workgroupBytes(nested), workgroupBytes(tile()));
  assert.equal(configProblem(nested, shape(2048), "bf16", CAPS), undefined);
  assert.deepEqual(DEFAULT_SPACE.tile!.nest, [true], "the default space's tiles are nested");
  const both = enumerateSpace({ tile: { ...DEFAULT_SPACE.tile!, nest: [false, true] } });
  const plain = enumerateSpace({ tile: { ...DEFAULT_SPACE.tile!, nest: [false] } });
  assert.equal(both.length, 2 * plain.length, "nest beside every tile config");
  assert.ok(plain.every((c) => !("nest" in c)), "off: left out of the config");
  assert.ok(enumerateSpace({ tile: DEFAULT_SPACE.tile }).every((c) => "nest" in c));
});

Deno.test("k-quad tiles: names, the same memory, and enumerated beside every outer config", () => {
  const kq = { ...outer(1), double: true, kq: true } as KernelConfig;
  const name = "outer-bm32-bn64-bk16-rm4-rn4-db-kq";
  assert.equal(configName(kq), name);
  assert.deepEqual(parseConfigName(name), kq);
  const pairs = { ...kq, bk: 32, half: true, kpair: true, stream: 264, dp: true } as KernelConfig;
  assert.equal(configName(pairs), "outer-bm32-bn64-bk32-rm4-rn4-sk264-dp-h-kp-db-kq");
  assert.deepEqual(parseConfigName(configName(pairs)), pairs);
  assert.throws(() => parseConfigName("outer-bm32-bn64-bk16-rm4-rn4-kq-db"), SyntaxError);
  assert.equal(configProblem(kq, shape(2048), "f16", CAPS), undefined);
  assert.equal(workgroupBytes(kq), workgroupBytes({ ...outer(1), double: true } as KernelConfig));
  assert.equal(workgroupBytes(pairs), workgroupBytes({ ...pairs, kq: undefined } as KernelConfig));
  assert.equal(DEFAULT_SPACE.outer!.kq, undefined, "not in the default space: it did not win");
  const outers = enumerateSpace({ outer: { ...DEFAULT_SPACE.outer!, kq: [false, true] } });
  const plain = enumerateSpace(DEFAULT_SPACE).filter((c) => c.family === "outer");
  assert.equal(outers.length, 2 * plain.length, "kq beside every outer config");
  assert.ok(plain.every((c) => !("kq" in c)), "off: left out of the config");
});

Deno.test("enumerateSpace() lists the product of each family's knobs", () => {
  const size = (lists: Record<string, unknown[]>) =>
    Object.values(lists).reduce((n, l) => n * l.length, 1);
  const gemvOnly = { gemv: { ...DEFAULT_SPACE.gemv!, nc: [1, 2], rm: [1, 2, 4] } };
  const configs: KernelConfig[] = enumerateSpace(gemvOnly);
  assert.equal(configs.length, size(gemvOnly.gemv));
  assert.ok(configs.every((c) => c.family === "gemv"));
  // Stream-K (stream > 0) only with split 1, with or without a data-parallel first part;
  // splat or k pairs (not both) only with half math (half of the rest): plain f32, and plain,
  // splat or k pairs in f16.
  const { stream, split, splat, kpair, dp, ...outerRest } = DEFAULT_SPACE.outer!;
  const streams = stream!.filter((g) => g > 0).length;
  assert.deepEqual(splat, [false, true]);
  assert.deepEqual(kpair, [false, true]);
  assert.equal(
    enumerateSpace(DEFAULT_SPACE).length,
    size(DEFAULT_SPACE.gemv!) + size(DEFAULT_SPACE.tile!) +
      size(outerRest) / 2 * (1 + 3) * (split!.length + streams * dp!.length),
  );
  assert.equal(enumerateSpace({}).length, 0);
});
