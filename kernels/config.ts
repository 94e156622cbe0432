/**
 * Kernel configurations: the knobs of each kernel family, their names, and their validation
 * against a GEMM shape, a weight type and a device's limits.
 *
 * @module
 */
import type { WeightDtype } from "./dtype.ts";
import type { GemmShape } from "./problem.ts";

/**
 * Register-blocked tiled GEMM for many rows: a workgroup computes a `bm x bn` output tile,
 * staging `bk`-deep slices of X and W in workgroup memory; each thread owns `rm x rn` outputs.
 */
export interface TileConfig {
  family: "tile";
  bm: number;
  bn: number;
  bk: number;
  rm: number;
  rn: number;
  /** Elements per load along k: 1, 2 or 4. */
  vec: number;
  /**
   * The tiles declared as arrays of rows (`xTile[row][k vector]`) instead of flat (`xTile[row *
   * PITCH + k vector]`), the same bytes, so that naga clamps a read's row once per register block
   * instead of each read's whole index (absent: off; NOTES.md, "Plan: nested `tile` tiles").
   */
  nest?: boolean;
}

/**
 * Split-k GEMV for few rows: a workgroup computes `nc * cn` output columns for `rm` rows;
 * `lanes` threads share each column group's k range, each thread owning `cn` columns, and
 * reduce their partial sums in workgroup memory (or with subgroup shuffles when `subgroup`).
 */
export interface GemvConfig {
  family: "gemv";
  nc: number;
  /** Columns per thread. */
  cn: number;
  lanes: number;
  rm: number;
  vec: number;
  /** Reduce with subgroup operations instead of workgroup memory. */
  subgroup: boolean;
  /**
   * Scalar accumulators: each thread adds a load's products into one f32 per row and column
   * (a chain of `vec` FMAs) instead of a vector, so `rm x cn` may reach 64 in the registers
   * that 32 vector accumulators took. Left out when false (names predate it).
   */
  dot?: boolean;
  /**
   * Row groups per workgroup: `rw` sets of `nc * lanes` threads that own the same columns and
   * `rm` rows each, so the workgroup computes `rm * rw` rows, and the sets' loads of the same
   * weights may meet in the SM's L1 instead of each crossing from L2 (f32 15-29% faster at 16-32
   * rows on the H100; NOTES.md). Left out when 1.
   */
  rw?: number;
  /**
   * X staged in workgroup memory (absent or 0: off): a trip of the k loop takes `xs / lanes` k
   * vectors a lane (in place of `unroll`), and the workgroup copies those `xs` k vectors of each of
   * its `rm * rw` rows into workgroup memory while the trip's weight loads are in flight; the FMAs
   * then read X from there instead of from storage, so that a read of X costs no address
   * arithmetic or bounds check of a storage load, one load from storage serves every column
   * group, and a trip holds only its weights in registers, so it may be longer (NOTES.md, "Plan:
   * X's rows from workgroup memory in the GEMV"). `xs` is 1 to `32 / cn` times `lanes` and
   * divides `k / vec`.
   */
  xs?: number;
  /**
   * With `xs`: two copies of the staged X, trip after trip in turn, so that a trip's copy needs
   * no barrier before it (the other copy's last reads were two trips back, before the last
   * trip's barrier): one barrier a trip instead of two, for twice the workgroup memory (absent:
   * off).
   */
  xd?: boolean;
  /**
   * Loop iterations per trip, at most (the largest divisor of a lane's k vectors up to it): each
   * loads its `cn` weight vectors ahead of all the trip's FMAs, so the trip holds `unroll x cn`
   * weight vectors in registers. Left out: up to 8 and `32 / cn`.
   */
  unroll?: number;
}

/**
 * Outer-product tiled GEMM: like `tile`, but with k-major tiles in workgroup memory, vec4
 * accumulators over columns, and the next k slice prefetched into registers. `rm` and `rn`
 * are multiples of 4; loads are always 4 wide.
 */
export interface OuterConfig {
  family: "outer";
  bm: number;
  bn: number;
  bk: number;
  rm: number;
  rn: number;
  /**
   * Split-K: workgroups per output tile, each over `k / split` (1 = no split). Above 1 the
   * partial tiles go to a scratch buffer and a second dispatch adds them into Y
   * (kernels/reduce.ts), so that few rows still fill the GPU.
   */
  split: number;
  /**
   * Half-precision math (`precision: "fast"`, f16 weights only): X is rounded to f16 as it is
   * staged, products are summed in vec4<f16> over each `bk` slice and then added into f32
   * accumulators. Needs the device's "shader-f16" feature.
   */
  half: boolean;
  /**
   * Double-buffered tiles: two of each in workgroup memory, so that a slice is stored into one
   * while the other is read, with one barrier per slice instead of two (twice the memory).
   */
  double: boolean;
  /**
   * Stream-K (absent or 0: off): this many workgroups, each taking an equal run of all tiles' k
   * slices in order, so that the last round of tiles does not leave most of the GPU idle. Every
   * tile goes to a scratch buffer (partial tiles where a run starts or ends inside one) and a
   * second dispatch adds them into Y (kernels/reduce.ts). Not with `split`; with `double`, every
   * run is a whole number of slice pairs.
   */
  stream?: number;
  /**
   * With `stream`: a data-parallel first part (absent: off). Whole waves of tiles, one wave of
   * `stream` tiles at a time, are computed by a dispatch of their own straight into Y, and
   * stream-K shares out only the tiles left over (between half a wave and a wave and a half of
   * them), so that fewer tiles make the round trip through the scratch (the Stream-K paper's
   * "data-parallel + stream-K" hybrid).
   */
  dp?: boolean;
  /**
   * With `half`: X is staged into workgroup memory with each value twice, as (a, a) pairs, so
   * that a packed f16 FMA takes a row's value as it is loaded instead of a broadcast of one
   * half (twice X's workgroup memory; absent: off).
   */
  splat?: boolean;
  /**
   * With `half`: the slices whose f16 sums are added into the f32 accumulators at once, 1 or 2
   * (absent: 1). Two halve the conversions and adds, and double the products summed in f16.
   */
  fold?: number;
  /**
   * With `half`, not with `splat`: the tiles hold k in pairs, a vec4<f16> being two rows' (or
   * columns') values at k and k + 1, and each output sums a vec2<f16> of its products at even
   * and odd k (its two halves added as they are folded), so that a packed f16 FMA takes both
   * operands as loaded: no broadcast and no doubled X (absent: off).
   */
  kpair?: boolean;
  /**
   * The tiles are declared `[buffer][k vector][k row of it][row / 4]` (the same bytes in the same
   * order as `[k row][row / 4]`; a k vector holds four k rows, or two k pairs), so that the
   * transposed stores of a prefetched k vector share one clamped index and both buffers' stores
   * differ by a constant, instead of naga clamping each store's k row on its own (absent: off;
   * NOTES.md, "Plan: one clamped index per prefetched vector").
   */
  kq?: boolean;
}

/** Any kernel configuration. */
export type KernelConfig = TileConfig | GemvConfig | OuterConfig;

/** What the device allows, as read from `GPUDevice.limits` and its features. */
export interface DeviceCaps {
  /** `maxComputeInvocationsPerWorkgroup`. */
  maxInvocations: number;
  /** `maxComputeWorkgroupSizeX`. */
  maxWorkgroupSizeX: number;
  /** `maxComputeWorkgroupSizeY`. */
  maxWorkgroupSizeY: number;
  /** `maxComputeWorkgroupStorageSize`, bytes. */
  maxWorkgroupStorage: number;
  /** `maxStorageBufferBindingSize`, bytes. */
  maxStorageBinding: number;
  /** `maxComputeWorkgroupsPerDimension`. */
  maxWorkgroupsPerDimension: number;
  /** Whether kernels may use subgroup operations (the feature, and a known subgroup size). */
  subgroups: boolean;
  /** Smallest subgroup size the adapter reports (0 where unknown). */
  subgroupMinSize: number;
  /** Whether kernels may use f16 arithmetic (the "shader-f16" feature); absent means no. */
  shaderF16?: boolean;
}

/** Reads the limits a kernel is checked against from a device. */
export function deviceCaps(device: GPUDevice, subgroupMinSize = 0): DeviceCaps {
  const l = device.limits;
  return {
    maxInvocations: l.maxComputeInvocationsPerWorkgroup,
    maxWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    maxWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
    maxWorkgroupStorage: l.maxComputeWorkgroupStorageSize,
    maxStorageBinding: l.maxStorageBufferBindingSize,
    maxWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    subgroups: device.features.has("subgroups" as GPUFeatureName) && subgroupMinSize > 0,
    subgroupMinSize,
    shaderF16: device.features.has("shader-f16"),
  };
}

/**
 * A stable, readable name for a config, used in logs and the cache.
 *
 * @example
 * ```ts
 * import { configName } from "./config.ts";
 * const name = configName({ family: "tile", bm: 64, bn: 64, bk: 16, rm: 4, rn: 4, vec: 4 });
 * if (name !== "tile-bm64-bn64-bk16-rm4-rn4-v4") throw new Error(name);
 * ```
 */
export function configName(c: KernelConfig): string {
  if (c.family === "tile") {
    return `tile-bm${c.bm}-bn${c.bn}-bk${c.bk}-rm${c.rm}-rn${c.rn}-v${c.vec}${c.nest ? "-nt" : ""}`;
  }
  if (c.family === "outer") {
    const split = c.split > 1 ? `-s${c.split}` : ""; // unsplit names predate the knob
    const stream = c.stream ? `-sk${c.stream}${c.dp ? "-dp" : ""}` : "";
    const half = `${c.half ? "-h" : ""}${c.splat ? "-sp" : ""}${c.kpair ? "-kp" : ""}${
      (c.fold ?? 1) > 1 ? `-f${c.fold}` : ""
    }`;
    const knobs = `${split}${stream}${half}${c.double ? "-db" : ""}${c.kq ? "-kq" : ""}`;
    return `outer-bm${c.bm}-bn${c.bn}-bk${c.bk}-rm${c.rm}-rn${c.rn}${knobs}`;
  }
  const knobs = `${c.subgroup ? "-sg" : ""}${c.dot ? "-dt" : ""}${
    (c.rw ?? 1) > 1 ? `-rw${c.rw}` : ""
  }${c.xs ? `-xs${c.xs}${c.xd ? "-xd" : ""}` : ""}${c.unroll ? `-u${c.unroll}` : ""}`;
  return `gemv-nc${c.nc}-cn${c.cn}-l${c.lanes}-rm${c.rm}-v${c.vec}${knobs}`;
}

/**
 * Parses a name made by {@linkcode configName}.
 *
 * @throws {SyntaxError} If the name is not one.
 */
export function parseConfigName(name: string): KernelConfig {
  let m = /^tile-bm(\d+)-bn(\d+)-bk(\d+)-rm(\d+)-rn(\d+)-v(\d+)(-nt)?$/.exec(name);
  if (m) {
    const [bm, bn, bk, rm, rn, vec] = m.slice(1, 7).map(Number);
    return { family: "tile", bm, bn, bk, rm, rn, vec, ...(m[7] ? { nest: true } : {}) };
  }
  m =
    /^outer-bm(\d+)-bn(\d+)-bk(\d+)-rm(\d+)-rn(\d+)(?:-s(\d+))?(?:-sk(\d+)(-dp)?)?(-h)?(-sp)?(-kp)?(?:-f(\d+))?(-db)?(-kq)?$/
      .exec(name);
  if (m) {
    const [bm, bn, bk, rm, rn] = m.slice(1, 6).map(Number);
    const [split, half, double] = [Number(m[6] ?? 1), m[9] !== undefined, m[13] !== undefined];
    const stream = m[7] === undefined ? {} : { stream: Number(m[7]) };
    const dp = m[8] === undefined ? {} : { dp: true };
    const splat = m[10] === undefined ? {} : { splat: true };
    const kpair = m[11] === undefined ? {} : { kpair: true };
    const fold = m[12] === undefined ? {} : { fold: Number(m[12]) };
    const kq = m[14] === undefined ? {} : { kq: true };
    return {
      family: "outer",
      bm,
      bn,
      bk,
      rm,
      rn,
      split,
      half,
      double,
      ...stream,
      ...dp,
      ...splat,
      ...kpair,
      ...fold,
      ...kq,
    };
  }
  m =
    /^gemv-nc(\d+)-cn(\d+)-l(\d+)-rm(\d+)-v(\d+)(-sg)?(-dt)?(?:-rw(\d+))?(?:-xs(\d+)(-xd)?)?(?:-u(\d+))?$/
      .exec(name);
  if (m) {
    const [nc, cn, lanes, rm, vec] = m.slice(1, 6).map(Number);
    const dot = m[7] === undefined ? {} : { dot: true };
    const rw = m[8] === undefined ? {} : { rw: Number(m[8]) };
    const xs = m[9] === undefined ? {} : { xs: Number(m[9]) };
    const xd = m[10] === undefined ? {} : { xd: true };
    const unroll = m[11] === undefined ? {} : { unroll: Number(m[11]) };
    const subgroup = m[6] !== undefined;
    return {
      family: "gemv",
      nc,
      cn,
      lanes,
      rm,
      vec,
      subgroup,
      ...dot,
      ...rw,
      ...xs,
      ...xd,
      ...unroll,
    };
  }
  throw new SyntaxError(`Cannot parse kernel config name "${name}"`);
}

/** Threads per workgroup of a config. */
export function workgroupThreads(c: KernelConfig): number {
  return c.family === "gemv" ? c.nc * c.lanes * (c.rw ?? 1) : (c.bn / c.rn) * (c.bm / c.rm);
}

/** Rows of Y one workgroup of a config computes. */
export function workgroupRows(c: KernelConfig): number {
  return c.family === "gemv" ? c.rm * (c.rw ?? 1) : c.bm;
}

/** Bytes of workgroup memory a config declares. */
export function workgroupBytes(c: KernelConfig): number {
  if (c.family === "tile") {
    const rowVecs = c.bk / c.vec + 1; // one vector of padding per row against bank conflicts
    return (c.bm + c.bn) * rowVecs * c.vec * 4;
  }
  if (c.family === "outer") {
    const tiles = c.double ? 2 : 1;
    // K pairs: half the k rows, each of twice the vec4s (two rows or columns at two k).
    if (c.kpair) return (c.bk / 2) * (c.bm / 2 + 1 + c.bn / 2 + 1) * 8 * tiles;
    const xVecs = (c.splat ? c.bm / 2 : c.bm / 4) + 1; // a splatted X holds every value twice
    return c.bk * (xVecs + c.bn / 4 + 1) * (c.half ? 8 : 16) * tiles;
  }
  // X's rows, `vec` floats a k vector, once or twice.
  const staged = (c.xs ?? 0) * workgroupRows(c) * c.vec * 4 * (c.xd ? 2 : 1);
  return (c.subgroup ? 0 : c.rm * c.cn * workgroupThreads(c) * 4) + staged;
}

/** Largest split-K factor (`OuterConfig.split`). */
export const MAX_SPLIT = 32;

/**
 * Most rows times split that a split-K kernel is used for (see `suitsRows`): it bounds the
 * scratch buffer to `SPLIT_ROWS` rows of the output. 4096, not 2048, since split 2 of the
 * double-buffered tile won at m = 2048 on the H200 (tp4 f32, 8% under the best unsplit tile).
 * A device whose storage binding cannot hold that many rows of a shape's output gets fewer
 * ({@linkcode splitRows}).
 */
export const SPLIT_ROWS = 4096;

/**
 * Most rows times split that split-K kernels of a shape are tuned at on a device: the largest
 * power of two up to {@linkcode SPLIT_ROWS} whose scratch (that many rows of the output) fits the
 * device's storage binding; `configProblem` rejects split-K where it is under `SPLIT_ROWS / 2`.
 *
 * @example
 * ```ts
 * import { SPLIT_ROWS, splitRows } from "./config.ts";
 * const shape = { k: 64, n: 8, xRowStride: 64, xOffsets: [0], wOffset: 0, yOffsets: [0], yRowStride: 8 };
 * const caps = { maxStorageBinding: (SPLIT_ROWS / 2) * 8 * 4 };
 * if (splitRows(shape, caps) !== SPLIT_ROWS / 2) throw new Error("halved");
 * if (splitRows(shape, { maxStorageBinding: Infinity }) !== SPLIT_ROWS) throw new Error("full");
 * ```
 */
export function splitRows(
  shape: GemmShape,
  caps: Pick<DeviceCaps, "maxStorageBinding">,
): number {
  let rows = SPLIT_ROWS;
  while (rows > 1 && rows * shape.yRowStride * 4 > caps.maxStorageBinding) rows /= 2;
  return rows;
}

/**
 * Most rows a stream-K kernel is used for (see `suitsRows`): it bounds the scratch buffer, which
 * holds every tile of the output.
 */
export const STREAM_ROWS = 2048;

/**
 * Fewest rows times split a double-buffered `outer` tile is tried at (see `suitsRows`): below
 * them the second slice buffer did not pay on the H100 or the H200 (tp4, f32 math); at m = 2048
 * with split 2 it did (H200).
 */
export const DOUBLE_ROWS = 4096;

/** Output tiles of an `outer` config at m rows, over every batch. */
export function outerTiles(c: OuterConfig, shape: GemmShape, m: number): number {
  return shape.yOffsets.length * Math.ceil(m / c.bm) * Math.ceil(shape.n / c.bn);
}

/**
 * Bytes of scratch a kernel needs at m rows: `split x m` rows of the output for a split-K
 * config; for a stream-K one, every tile plus one partial tile per workgroup; else none.
 *
 * @example
 * ```ts
 * import { scratchBytes } from "./config.ts";
 * const shape = { k: 64, n: 8, xRowStride: 64, xOffsets: [0], wOffset: 0, yOffsets: [0], yRowStride: 8 };
 * const c = { family: "outer", bm: 32, bn: 32, bk: 8, rm: 4, rn: 4, split: 4, half: false, double: false } as const;
 * if (scratchBytes(c, shape, 3) !== 4 * 3 * 8 * 4) throw new Error("scratch");
 * ```
 */
export function scratchBytes(c: KernelConfig, shape: GemmShape, m: number): number {
  if (c.family !== "outer") return 0;
  if (c.stream) return (outerTiles(c, shape, m) + c.stream) * c.bm * c.bn * 4;
  return c.split > 1 ? c.split * m * shape.yRowStride * 4 : 0;
}

/**
 * Most rows whose scratch fits in `limit` bytes: `Infinity` for a kernel that needs none.
 *
 * @example
 * ```ts
 * import { scratchBytes, scratchRows } from "./config.ts";
 * const shape = { k: 64, n: 8, xRowStride: 64, xOffsets: [0], wOffset: 0, yOffsets: [0], yRowStride: 8 };
 * const c = { family: "outer", bm: 32, bn: 32, bk: 8, rm: 4, rn: 4, split: 1, half: false,
 *   double: false, stream: 3 } as const;
 * const rows = scratchRows(c, shape, 1 << 20);
 * if (scratchBytes(c, shape, rows) > 1 << 20 || scratchBytes(c, shape, rows + 1) <= 1 << 20) {
 *   throw new Error(String(rows));
 * }
 * ```
 */
export function scratchRows(c: KernelConfig, shape: GemmShape, limit: number): number {
  if (c.family !== "outer" || (!c.stream && c.split <= 1)) return Infinity;
  if (!c.stream) return Math.floor(limit / scratchBytes(c, shape, 1));
  const tiles = Math.floor(limit / (c.bm * c.bn * 4)) - c.stream;
  const perRowTile = shape.yOffsets.length * Math.ceil(shape.n / c.bn);
  return Math.max(0, Math.floor(tiles / perRowTile) * c.bm);
}

const pow2 = (x: number) => Number.isInteger(x) && x > 0 && (x & (x - 1)) === 0;

/**
 * Checks a config against a shape, a weight type and the device, before any compilation.
 *
 * @returns `undefined` if the config is valid, else the reason it is not.
 */
export function configProblem(
  c: KernelConfig,
  shape: GemmShape,
  dtype: WeightDtype,
  caps: DeviceCaps,
): string | undefined {
  if (c.family === "outer") return outerProblem(c, shape, dtype, caps);
  const ints = c.family === "tile"
    ? [c.bm, c.bn, c.bk, c.rm, c.rn, c.vec]
    : [c.nc, c.cn, c.lanes, c.rm, c.vec, c.rw ?? 1, c.unroll ?? 1];
  if (!ints.every(pow2)) return "every size must be a power of two";
  if (![1, 2, 4, 8].includes(c.vec)) return `vec ${c.vec} is not 1, 2, 4 or 8`;
  if (c.vec === 8 && (dtype === "f32" || c.family !== "gemv")) {
    return "vec 8 is for gemv with 16-bit weights";
  }
  if (dtype !== "f32" && c.vec < 2) {
    return `${dtype} weights are packed in pairs: vec must be 2, 4 or 8`;
  }
  const xAlign = Math.min(c.vec, 4); // X is read at most four floats at a time
  if ([shape.k, shape.wOffset].some((x) => x % c.vec !== 0)) {
    return `k must be a multiple of vec ${c.vec}`;
  }
  if ([shape.xRowStride, ...shape.xOffsets].some((x) => x % xAlign !== 0)) {
    return `the input's offsets and row stride must be multiples of ${xAlign}`;
  }
  const threads = workgroupThreads(c);
  if (threads > caps.maxInvocations) {
    return `${threads} threads per workgroup exceed the device's ${caps.maxInvocations}`;
  }
  const bytes = workgroupBytes(c);
  if (bytes > caps.maxWorkgroupStorage) {
    return `${bytes} bytes of workgroup memory exceed the device's ${caps.maxWorkgroupStorage}`;
  }
  return c.family === "tile" ? tileProblem(c, shape, caps) : gemvProblem(c, shape, caps);
}

/** `configProblem`'s checks of the `tile` family's own knobs. */
function tileProblem(c: TileConfig, shape: GemmShape, caps: DeviceCaps): string | undefined {
  if (c.rm > c.bm || c.rn > c.bn) return "rm and rn must not exceed bm and bn";
  if (c.bk < c.vec) return "bk must be at least vec";
  if (shape.k % c.bk !== 0) return `k ${shape.k} is not a multiple of bk ${c.bk}`;
  const tx = c.bn / c.rn, ty = c.bm / c.rm;
  if (tx > caps.maxWorkgroupSizeX || ty > caps.maxWorkgroupSizeY) return "workgroup too wide";
  if (c.rm * c.rn > 128) return "more than 128 accumulators per thread would spill";
  return undefined;
}

/** `configProblem`'s checks of the `gemv` family's own knobs. */
function gemvProblem(c: GemvConfig, shape: GemmShape, caps: DeviceCaps): string | undefined {
  if ((shape.k / c.vec) % c.lanes !== 0) {
    return `k / vec = ${shape.k / c.vec} is not a multiple of ${c.lanes} lanes`;
  }
  if (c.rm > 16) return "gemv handles at most 16 rows per thread";
  if (workgroupRows(c) > 64) {
    return `rm x rw = ${workgroupRows(c)} rows per workgroup exceed the GEMV's 64`;
  }
  if (c.dot && c.vec < 2) return "dot accumulation needs vec 2, 4 or 8";
  const staged = stagedProblem(c, shape);
  if (staged) return staged;
  if ((c.unroll ?? 1) > 8) return `unroll ${c.unroll} exceeds 8`;
  const most = c.dot ? 64 : 32; // scalar accumulators take a quarter of the registers of vec4s
  if (c.rm * c.cn > most) {
    return `more than ${most} accumulators (rm x cn) per thread would spill`;
  }
  if (workgroupThreads(c) > caps.maxWorkgroupSizeX) return "workgroup too wide";
  if (c.subgroup) {
    if (!caps.subgroups) return "the device has no subgroups";
    if (c.lanes > caps.subgroupMinSize) {
      return `${c.lanes} lanes exceed the smallest subgroup (${caps.subgroupMinSize})`;
    }
  }
  return undefined;
}

/** A GEMV's staged X (`xs`, `xd`): its trip's length, and no `unroll` or `xd` beside it amiss. */
function stagedProblem(c: GemvConfig, shape: GemmShape): string | undefined {
  if (!c.xs) return c.xd ? "two copies of a staged X need xs" : undefined;
  const kv = shape.k / c.vec;
  // A trip holds its `xs / lanes x cn` weight vectors in registers (X is not held there): at
  // most 32, as the default unroll rule allows a trip without X.
  const most = Math.floor(32 / c.cn) * c.lanes;
  if (!Number.isInteger(c.xs) || c.xs < c.lanes || c.xs > most || c.xs % c.lanes || kv % c.xs) {
    return `staged X of ${c.xs} k vectors must be 1 to ${
      most / c.lanes
    } times ${c.lanes} lanes (32 / cn) and divide k / vec = ${kv}`;
  }
  return c.unroll ? "a staged X sets the trip (xs / lanes k vectors a lane): no unroll" : undefined;
}

function outerProblem(
  c: OuterConfig,
  shape: GemmShape,
  dtype: WeightDtype,
  caps: DeviceCaps,
): string | undefined {
  if (c.half && dtype !== "f16") return `half math is for f16 weights, not ${dtype}`;
  if (c.half && !caps.shaderF16) return "half math needs the device's shader-f16 feature";
  if (c.splat && !c.half) return "a splatted X is for half math";
  if (c.kpair && !c.half) return "k pairs are for half math";
  if (c.kpair && c.splat) return "k pairs take no splatted X";
  if (c.dp && !c.stream) return "a data-parallel first part is for stream-K";
  if (c.fold !== undefined && c.fold !== 1) {
    if (!c.half) return "folding several slices is for half math";
    if (c.fold !== 2) return `fold ${c.fold} is not 1 or 2`;
  }
  if (![c.bm, c.bn, c.bk, c.rm, c.rn].every(pow2)) return "every size must be a power of two";
  if (c.rm < 4 || c.rn < 4 || c.bk < 4) return "rm, rn and bk must be at least 4";
  if (c.rm > c.bm || c.rn > c.bn) return "rm and rn must not exceed bm and bn";
  if (shape.k % c.bk !== 0) return `k ${shape.k} is not a multiple of bk ${c.bk}`;
  if (!pow2(c.split) || c.split > MAX_SPLIT) {
    return `split ${c.split} is not a power of two up to ${MAX_SPLIT}`;
  }
  if ((shape.k / c.bk) % c.split !== 0) {
    return `k / bk = ${shape.k / c.bk} slices do not split evenly ${c.split} ways`;
  }
  if (c.double && (shape.k / c.bk / c.split) % 2 !== 0) {
    return `double-buffered tiles take two slices per trip, and ${shape.k / c.bk / c.split} is odd`;
  }
  if (c.stream !== undefined && c.stream !== 0) {
    if (!Number.isInteger(c.stream) || c.stream < 1 || c.stream > caps.maxWorkgroupsPerDimension) {
      return `stream-K workgroups ${c.stream} are not an integer from 1 to ${caps.maxWorkgroupsPerDimension}`;
    }
    if (c.split > 1) return "stream-K is not for split-K";
    const bytes = scratchBytes(c, shape, STREAM_ROWS);
    if (bytes > caps.maxStorageBinding) {
      return `stream-K scratch of ${bytes} bytes at ${STREAM_ROWS} rows exceeds the device's ${caps.maxStorageBinding}-byte binding`;
    }
  }
  if (c.split > 1 && splitRows(shape, caps) < SPLIT_ROWS / 2) {
    return `split-K scratch of ${
      SPLIT_ROWS / 2
    } x ${shape.yRowStride} floats exceeds the device's ${caps.maxStorageBinding}-byte binding`;
  }
  if ([shape.wOffset, shape.xRowStride, ...shape.xOffsets].some((x) => x % 4 !== 0)) {
    return "the input's offsets and row stride must be multiples of 4";
  }
  const threads = workgroupThreads(c);
  if (threads > caps.maxInvocations) {
    return `${threads} threads per workgroup exceed the device's ${caps.maxInvocations}`;
  }
  if (c.bn / c.rn > caps.maxWorkgroupSizeX || c.bm / c.rm > caps.maxWorkgroupSizeY) {
    return "workgroup too wide";
  }
  const bytes = workgroupBytes(c);
  if (bytes > caps.maxWorkgroupStorage) {
    return `${bytes} bytes of workgroup memory exceed the device's ${caps.maxWorkgroupStorage}`;
  }
  if (c.rm * c.rn > 128) return "more than 128 accumulators per thread would spill";
  return undefined;
}
