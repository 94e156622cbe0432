/**
 * The split-k GEMV family for few rows. A workgroup of `nc * lanes` threads computes
 * `nc * cn` columns of Y for `rm` rows. The `lanes` threads of a column group walk k together
 * (lane i reads vectors i, i + lanes, ..., so neighbouring threads read neighbouring
 * addresses); each thread keeps `rm x cn` vector accumulators, so one load of X serves `cn`
 * columns and one load of W serves `rm` rows. The lanes then reduce in workgroup memory or
 * with subgroup shuffles. Decode (m = 1) is bound by reading W once, and this reads it once.
 * With `rw` > 1 the workgroup holds `rw` such sets of threads over the same columns, each with
 * `rm` rows of its own, so that at 8-64 rows their loads of the same weights meet in the SM's L1
 * where one set per workgroup reads the weights from L2 once for every `rm` rows (f32 15-29%
 * faster at 16-32 rows on the H100, 5% with f16 weights at 16: NOTES.md, "Measured: row groups,
 * unroll, k-quad and nested tiles").
 * With `xs` each trip of the k loop copies its `xs` k vectors of the workgroup's rows of X into
 * workgroup memory (`xRows[row group][row][k vector]`) while its weight loads are in flight, and
 * the FMAs read X from there: one copy from storage serves all `nc` column groups, and a read
 * with a constant row costs no address arithmetic or bounds check of its own (not yet measured:
 * NOTES.md, "Plan: X's rows from workgroup memory in the GEMV"). With `xd` two such copies take
 * turns, so that a trip needs one barrier instead of two.
 *
 * @module
 */
import type { GemvConfig } from "./config.ts";
import { configName, workgroupRows, workgroupThreads } from "./config.ts";
import type { WeightDtype } from "./dtype.ts";
import type { GemmShape } from "./problem.ts";
import { batchOffsets, f32Vec, kernelPrelude } from "./wgsl.ts";

/**
 * Iterations of the k loop body that are unrolled into one loop trip: the largest divisor of
 * `steps` up to `most` (the config's `unroll`; left out, up to 8 and 32 / `perStep`).
 */
function unrollFactor(steps: number, perStep: number, most?: number): number {
  most ??= Math.max(1, Math.min(8, Math.floor(32 / perStep)));
  for (let u = Math.min(steps, most); u > 1; u--) if (steps % u === 0) return u;
  return 1;
}

/** What the parts of a GEMV kernel share. */
interface Parts {
  c: GemvConfig;
  threads: number;
  /** Accumulator of row r and column j. */
  acc: (r: number, j: number) => string;
  /** Calls f for every row and column a thread owns. */
  rowsCols: (f: (r: number, j: number) => void) => void;
  /** X's vectors a k vector of a row is read as: 2 for vec 8 (two vec4s), else 1. */
  parts: number;
}

/**
 * Generates the WGSL of a split-k GEMV. Validate the config first with `configProblem`.
 *
 * @param entry `false` makes the body `fn gemvBlock(wg, li)` instead of the entry point `main`,
 * for a kernel that runs it in some of its workgroups (kernels/decode.ts).
 */
export function gemvWgsl(
  c: GemvConfig,
  shape: GemmShape,
  dtype: WeightDtype,
  entry = true,
): string {
  const p: Parts = {
    c,
    threads: workgroupThreads(c),
    acc: (r, j) => `acc${r}_${j}`,
    rowsCols: (f) => {
      for (let r = 0; r < c.rm; r++) for (let j = 0; j < c.cn; j++) f(r, j);
    },
    parts: c.vec === 8 ? 2 : 1,
  };
  const lines = [
    ...gemvStart(p, shape, dtype, entry),
    ...(c.xs ? stagedLoop(p) : gemvLoop(p, shape)),
    ...(c.subgroup ? subgroupReduce(p) : workgroupReduce(p)),
    "}",
  ];
  return lines.join("\n") + "\n";
}

/** Everything before the k loop: bindings, constants, the thread's columns and rows, zeroes. */
function gemvStart(p: Parts, shape: GemmShape, dtype: WeightDtype, entry: boolean): string[] {
  const { c } = p;
  const groups = (c.rw ?? 1) > 1;
  const lines = [
    kernelPrelude(`split-k GEMV ${configName(c)}`, shape, dtype, c.vec),
    `const NC = ${c.nc}u; // column groups per workgroup`,
    `const CN = ${c.cn}u; // columns per thread`,
    `const LANES = ${c.lanes}u; // threads per column group`,
    `const RM = ${c.rm}u; // rows per ${groups ? "thread" : "workgroup"}`,
  ];
  // One row group (as every GEMV before `rw`) keeps its code as it was: its timings stand.
  if (groups) {
    lines.push(`const ROW_GROUPS = ${c.rw}u; // per workgroup: the same columns, RM rows each`);
  }
  if (!c.subgroup) lines.push(`\nvar<workgroup> partial: array<f32, ${c.rm * c.cn * p.threads}>;`);
  if (c.xs) lines.push(...stagedDecls(p));
  lines.push(
    "",
    ...(entry
      ? [
        `@compute @workgroup_size(${p.threads})`,
        "fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {",
      ]
      : ["fn gemvBlock(wg: vec3<u32>, li: u32) {"]),
    "  let m = params.m;",
    "  let b = wg.z;",
    batchOffsets(shape, c.vec, "  ").trimEnd(),
    "  let lane = li % LANES;",
    "  // Column j of this thread's group: neighbouring groups own neighbouring columns.",
    `  let col0 = wg.x * NC * CN + ${groups ? "(li / LANES) % NC" : "li / LANES"};`,
  );
  for (let j = 0; j < c.cn; j++) {
    lines.push(`  let w${j}Row = W_OFFSET + b * W_BATCH + min(col0 + ${j * c.nc}u, N - 1u) * KV;`);
  }
  lines.push(
    groups
      ? "  let row0 = (wg.y * ROW_GROUPS + li / (LANES * NC)) * RM;"
      : "  let row0 = wg.y * RM;",
  );
  for (let r = 0; r < (c.xs ? 0 : c.rm); r++) {
    lines.push(
      `  let x${r} = xOffset + min(row0 + ${r}u, m - 1u) * X_STRIDE; // rows past m are clamped`,
    );
  }
  const zero = c.dot ? "0.0" : `${f32Vec(c.vec)}(0.0)`;
  p.rowsCols((r, j) => lines.push(`  var ${p.acc(r, j)}${c.dot ? ": f32" : ""} = ${zero};`));
  return lines;
}

/** The k loop: each trip's weight loads first, then the FMAs of every row and column. */
function gemvLoop(p: Parts, shape: GemmShape): string[] {
  const { c } = p;
  const unroll = unrollFactor(shape.k / c.vec / c.lanes, c.cn, c.unroll); // k vectors per lane
  const at = stepAt(c);
  const xAt = (u: number, r: number, h: number) =>
    p.parts === 2 ? `X[x${r} + 2u * (${at(u)})${h ? " + 1u" : ""}]` : `X[x${r} + ${at(u)}]`;
  return [
    `  for (var q = lane; q < KV; q += ${unroll * c.lanes}u) {`,
    ...weightLoads(p, unroll, at),
    ...products(p, unroll, xAt),
    "  }",
  ];
}

/** The k vector index of a lane's u-th step of a trip that starts at `q`. */
function stepAt(c: GemvConfig): (u: number) => string {
  return (u) => (u === 0 ? "q" : `q + ${u * c.lanes}u`);
}

/** A trip's weight loads, `unroll x cn` of them, so that they are in flight together. */
function weightLoads(p: Parts, unroll: number, at: (u: number) => string): string[] {
  const lines = ["    // All weight loads first, so that they are in flight together."];
  for (let u = 0; u < unroll; u++) {
    for (let j = 0; j < p.c.cn; j++) lines.push(`    let w${u}_${j} = loadW(w${j}Row + ${at(u)});`);
  }
  return lines;
}

/** A trip's FMAs; `xAt(u, r, h)` reads part h of row r's X vector at the trip's u-th step. */
function products(
  p: Parts,
  unroll: number,
  xAt: (u: number, r: number, h: number) => string,
): string[] {
  const { c, acc } = p;
  const lines: string[] = [];
  for (let u = 0; u < unroll; u++) {
    for (let r = 0; r < c.rm; r++) {
      if (c.vec === 8) {
        lines.push(`    let xa${u}_${r} = ${xAt(u, r, 0)};`);
        lines.push(`    let xb${u}_${r} = ${xAt(u, r, 1)};`);
        for (let j = 0; j < c.cn; j++) {
          const w = `w${u}_${j}`;
          const sum = mac(c, `xa${u}_${r}`, `${w}.lo`, acc(r, j));
          lines.push(`    ${acc(r, j)} = ${mac(c, `xb${u}_${r}`, `${w}.hi`, sum)};`);
        }
      } else {
        lines.push(`    let x${u}_${r} = ${xAt(u, r, 0)};`);
        for (let j = 0; j < c.cn; j++) {
          lines.push(`    ${acc(r, j)} = ${mac(c, `x${u}_${r}`, `w${u}_${j}`, acc(r, j))};`);
        }
      }
    }
  }
  return lines;
}

/**
 * With `xs`: the staged rows of X, `xRows[row group][row * parts + part][k vector]`; with `xd`
 * two of them, `xRows[copy][row group]...`.
 */
function stagedDecls(p: Parts): string[] {
  const { c } = p;
  const row = `array<array<${f32Vec(c.vec)}, ${c.xs}u>, ${c.rm * p.parts}u>`;
  const groups = `array<${row}, ${c.rw ?? 1}u>`;
  return [
    `const XS = ${c.xs}u; // k vectors of each row staged a trip`,
    `var<workgroup> xRows: ${c.xd ? `array<${groups}, 2u>` : groups};`,
  ];
}

/**
 * With `xs`: the k loop, a trip of `xs / lanes` k vectors a lane. Each trip issues its weight
 * loads, then the workgroup copies the trip's `xs` k vectors of its rows of X (`xRows`,
 * neighbouring threads reading neighbouring vectors), so that the copy's loads are in flight
 * with the weights', and after a barrier the FMAs read X from there.
 */
function stagedLoop(p: Parts): string[] {
  const { c } = p;
  const unroll = c.xs! / c.lanes;
  const at = stepAt(c);
  const copy = c.xd ? "[copy]" : "";
  const xAt = (u: number, r: number, h: number) =>
    `xRows${copy}[group][${r * p.parts + h}u][lane${u ? ` + ${u * c.lanes}u` : ""}]`;
  return [
    `  let group = ${(c.rw ?? 1) > 1 ? "li / (LANES * NC)" : "0u"}; // this thread's row group`,
    `  let firstRow = wg.y * ${workgroupRows(c)}u; // the workgroup's`,
    ...(c.xd ? ["  var copy = 0u; // the staged X this trip writes and reads"] : []),
    "  for (var k0 = 0u; k0 < KV; k0 += XS) {",
    "    let q = k0 + lane;",
    ...weightLoads(p, unroll, at),
    ...(c.xd ? [] : ["    workgroupBarrier(); // every read of the last trip's X is done"]),
    ...stageX(p, copy),
    "    workgroupBarrier();",
    ...products(p, unroll, xAt),
    ...(c.xd ? ["    copy ^= 1u;"] : []),
    "  }",
  ];
}

/**
 * The copy of a trip's X: staged vector i of `rows x xs` (row-major, so `xRows` flattened) is
 * copied by thread i mod threads; where and what each thread copies is the same every trip.
 */
function stageX(p: Parts, copy: string): string[] {
  const { c } = p;
  const perGroup = c.rm * p.parts; // staged rows of one row group
  const total = perGroup * (c.rw ?? 1) * c.xs!;
  const lines: string[] = [];
  for (let t = 0; t * p.threads < total; t++) {
    const i = t ? `li + ${t * p.threads}u` : "li";
    const ip = t ? `(${i})` : i;
    const guard = (t + 1) * p.threads > total;
    const body = [
      `let s${t} = ${ip} / XS; // staged row: group * ${perGroup} + row * ${p.parts} + part`,
      `let v${t} = ${ip} % XS;`,
      `let xRow${t} = min(firstRow + s${t}${
        p.parts === 2 ? " / 2u" : ""
      }, m - 1u); // past m: clamped`,
      `xRows${copy}[s${t} / ${perGroup}u][s${t} % ${perGroup}u][v${t}] = X[xOffset + xRow${t} * X_STRIDE + ${
        p.parts === 2 ? `2u * (k0 + v${t}) + s${t} % 2u` : `k0 + v${t}`
      }];`,
    ];
    if (guard) lines.push(`    if (${i} < ${total}u) {`, ...body.map((l) => `      ${l}`), "    }");
    else lines.push(...body.map((l) => `    ${l}`));
  }
  return lines;
}

/**
 * `acc` plus the products of the vectors x and w (at most four wide): one vector FMA, or with
 * `dot` a chain of scalar FMAs into a scalar accumulator.
 */
function mac(c: GemvConfig, x: string, w: string, acc: string): string {
  if (!c.dot) return `fma(${x}, ${w}, ${acc})`;
  return "xyzw".slice(0, Math.min(c.vec, 4)).split("").reduce(
    (sum, e) => `fma(${x}.${e}, ${w}.${e}, ${sum})`,
    acc,
  );
}

/** Horizontal sum of an accumulator (vec 8 accumulates in a vec4; `dot` in a scalar). */
function horizontalSum(c: GemvConfig, v: string): string {
  return c.vec === 1 || c.dot
    ? v
    : c.vec === 2
    ? `${v}.x + ${v}.y`
    : `(${v}.x + ${v}.y) + (${v}.z + ${v}.w)`;
}

/** Lane 0's store of row r, column j (rows and columns past the edge skipped). */
function gemvStore(c: GemvConfig, r: number, j: number, value: string): string {
  return `    if (row0 + ${r}u < m && col0 + ${
    j * c.nc
  }u < N) { Y[yOffset + (row0 + ${r}u) * Y_STRIDE + col0 + ${j * c.nc}u] = ${value}; }`;
}

/** The lanes of a column group reduce with subgroup shuffles; lane 0 stores. */
function subgroupReduce(p: Parts): string[] {
  const { c } = p;
  const lines = [
    "  // The lanes of a group are neighbours in one subgroup: butterfly-reduce with shuffles.",
  ];
  p.rowsCols((r, j) => {
    lines.push(`  var s${r}_${j} = ${horizontalSum(c, p.acc(r, j))};`);
    for (let off = c.lanes / 2; off >= 1; off /= 2) {
      lines.push(`  s${r}_${j} += subgroupShuffleXor(s${r}_${j}, ${off}u);`);
    }
  });
  lines.push("  if (lane == 0u) {");
  p.rowsCols((r, j) => lines.push(gemvStore(c, r, j, `s${r}_${j}`)));
  lines.push("  }");
  return lines;
}

/** The lanes of a column group reduce as a tree in workgroup memory; lane 0 stores. */
function workgroupReduce(p: Parts): string[] {
  const { c } = p;
  const slot = (r: number, j: number) => (r * c.cn + j) * p.threads;
  const lines: string[] = [];
  p.rowsCols((r, j) =>
    lines.push(`  partial[${slot(r, j)}u + li] = ${horizontalSum(c, p.acc(r, j))};`)
  );
  lines.push("  workgroupBarrier();", "  // Tree reduction over the lanes of each column group.");
  for (let off = c.lanes / 2; off >= 1; off /= 2) {
    lines.push(`  if (lane < ${off}u) {`);
    p.rowsCols((r, j) =>
      lines.push(`    partial[${slot(r, j)}u + li] += partial[${slot(r, j)}u + li + ${off}u];`)
    );
    lines.push("  }", "  workgroupBarrier();");
  }
  lines.push("  if (lane == 0u) {");
  p.rowsCols((r, j) => lines.push(gemvStore(c, r, j, `partial[${slot(r, j)}u + li]`)));
  lines.push("  }");
  return lines;
}

/** Workgroups to dispatch for m rows: [column groups, row groups, batches]. */
export function gemvGrid(c: GemvConfig, shape: GemmShape, m: number): [number, number, number] {
  const rows = Math.ceil(m / workgroupRows(c));
  return [Math.ceil(shape.n / (c.nc * c.cn)), rows, shape.xOffsets.length];
}
