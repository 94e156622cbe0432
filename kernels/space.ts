/**
 * The search space: lists of values per knob and family, their cartesian product, and which
 * configs are worth trying at a given m.
 *
 * @module
 */
import type { GemvConfig, KernelConfig, OuterConfig, TileConfig } from "./config.ts";
import { DOUBLE_ROWS, SPLIT_ROWS, STREAM_ROWS, workgroupRows } from "./config.ts";

/** Values to try for each knob of each family; a family left out is not searched. */
export interface SearchSpace {
  tile?: {
    bm: number[];
    bn: number[];
    bk: number[];
    rm: number[];
    rn: number[];
    vec: number[];
    /** Tiles as arrays of rows (`TileConfig.nest`); `[false]` when left out. */
    nest?: boolean[];
  };
  /**
   * `split` (split-K ways) is `[1]`, `half` (f16 math) and `double` (double-buffered tiles)
   * `[false]` when left out.
   */
  outer?: {
    bm: number[];
    bn: number[];
    bk: number[];
    rm: number[];
    rn: number[];
    split?: number[];
    half?: boolean[];
    double?: boolean[];
    /** Stream-K workgroups, 0 for none (`OuterConfig.stream`); `[0]` when left out. */
    stream?: number[];
    /** A splatted X with half math (`OuterConfig.splat`); `[false]` when left out. */
    splat?: boolean[];
    /** Tiles of k pairs with half math (`OuterConfig.kpair`); `[false]` when left out. */
    kpair?: boolean[];
    /** Stream-K with a data-parallel first part (`OuterConfig.dp`); `[false]` when left out. */
    dp?: boolean[];
    /** Slices per fold of the f16 sums (`OuterConfig.fold`); `[1]` when left out. */
    fold?: number[];
    /** Tiles split by k vector (`OuterConfig.kq`); `[false]` when left out. */
    kq?: boolean[];
  };
  gemv?: {
    nc: number[];
    cn: number[];
    lanes: number[];
    rm: number[];
    vec: number[];
    subgroup: boolean[];
    /** Scalar accumulators (`GemvConfig.dot`); `[false]` when left out. */
    dot?: boolean[];
    /** Row groups per workgroup (`GemvConfig.rw`); `[1]` when left out. */
    rw?: number[];
    /** Loop iterations per trip, at most (`GemvConfig.unroll`); 0 is the default rule. */
    unroll?: number[];
    /** K vectors of X staged at a time (`GemvConfig.xs`), 0 for none; `[0]` when left out. */
    xs?: number[];
    /** Two copies of a staged X (`GemvConfig.xd`), with `xs` only; `[false]` when left out. */
    xd?: boolean[];
  };
}

/** The space `deno task tune` searches unless given `--space`. */
export const DEFAULT_SPACE: SearchSpace = {
  tile: {
    bm: [16, 32, 64, 128],
    bn: [32, 64, 128],
    bk: [8, 16, 32, 64, 128],
    rm: [2, 4, 8],
    rn: [2, 4, 8],
    vec: [4],
    nest: [true],
  },
  outer: {
    bm: [32, 64, 128],
    bn: [32, 64, 128],
    bk: [8, 16, 32],
    rm: [4, 8],
    rn: [4, 8],
    split: [1, 2, 4, 8],
    half: [false, true],
    double: [false, true],
    stream: [0, 264, 396],
    splat: [false, true],
    kpair: [false, true],
    dp: [false, true],
  },
  gemv: {
    nc: [2, 4, 8],
    cn: [1, 2, 4],
    lanes: [8, 16, 32],
    rm: [1, 2, 4, 8, 16],
    vec: [2, 4, 8],
    subgroup: [false, true],
    dot: [false, true],
    rw: [1, 2, 4],
  },
};

function product<T extends Record<string, unknown[]>>(
  lists: T,
): { [K in keyof T]: T[K][number] }[] {
  let out: Record<string, unknown>[] = [{}];
  for (const [key, values] of Object.entries(lists)) {
    out = out.flatMap((partial) => values.map((v) => ({ ...partial, [key]: v })));
  }
  return out as { [K in keyof T]: T[K][number] }[];
}

/** Every config of the space, unvalidated. */
export function enumerateSpace(space: SearchSpace): KernelConfig[] {
  const tiles: TileConfig[] = space.tile
    ? product({ nest: [false], ...space.tile }).map(({ nest, ...c }) => ({
      family: "tile" as const,
      ...c,
      ...(nest ? { nest } : {}),
    }))
    : [];
  const gemvs: GemvConfig[] = space.gemv
    ? product({ dot: [false], rw: [1], xs: [0], xd: [false], unroll: [0], ...space.gemv })
      .filter((c) => c.xs || !c.xd)
      .map(({ dot, rw, xs, xd, unroll, ...c }) => ({
        family: "gemv" as const,
        ...c,
        ...(dot ? { dot } : {}),
        ...(rw > 1 ? { rw } : {}),
        ...(xs ? { xs } : {}),
        ...(xd ? { xd } : {}),
        ...(unroll ? { unroll } : {}),
      }))
    : [];
  // Stream-K replaces split-K, so their products are left out.
  const outers: OuterConfig[] = space.outer
    ? product({
      split: [1],
      half: [false],
      double: [false],
      stream: [0],
      splat: [false],
      kpair: [false],
      fold: [1],
      dp: [false],
      kq: [false],
      ...space.outer,
    })
      .filter((c) => !c.stream || c.split === 1)
      .filter((c) => !c.dp || c.stream)
      // The half-math knobs are only enumerated with half math, and k pairs without splat.
      .filter((c) => c.half || (!c.splat && !c.kpair && c.fold === 1))
      .filter((c) => !(c.kpair && c.splat))
      .map(({ stream, dp, splat, kpair, fold, kq, ...c }) => ({
        family: "outer" as const,
        ...c,
        ...(stream ? { stream } : {}),
        ...(dp ? { dp } : {}),
        ...(splat ? { splat } : {}),
        ...(kpair ? { kpair } : {}),
        ...(fold !== 1 ? { fold } : {}),
        ...(kq ? { kq } : {}),
      }))
    : [];
  return [...gemvs, ...outers, ...tiles];
}

/** Smallest power of two >= x. */
export function nextPow2(x: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, x)));
}

/**
 * Whether a config is worth timing at m rows: GEMV up to 32 rows (64 with several row groups
 * per workgroup), with no more rows per workgroup than m needs and no fewer than a quarter
 * (each workgroup's rows read W again); tiles from 8 rows, no taller than m needs; split-K
 * while `m x split` is at most `splitRows`
 * ({@linkcode SPLIT_ROWS} unless the device's binding holds fewer rows of the output: its
 * scratch); stream-K from 64 rows to {@linkcode STREAM_ROWS} (its scratch holds every tile);
 * `outer` slices of 32 k steps with f16 math only (in f32 they were 15-140% slower than 16 on
 * the H100, tp4); double-buffered tiles with f32 math, from {@linkcode DOUBLE_ROWS} rows times
 * split (below, and with f16 math, they were slower on the H200, tp4), or with stream-K, whose
 * persistent grid keeps as many workgroups per SM either way.
 *
 * @example
 * ```ts
 * import { DOUBLE_ROWS } from "./config.ts";
 * import { suitsRows } from "./space.ts";
 * const db = {
 *   family: "outer", bm: 128, bn: 64, bk: 8, rm: 8, rn: 8, split: 1, half: false, double: true,
 * } as const;
 * if (!suitsRows(db, DOUBLE_ROWS) || suitsRows(db, DOUBLE_ROWS / 2)) throw new Error();
 * if (!suitsRows({ ...db, split: 2 }, DOUBLE_ROWS / 2)) throw new Error("split 2 at half the rows");
 * if (!suitsRows({ ...db, stream: 264 }, 256)) throw new Error("stream-K at any of its rows");
 * ```
 */
export function suitsRows(c: KernelConfig, m: number, splitRows = SPLIT_ROWS): boolean {
  if (c.family === "gemv") {
    const rows = workgroupRows(c);
    return m <= ((c.rw ?? 1) > 1 ? 64 : 32) && rows <= nextPow2(m) &&
      rows * 4 >= Math.min(16, nextPow2(m));
  }
  if (c.family === "outer" && c.bk > 16 && !c.half) return false;
  if (c.family === "outer" && c.split > 1 && nextPow2(m) * c.split > splitRows) return false;
  if (c.family === "outer" && c.stream && (m < 64 || m > STREAM_ROWS)) return false;
  if (
    c.family === "outer" && c.double &&
    (c.half || (!c.stream && nextPow2(m) * c.split < DOUBLE_ROWS))
  ) {
    return false;
  }
  return m >= 8 && c.bm <= Math.max(c.family === "outer" ? 32 : 16, nextPow2(m));
}
