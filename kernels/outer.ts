/**
 * The outer-product tiled GEMM family for many rows, the layout of fast CUDA SGEMMs. A
 * workgroup of `(bn/rn) x (bm/rm)` threads computes a `bm x bn` tile of Y. Per `bk` slice of k,
 * X and W are stored k-major (transposed) in workgroup memory, so at each k a thread reads its
 * `rm` rows and `rn` columns as vec4s and does `rm x rn` fused multiply-adds on vec4
 * accumulators: no dot products, no horizontal adds. The next slice is loaded into registers
 * while this one is computed. With `double`, two of each tile take turns (NOTES.md, v6).
 *
 * A thread's rows and columns are interleaved in groups of four (`4 * (tid + threads * i)`),
 * so that neighbouring threads read neighbouring vec4s of workgroup memory and write
 * neighbouring 16-byte chunks of Y.
 *
 * Each tile is an array of k rows (`xTile[k][row / 4]`): a read's outer index is a constant of
 * the unrolled loop and its inner index the same for every k, so the bounds clamp naga puts on
 * every dynamic index is computed once per register block, not once per read (8-10% faster at
 * m = 8192 on the H100; NOTES.md, v7). With `kq` the k row is split further, as
 * `xTile[buffer][k vector][k row of it][row / 4]`, so that the transposed stores of one prefetched
 * k vector share one clamped index as well. With f16 math a thread stores four tile rows' k vectors
 * as four vec4s, transposed in registers, instead of sixteen scalar halves (quad stores). Two
 * f16-math layouts hand the packed FMAs a row's value without a broadcast: a splatted X, stored
 * as (a, a) pairs, or tiles of k pairs, where a vec4 holds two rows at k and k + 1 and each output
 * sums its even-k and odd-k products in a vec2 (`OuterConfig.splat`, `OuterConfig.kpair`).
 *
 * @module
 */
import type { OuterConfig } from "./config.ts";
import { configName } from "./config.ts";
import type { WeightDtype } from "./dtype.ts";
import type { GemmShape } from "./problem.ts";
import { batchOffsets, kernelPrelude, tiledEntry, tiledMain, tileLoadSlots } from "./wgsl.ts";

/** What the parts of an `outer` kernel share: its geometry and the names its code uses. */
interface Layout {
  c: OuterConfig;
  tx: number;
  ty: number;
  threads: number;
  /** k vectors per tile row and slice. */
  sliceVecs: number;
  /** Tile k rows per slice: bk, or bk / 2 with k pairs. */
  tileRows: number;
  /**
   * vec4s per k row of each tile, + 1 against bank conflicts (X's doubled when splatted; with k
   * pairs, a row of vec4s holds two k, so twice as many).
   */
  xPitch: number;
  wPitch: number;
  xLoads: number;
  wLoads: number;
  /** With quad stores: groups of four tile rows each thread loads, per slice, of X and W. */
  xGroups: number;
  wGroups: number;
  /** Quad stores (with f16 math): a thread's loads come in fours, stored as four vec4s. */
  quad: boolean;
  /**
   * Tiles as `[buffer][k vector][k row of it][row / 4]` (`OuterConfig.kq`): a k vector holds 4
   * tile k rows, or 2 with k pairs (`kRows`).
   */
  kq: boolean;
  kRows: number;
  rmv: number;
  rnv: number;
  /** The math type: f16 with half math, else f32. */
  t: string;
  /** Stream-K workgroups (0: off). */
  stream: number;
  /** This workgroup's k range. */
  kBegin: string;
  kEnd: string;
  /** Where an output element (row, column, component) goes: Y, or a slab of the scratch. */
  yIndex: (r: string, col: string, cc: number) => string;
  loadX: (at: string) => string;
  loadW: (at: string) => string;
}

function layoutOf(c: OuterConfig): Layout {
  // Quad stores measured 0.6-35% slower in f32, 4-8% faster with f16 math (NOTES.md, v7).
  const quad = c.half;
  const tx = c.bn / c.rn, ty = c.bm / c.rm, threads = tx * ty, sliceVecs = c.bk / 4;
  const split = c.split > 1, stream = c.stream ?? 0;
  const xGroups = Math.ceil((c.bm / 4 * sliceVecs) / threads);
  const wGroups = Math.ceil((c.bn / 4 * sliceVecs) / threads);
  return {
    c,
    tx,
    ty,
    threads,
    sliceVecs,
    tileRows: c.kpair ? c.bk / 2 : c.bk,
    // With k pairs a vec4 holds two rows at two k: half a row's vec4s, twice as many.
    xPitch: (c.splat || c.kpair ? c.bm / 2 : c.bm / 4) + 1,
    wPitch: (c.kpair ? c.bn / 2 : c.bn / 4) + 1,
    xLoads: quad ? 4 * xGroups : Math.ceil((c.bm * sliceVecs) / threads),
    wLoads: quad ? 4 * wGroups : Math.ceil((c.bn * sliceVecs) / threads),
    xGroups,
    wGroups,
    quad,
    kq: c.kq ?? false,
    kRows: c.kpair ? 2 : 4,
    rmv: c.rm / 4,
    rnv: c.rn / 4,
    t: c.half ? "f16" : "f32",
    stream,
    kBegin: split || stream ? "kBegin" : "0u",
    kEnd: split ? "kBegin + PART" : stream ? "kEnd" : "KV",
    // Stream-K stores a tile densely into its scratch slab: BN columns per row.
    yIndex: stream
      ? (r, col, cc) => `yAt + (${r} - row0) * BN + ${col} - col0 + ${cc}u`
      : (r, col, cc) => `${split ? "yPart" : "yOffset"} + ${r} * Y_STRIDE + ${col} + ${cc}u`,
    loadX: (at) => (c.half ? `vec4<f16>(X[${at}])` : `X[${at}]`),
    loadW: (at) => (c.half ? `loadWh(${at})` : `loadW(${at})`),
  };
}

/** Generates the WGSL of an outer-product GEMM. Validate the config first with `configProblem`. */
export function outerWgsl(
  c: OuterConfig,
  shape: GemmShape,
  dtype: WeightDtype,
): string {
  const l = layoutOf(c);
  if (l.stream) {
    return [...outerModule(l, shape, dtype), ...streamBody(l, shape), "}"].join("\n") + "\n";
  }
  const lines = [
    ...outerModule(l, shape, dtype),
    ...outerStart(l, shape),
    ...outerSlices(l),
    ...outerStores(l),
    "}",
  ];
  return lines.join("\n") + "\n";
}

/** Everything before the entry point: bindings, loaders, constants and the two tiles. */
function outerModule(l: Layout, shape: GemmShape, dtype: WeightDtype): string[] {
  const { c, t, xPitch, wPitch } = l;
  const lines: string[] = [];
  // f16 math: tiles, prefetch registers and per-slice sums in f16 (see OuterConfig.half).
  if (c.half) lines.push("enable f16;");
  lines.push(kernelPrelude(`outer-product GEMM ${configName(c)}`, shape, dtype, 4));
  if (c.half) {
    lines.push(
      "fn loadWh(i: u32) -> vec4<f16> {",
      "  let u = W[i];",
      // Exact: every f16 is an f32. (naga types bitcast<vec2<f16>>(u32) as f32 and refuses it.)
      "  return vec4<f16>(vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y)));",
      "}",
      "",
    );
  }
  lines.push(`const BM = ${c.bm}u;`, `const BN = ${c.bn}u;`);
  lines.push(`const SLICE = ${l.sliceVecs}u; // k vectors per slice`);
  if (c.split > 1) {
    lines.push(`const SPLIT = ${c.split}u; // workgroups per tile, each over KV / SPLIT`);
    lines.push(`const PART = ${shape.k / 4 / c.split}u; // k vectors per workgroup`);
  }
  if (l.stream) lines.push(...streamConstants(l, shape));
  const tiles = c.double ? 2 : 1;
  if (l.kq) return [...lines, ...kqTiles(l, tiles)];
  if (c.double) {
    lines.push(`const X_TILE = ${l.tileRows}u; // the second tiles' first k row`);
    lines.push(`const W_TILE = ${l.tileRows}u;`);
  }
  const of = c.double ? ", two of them" : "";
  const xOrder = c.kpair
    ? "[k / 2][row / 2]: rows 2g, 2g + 1 at k 2p, 2p + 1"
    : `[k][row / 4]${
      c.splat ? ", rows 4g..4g+1 at g and 4g+2..4g+3 at BM / 4 + g, each twice" : ""
    }`;
  const wOrder = c.kpair ? "[k / 2][column / 2]" : "[k][column / 4]";
  const rows = tiles * l.tileRows;
  lines.push(
    "",
    `var<workgroup> xTile: array<array<vec4<${t}>, ${xPitch}>, ${rows}>; // ${xOrder}${of}`,
    `var<workgroup> wTile: array<array<vec4<${t}>, ${wPitch}>, ${rows}>; // ${wOrder}${of}`,
    "",
  );
  return lines;
}

/**
 * The tiles of a `kq` config: `[buffer][k vector][k row of it][row / 4]`, so that a read's k row is
 * three constants and a store's, `xTile[buffer][q][c]`, one clamped k vector `q` that serves all
 * the vector's stores and both buffers.
 */
function kqTiles(l: Layout, tiles: number): string[] {
  const { kRows } = l;
  const tile = (pitch: number) =>
    `array<array<array<array<vec4<${l.t}>, ${pitch}>, ${kRows}>, ${l.tileRows / kRows}>, ${tiles}>`;
  const of = tiles > 1 ? ", two of them" : "";
  const k = `[k vector][${kRows === 2 ? "k pair" : "k"} % ${kRows}]`;
  return [
    "",
    `var<workgroup> xTile: ${tile(l.xPitch)}; // [buffer]${k}[row / ${l.c.kpair ? 2 : 4}]${of}`,
    `var<workgroup> wTile: ${tile(l.wPitch)}; // [buffer]${k}[column / ${l.c.kpair ? 2 : 4}]${of}`,
    "",
  ];
}

/**
 * The index of a store's tile k row: k row `r` of the slice's k vector `q` (a WGSL expression) in
 * buffer `buffer` of tile `n` ("x" or "w"); one clamped index, or with `kq` constants around `q`.
 */
function storeRow(l: Layout, n: string, buffer: number, q: string, r: number): string {
  if (l.kq) return `[${buffer}u][${q}][${r}u]`;
  const at = buffer ? `${n.toUpperCase()}_TILE + ` : "";
  return `[${at}${l.kRows}u * ${q} + ${r}u]`;
}

/** The index of a read's tile k row `row` of buffer `buffer` (constants either way). */
function readRow(l: Layout, buffer: number, row: number): string {
  if (l.kq) return `[${buffer}u][${Math.floor(row / l.kRows)}u][${row % l.kRows}u]`;
  return `[${buffer * l.tileRows + row}u]`;
}

/** The entry point up to the k loop: origin, k range, load slots, first loads, accumulators. */
function outerStart(l: Layout, shape: GemmShape): string[] {
  const { c } = l;
  const lines = tiledEntry(l.tx, l.ty, shape, 4, c.split);
  if (c.split > 1) {
    lines.push("  let kBegin = part * PART;", "  let yPart = yOffset + part * m * Y_STRIDE;");
  }
  return [...lines, ...firstLoads(l)];
}

/** The load slots, the first slice's loads and the zeroed accumulators. */
function firstLoads(l: Layout): string[] {
  const { xLoads, wLoads } = l;
  const plus = (at: string) => (l.kBegin === "kBegin" ? `${at} + kBegin` : at);
  const lines = [
    "  // Each thread loads whole k vectors of some tile rows; rows past the edge are clamped.",
  ];
  lines.push(...(l.quad ? quadLoadSlots(l) : tileLoadSlots(xLoads, wLoads, l.threads, "SLICE")));
  for (let i = 0; i < xLoads; i++) lines.push(`  var xNext${i} = ${l.loadX(plus(`xAt${i}`))};`);
  for (let i = 0; i < wLoads; i++) lines.push(`  var wNext${i} = ${l.loadW(plus(`wAt${i}`))};`);
  lines.push(...accumulators(l, "acc", "f32", "  "));
  if (folds(l)) lines.push(...halfSums(l, "  "));
  return lines;
}

/** Whether the f16 sums outlive a slice: half math folded every two slices. */
function folds(l: Layout): boolean {
  return l.c.half && (l.c.fold ?? 1) > 1;
}

/** Lines adding the f16 sums into the f32 accumulators, then zeroing them where `reset`. */
function foldLines(l: Layout, indent: string, reset: boolean): string[] {
  const lines: string[] = [];
  for (let i = 0; i < l.c.rm; i++) {
    for (let j = 0; j < l.rnv; j++) {
      if (l.c.kpair) {
        // Each column's even-k and odd-k sums, added in f16, then widened.
        const h = (jj: number) => `hacc${i}_${j}_${jj}`;
        const sums = [0, 1, 2, 3].map((jj) => `${h(jj)}.x + ${h(jj)}.y`).join(", ");
        lines.push(`${indent}acc${i}_${j} += vec4<f32>(vec4<f16>(${sums}));`);
        if (reset) {
          lines.push(indent + [0, 1, 2, 3].map((jj) => `${h(jj)} = vec2<f16>(0.0);`).join(" "));
        }
        continue;
      }
      lines.push(`${indent}acc${i}_${j} += vec4<f32>(hacc${i}_${j});`);
      if (reset) lines.push(`${indent}hacc${i}_${j} = vec4<f16>(0.0);`);
    }
  }
  return lines;
}

/** Stream-K's constants: k slices per tile, batches and workgroups. */
function streamConstants(l: Layout, shape: GemmShape): string[] {
  return [
    `const SLICES = ${shape.k / l.c.bk}u; // k slices per tile`,
    `const BATCHES = ${shape.yOffsets.length}u;`,
    `const GROUPS = ${l.stream}u; // stream-K workgroups`,
  ];
}

/**
 * Stream-K's entry point: the workgroup's run of all tiles' slices (tiles in order, k slices in
 * order within each), one segment per tile it touches. A segment that starts its tile stores it
 * into the tile's slab of the scratch; one that starts inside a tile (the run began there) stores
 * into its workgroup's slab after the tiles (kernels/reduce.ts adds them up).
 */
function streamBody(l: Layout, shape: GemmShape): string[] {
  // With a data-parallel first part, stream-K's runs count slices from tile dpTiles on.
  const [first, rel] = l.c.dp ? ["dpTiles + ", "(tile - dpTiles)"] : ["", "tile"];
  return [
    ...tiledMain(l.tx, l.ty),
    ...streamRun("  ", l.c.double, l.c.dp),
    "  var it = wg.x * chunk;",
    "  loop {",
    "    if (it >= end) { break; }",
    `    let tile = ${first}it / SLICES;`,
    "    let s0 = it % SLICES;",
    `    let s1 = min(end - ${rel} * SLICES, SLICES);`,
    ...tileOrigin(shape),
    "    let kBegin = s0 * SLICE;",
    "    let kEnd = s1 * SLICE;",
    "    let yAt = select((tiles + wg.x) * BM * BN, tile * BM * BN, s0 == 0u);",
    ...indented(firstLoads(l)),
    ...indented(outerSlices(l)),
    ...indented(outerStores(l)),
    `    it = ${rel} * SLICES + s1;`,
    "  }",
  ];
}

/** Lines indented two more spaces (a tile's body inside a loop over tiles). */
function indented(lines: string[]): string[] {
  return lines.map((line) => `  ${line}`);
}

/** Tile `tile`'s batch `b`, its offsets and its origin (`row0`, `col0`), in a loop over tiles. */
function tileOrigin(shape: GemmShape): string[] {
  return [
    "    let b = tile / (rowTiles * colTiles);",
    batchOffsets(shape, 4, "    ").trimEnd(),
    "    let row0 = tile % (rowTiles * colTiles) / colTiles * BM;",
    "    let col0 = tile % colTiles * BN;",
  ];
}

/**
 * The data-parallel first part of a stream-K kernel with `dp` (a dispatch of its own, before
 * the stream-K one, with Y bound as Y): workgroup g computes whole tiles g, g + GROUPS, ... below
 * `dpTiles` and stores them straight into Y.
 */
function dataParallelBody(l: Layout, shape: GemmShape): string[] {
  const direct: Layout = {
    ...l,
    yIndex: (r, col, cc) => `yOffset + ${r} * Y_STRIDE + ${col} + ${cc}u`,
  };
  return [
    ...tiledMain(l.tx, l.ty),
    ...streamRun("  ", l.c.double, true),
    "  for (var tile = wg.x; tile < dpTiles; tile += GROUPS) {",
    ...tileOrigin(shape),
    "    let kBegin = 0u;",
    "    let kEnd = SLICES * SLICE;",
    ...indented(firstLoads(direct)),
    ...indented(outerSlices(direct)),
    ...indented(outerStores(direct)),
    "  }",
  ];
}

/**
 * The WGSL of a stream-K config's data-parallel first part (`OuterConfig.dp`), or undefined for
 * a config without one.
 */
export function outerHeadWgsl(
  c: OuterConfig,
  shape: GemmShape,
  dtype: WeightDtype,
): string | undefined {
  const l = layoutOf(c);
  if (!l.stream || !c.dp) return undefined;
  return [...outerModule(l, shape, dtype), ...dataParallelBody(l, shape), "}"].join("\n") + "\n";
}

/**
 * The tiles and each stream-K workgroup's run of slices at m rows (shared with the reduction).
 * Double-buffered tiles take slices in pairs, so their runs are an even number of slices long
 * (and a tile's slices are even in number, `configProblem`): every segment is whole pairs.
 */
export function streamRun(indent: string, pairs: boolean, dp = false): string[] {
  const chunk = "(total + GROUPS - 1u) / GROUPS";
  return [
    "let rowTiles = (m + BM - 1u) / BM;",
    "let colTiles = (N + BN - 1u) / BN;",
    "let tiles = BATCHES * rowTiles * colTiles;",
    ...(dp ? dataParallelTiles() : ["let total = tiles * SLICES;"]),
    `let chunk = ${pairs ? `(${chunk} + 1u) / 2u * 2u` : chunk};`,
    "let end = min(wg.x * chunk + chunk, total);",
  ].map((line) => indent + line);
}

/**
 * With a data-parallel first part (`OuterConfig.dp`): its tiles, `dpTiles`, are whole waves of
 * GROUPS, leaving stream-K between half a wave and a wave and a half of tiles (all of them when
 * there are fewer than that); `total` counts stream-K's slices, from tile `dpTiles` on.
 */
function dataParallelTiles(): string[] {
  return [
    "let waves = tiles / GROUPS;",
    "let dpTiles = select(max(waves, 1u) - 1u, waves, tiles % GROUPS * 2u >= GROUPS) * GROUPS;",
    "let total = (tiles - dpTiles) * SLICES;",
  ];
}

/**
 * The zeroed f16 sums of a slice: a vec4 of four columns per row and column group, or with k
 * pairs a vec2 (even k, odd k) per row and column.
 */
function halfSums(l: Layout, indent: string): string[] {
  if (!l.c.kpair) return accumulators(l, "hacc", "f16", indent);
  return Array.from({ length: l.c.rm }, (_, i) =>
    indent +
    Array.from(
      { length: l.rnv * 4 },
      (_, n) => `var hacc${i}_${n >> 2}_${n & 3} = vec2<f16>(0.0);`,
    ).join(" "));
}

/** `rm` lines declaring a thread's vec4 accumulators, zeroed. */
function accumulators(l: Layout, name: string, type: string, indent: string): string[] {
  return Array.from({ length: l.c.rm }, (_, i) =>
    indent +
    Array.from({ length: l.rnv }, (_, j) => `var ${name}${i}_${j} = vec4<${type}>(0.0);`).join(
      " ",
    ));
}

/**
 * The k loop: store the prefetched slice transposed, prefetch the next, and multiply. With f16
 * math each thread sums a slice into `hacc` and then adds that into `acc`. Single-buffered, a
 * barrier comes before the stores (everyone is done reading) and one after them; double-buffered,
 * a trip stores the next slice into the other tiles and multiplies this one, with one barrier.
 */
function outerSlices(l: Layout): string[] {
  const c = l.c;
  if (!c.double) {
    // Folding two slices: the sums of a tile's odd slices (and of a run's last) go into acc.
    const last = folds(l)
      ? ["  // The sums of a last, even slice.", ...foldLines(l, "  ", false)]
      : [];
    return [
      `  for (var k = ${l.kBegin}; k < ${l.kEnd}; k += SLICE) {`,
      "    workgroupBarrier(); // everyone is done reading the previous slice",
      ...sliceStores(l, 0),
      "    workgroupBarrier();",
      "    // Prefetch the next slice (the last trip reloads its own slice, unused) while computing.",
      ...slicePrefetch(l, "k + SLICE"),
      ...sliceProducts(l, 0),
      ...(folds(l)
        ? ["    if ((k / SLICE) % 2u == 1u) {", ...foldLines(l, "      ", true), "    }"]
        : []),
      "  }",
      ...last,
    ];
  }

  return [
    ...sliceStores(l, 0).map((line) => line.slice(2)),
    "  workgroupBarrier();",
    ...slicePrefetch(l, `${l.kBegin} + SLICE`).map((line) => line.slice(2)),
    // Two slices per trip, so that every tile index is a constant plus the thread's.
    `  for (var k = ${l.kBegin}; k < ${l.kEnd}; k += 2u * SLICE) {`,
    "    // Slice k + 1 into the second tiles, whose last readers passed the last barrier; the",
    "    // one after it is prefetched (the last trips reload the last slice, unused).",
    ...sliceStores(l, 1),
    ...slicePrefetch(l, "k + 2u * SLICE"),
    "    {", // each half's names in a scope of their own
    ...sliceProducts(l, 0),
    "    }",
    "    workgroupBarrier(); // slice k + 1 is stored, and slice k read",
    ...sliceStores(l, 0),
    ...slicePrefetch(l, "k + 3u * SLICE", "next2"),
    "    {",
    ...sliceProducts(l, 1),
    "    }",
    ...(folds(l) ? foldLines(l, "    ", true) : []),
    "    workgroupBarrier();",
    "  }",
  ];
}

/** Stores of the prefetched slice, transposed, into the first tiles (`buffer` 0) or the second. */
function sliceStores(l: Layout, buffer: number): string[] {
  if (l.quad) return quadStores(l, buffer);
  const { c } = l;
  const guarded = (i: number, rows: number, body: string) =>
    (i + 1) * l.threads > rows * l.sliceVecs
      ? `if (li + ${i * l.threads}u < ${rows * l.sliceVecs}u) { ${body} }`
      : body;
  const store = (n: string, r: string, q: string, v: string) =>
    [0, 1, 2, 3].map((cc) =>
      `${n}Tile${storeRow(l, n, buffer, q, cc)}[${r} / 4u][${r} % 4u] = ${v}.${"xyzw"[cc]};`
    ).join(" ");
  const lines = [
    "    // Store the prefetched slice transposed: component c of a k vector goes to k row 4q + c.",
  ];
  for (let i = 0; i < l.xLoads; i++) {
    const body = store("x", `xr${i}`, `xq${i}`, `xNext${i}`);
    lines.push(`    ${guarded(i, c.bm, body)}`);
  }
  for (let i = 0; i < l.wLoads; i++) {
    const body = store("w", `wr${i}`, `wq${i}`, `wNext${i}`);
    lines.push(`    ${guarded(i, c.bn, body)}`);
  }
  return lines;
}

/**
 * Load slots for quad stores: a thread's loads come in fours, the same k vector of four
 * consecutive tile rows (group `xg`/`wg` of rows, k vector `xq`/`wq`), so that it can store
 * them transposed as four vec4s.
 */
function quadLoadSlots(l: Layout): string[] {
  const lines: string[] = [];
  const slots = (
    n: string,
    groups: number,
    rows: string,
    limit: string,
    at: (row: string) => string,
  ) => {
    for (let j = 0; j < groups; j++) {
      lines.push(`  let ${n}g${j} = (li + ${j * l.threads}u) / SLICE;`);
      lines.push(`  let ${n}q${j} = (li + ${j * l.threads}u) % SLICE;`);
      for (let t = 0; t < 4; t++) {
        const row = `min(${rows} + 4u * ${n}g${j} + ${t}u, ${limit})`;
        lines.push(`  let ${n}At${4 * j + t} = ${at(row)} + ${n}q${j};`);
      }
    }
  };
  slots("x", l.xGroups, "row0", "m - 1u", (row) => `xOffset + ${row} * X_STRIDE`);
  slots("w", l.wGroups, "col0", "N - 1u", (row) => `W_OFFSET + b * W_BATCH + ${row} * KV`);
  return lines;
}

/**
 * One line per quad group of a tile with `rows` rows, `body(j)` for group j; a group past the
 * tile's groups (when there are fewer than threads) is skipped, so that nothing is loaded or
 * stored for it.
 */
function quadGroupLines(l: Layout, groups: number, rows: number, body: (j: number) => string) {
  const slots = (rows / 4) * l.sliceVecs;
  return Array.from(
    { length: groups },
    (_, j) =>
      (j + 1) * l.threads > slots
        ? `    if (li + ${j * l.threads}u < ${slots}u) { ${body(j)} }`
        : `    ${body(j)}`,
  );
}

/** Quad stores: component c of four rows' k vectors goes to k row 4q + c as one vec4. */
function quadStores(l: Layout, buffer: number): string[] {
  const stores = (n: string) => (j: number) =>
    [0, 1, 2, 3].map((cc) => {
      const v = [0, 1, 2, 3].map((t) => `${n}Next${4 * j + t}.${"xyzw"[cc]}`).join(", ");
      return `${n}Tile${storeRow(l, n, buffer, `${n}q${j}`, cc)}[${n}g${j}] = vec4<${l.t}>(${v});`;
    }).join(" ");
  // Splatted: rows 4g and 4g + 1 as (a, a, b, b) at g, rows 4g + 2 and 4g + 3 at BM / 4 + g.
  const splatStores = (j: number) =>
    [0, 1, 2, 3].map((cc) => {
      const v = (t: number) => `xNext${4 * j + t}.${"xyzw"[cc]}`;
      const k = storeRow(l, "x", buffer, `xq${j}`, cc);
      return `xTile${k}[xg${j}] = vec4<f16>(${v(0)}, ${v(0)}, ${v(1)}, ${v(1)}); ` +
        `xTile${k}[BM / 4u + xg${j}] = vec4<f16>(${v(2)}, ${v(2)}, ${v(3)}, ${v(3)});`;
    }).join(" ");
  if (l.c.kpair) {
    return [
      "    // Store the prefetched slice as k pairs: rows 4g + 2h, 4g + 2h + 1 at k 4q + 2p, + 1.",
      ...quadGroupLines(l, l.xGroups, l.c.bm, pairStores(l, "x", buffer)),
      ...quadGroupLines(l, l.wGroups, l.c.bn, pairStores(l, "w", buffer)),
    ];
  }
  return [
    "    // Store the prefetched slice transposed, four rows' k vectors as four vec4s.",
    ...quadGroupLines(l, l.xGroups, l.c.bm, l.c.splat ? splatStores : stores("x")),
    ...quadGroupLines(l, l.wGroups, l.c.bn, stores("w")),
  ];
}

/**
 * K-pair stores of quad group j: of the four rows' k vectors (k 4q..4q + 3), rows 4g + 2h and
 * 4g + 2h + 1 at k 4q + 2p and 4q + 2p + 1 go to `tile[2q + p][2g + h]` as one vec4.
 */
function pairStores(l: Layout, n: string, buffer: number) {
  return (j: number) =>
    [0, 1].flatMap((h) =>
      [0, 1].map((p) => {
        const v = (t: number) =>
          `${n}Next${4 * j + 2 * h + t}.${p ? "z" : "x"}, ${n}Next${4 * j + 2 * h + t}.${
            p ? "w" : "y"
          }`;
        const k = storeRow(l, n, buffer, `${n}q${j}`, p);
        return `${n}Tile${k}[2u * ${n}g${j} + ${h}u] = vec4<f16>(${v(0)}, ${v(1)});`;
      })
    ).join(" ");
}

/** Loads of the slice at `from` (clamped to the last slice) into the prefetch registers. */
function slicePrefetch(l: Layout, from: string, next = "next"): string[] {
  const lines = [`    let ${next} = min(${from}, ${l.kEnd} - SLICE);`];
  const load = (n: string, i: number) =>
    `${n}Next${i} = ${(n === "x" ? l.loadX : l.loadW)(`${n}At${i} + ${next}`)};`;
  if (l.quad) {
    const loads = (n: string) => (j: number) =>
      [0, 1, 2, 3].map((t) => load(n, 4 * j + t)).join(" ");
    return [
      ...lines,
      ...quadGroupLines(l, l.xGroups, l.c.bm, loads("x")),
      ...quadGroupLines(l, l.wGroups, l.c.bn, loads("w")),
    ];
  }
  for (let i = 0; i < l.xLoads; i++) lines.push(`    ${load("x", i)}`);
  for (let i = 0; i < l.wLoads; i++) lines.push(`    ${load("w", i)}`);
  return lines;
}

/** A slice's products from the first tiles (`buffer` 0) or the second. */
function sliceProducts(l: Layout, buffer: number): string[] {
  const { c, t, rmv, rnv } = l;
  if (c.kpair) return pairProducts(l, buffer);
  const lines = c.half && !folds(l) ? halfSums(l, "    ") : [];
  const sum = c.half ? "hacc" : "acc";
  // Row 4g + ii's value as a vec4: a broadcast of one component, or a splatted pair twice.
  const row = (kk: number, i: number, ii: number) => {
    if (!c.splat) return `vec4<${t}>(a${kk}_${i}.${"xyzw"[ii]})`;
    const pair = `a${kk}_${i}${ii < 2 ? "" : "h"}.${ii % 2 ? "zw" : "xy"}`;
    return `vec4<f16>(${pair}, ${pair})`;
  };
  for (let kk = 0; kk < c.bk; kk++) {
    for (let i = 0; i < rmv; i++) {
      lines.push(`    let a${kk}_${i} = xTile${readRow(l, buffer, kk)}[lid.y + ${l.ty * i}u];`);
      if (c.splat) {
        lines.push(
          `    let a${kk}_${i}h = xTile${readRow(l, buffer, kk)}[BM / 4u + lid.y + ${l.ty * i}u];`,
        );
      }
    }
    for (let j = 0; j < rnv; j++) {
      lines.push(`    let b${kk}_${j} = wTile${readRow(l, buffer, kk)}[lid.x + ${l.tx * j}u];`);
    }
    for (let i = 0; i < rmv; i++) {
      for (let ii = 0; ii < 4; ii++) {
        for (let j = 0; j < rnv; j++) {
          const a = `${sum}${4 * i + ii}_${j}`;
          lines.push(`    ${a} = fma(${row(kk, i, ii)}, b${kk}_${j}, ${a});`);
        }
      }
    }
  }
  if (c.half && !folds(l)) lines.push(...foldLines(l, "    ", false));
  return lines;
}

/**
 * A slice's products with k pairs, from the first tiles (`buffer` 0) or the second: per pair,
 * each of a thread's rows (a half of an X vec4) times each of its columns (a half of a W vec4)
 * into that output's vec2 of even-k and odd-k sums.
 */
function pairProducts(l: Layout, buffer: number): string[] {
  const { rmv, rnv } = l;
  const lines = folds(l) ? [] : halfSums(l, "    ");
  const half = (v: string, e: number) => `${v}_${e >> 1}.${e & 1 ? "zw" : "xy"}`;
  for (let p = 0; p < l.tileRows; p++) {
    const row = readRow(l, buffer, p);
    for (let i = 0; i < rmv; i++) {
      for (let h = 0; h < 2; h++) {
        lines.push(
          `    let a${p}_${i}_${h} = xTile${row}[2u * (lid.y + ${l.ty * i}u) + ${h}u];`,
        );
      }
    }
    for (let j = 0; j < rnv; j++) {
      for (let h = 0; h < 2; h++) {
        lines.push(
          `    let b${p}_${j}_${h} = wTile${row}[2u * (lid.x + ${l.tx * j}u) + ${h}u];`,
        );
      }
    }
    for (let i = 0; i < rmv; i++) {
      for (let ii = 0; ii < 4; ii++) {
        for (let j = 0; j < rnv; j++) {
          for (let jj = 0; jj < 4; jj++) {
            const sum = `hacc${4 * i + ii}_${j}_${jj}`;
            lines.push(
              `    ${sum} = fma(${half(`a${p}_${i}`, ii)}, ${half(`b${p}_${j}`, jj)}, ${sum});`,
            );
          }
        }
      }
    }
  }
  if (!folds(l)) lines.push(...foldLines(l, "    ", false));
  return lines;
}

/** The stores of a thread's outputs, rows and columns past the edge skipped. */
function outerStores(l: Layout): string[] {
  const lines = ["  // Row 4 * (lid.y + TY * i) + ii, columns 4 * (lid.x + TX * j) + 0..3."];
  for (let i = 0; i < l.rmv; i++) {
    for (let ii = 0; ii < 4; ii++) {
      const r = `r${4 * i + ii}`;
      lines.push(`  let ${r} = row0 + 4u * (lid.y + ${l.ty * i}u) + ${ii}u;`, `  if (${r} < m) {`);
      for (let j = 0; j < l.rnv; j++) {
        const col = `c${4 * i + ii}_${j}`;
        lines.push(`    let ${col} = col0 + 4u * (lid.x + ${l.tx * j}u);`);
        for (let cc = 0; cc < 4; cc++) {
          lines.push(
            `    if (${col} + ${cc}u < N) { Y[${l.yIndex(r, col, cc)}] = acc${4 * i + ii}_${j}.${
              "xyzw"[cc]
            }; }`,
          );
        }
      }
      lines.push("  }");
    }
  }
  return lines;
}

/**
 * Workgroups to dispatch for m rows: [column tiles, row tiles, batches x split], or stream-K's
 * workgroups in a row.
 */
export function outerGrid(c: OuterConfig, shape: GemmShape, m: number): [number, number, number] {
  if (c.stream) return [c.stream, 1, 1];
  return [Math.ceil(shape.n / c.bn), Math.ceil(m / c.bm), shape.xOffsets.length * c.split];
}
