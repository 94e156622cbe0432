/**
 * The tiled GEMM family for many rows. Each workgroup of `(bn/rn) x (bm/rm)` threads computes a
 * `bm x bn` tile of Y; per `bk` slice of k it stages X and W (widened to f32) in padded
 * workgroup memory, then each thread accumulates its `rm x rn` outputs in registers. Loops
 * over the slice and the register block are unrolled here, because naga does not unroll.
 *
 * @module
 */
import type { TileConfig } from "./config.ts";
import { configName } from "./config.ts";
import type { WeightDtype } from "./dtype.ts";
import type { GemmShape } from "./problem.ts";
import { dotExpr, f32Vec, kernelPrelude, tiledEntry, tileLoadSlots } from "./wgsl.ts";

/** Generates the WGSL of a tiled GEMM. Validate the config first with `configProblem`. */
export function tileWgsl(c: TileConfig, shape: GemmShape, dtype: WeightDtype): string {
  const tx = c.bn / c.rn, ty = c.bm / c.rm, threads = tx * ty;
  const sliceVecs = c.bk / c.vec; // vectors per tile row and k slice
  const pitch = sliceVecs + 1; // padded row pitch in workgroup memory
  // Loads per thread; where a tile has fewer vectors than threads x loads, the extra threads skip.
  const xLoads = Math.ceil((c.bm * sliceVecs) / threads),
    wLoads = Math.ceil((c.bn * sliceVecs) / threads);
  const guard = (l: number, rows: number) =>
    (l + 1) * threads > rows * sliceVecs
      ? `if (li + ${l * threads}u < ${rows * sliceVecs}u) { `
      : "";
  const end = (l: number, rows: number) => ((l + 1) * threads > rows * sliceVecs ? " }" : "");
  const vt = f32Vec(c.vec);
  // Where row `r`'s k vector `q` is in a tile (WGSL expressions).
  const at = (r: string, q: string) =>
    c.nest ? `[${r}][${q}]` : `[${r.includes(" ") ? `(${r})` : r} * PITCH + ${q}]`;
  const lines: string[] = [];
  const emit = (s: string) => lines.push(s);

  emit(kernelPrelude(`tiled GEMM ${configName(c)}`, shape, dtype, c.vec));
  emit(`const BM = ${c.bm}u;`);
  emit(`const BN = ${c.bn}u;`);
  emit(`const PITCH = ${pitch}u; // ${sliceVecs} vectors of a k slice + 1 of padding`);
  emit("");
  if (c.nest) {
    // Arrays of rows: a read's row index is clamped once per register block, its k vector is a
    // constant (TileConfig.nest).
    emit(`var<workgroup> xTile: array<array<${vt}, ${pitch}>, ${c.bm}>;`);
    emit(`var<workgroup> wTile: array<array<${vt}, ${pitch}>, ${c.bn}>;`);
  } else {
    emit(`var<workgroup> xTile: array<${vt}, ${c.bm * pitch}>;`);
    emit(`var<workgroup> wTile: array<${vt}, ${c.bn * pitch}>;`);
  }
  emit("");
  for (const line of tiledEntry(tx, ty, shape, c.vec)) emit(line);
  emit("  // Where each thread loads from and stores to; rows past the edge are clamped.");
  for (const line of tileLoadSlots(xLoads, wLoads, threads, `${sliceVecs}u`)) emit(line);
  for (let i = 0; i < c.rm; i++) {
    emit(`  ${Array.from({ length: c.rn }, (_, j) => `var acc${i}_${j} = 0.0;`).join(" ")}`);
  }
  emit(`  for (var k = 0u; k < KV; k += ${sliceVecs}u) {`);
  for (let l = 0; l < xLoads; l++) {
    emit(`    ${guard(l, c.bm)}xTile${at(`xr${l}`, `xq${l}`)} = X[xAt${l} + k];${end(l, c.bm)}`);
  }
  for (let l = 0; l < wLoads; l++) {
    emit(
      `    ${guard(l, c.bn)}wTile${at(`wr${l}`, `wq${l}`)} = loadW(wAt${l} + k);${end(l, c.bn)}`,
    );
  }
  emit("    workgroupBarrier();");
  for (let q = 0; q < sliceVecs; q++) {
    for (let i = 0; i < c.rm; i++) {
      emit(`    let x${q}_${i} = xTile${at(`lid.y + ${ty * i}u`, `${q}u`)};`);
    }
    for (let j = 0; j < c.rn; j++) {
      emit(`    let w${q}_${j} = wTile${at(`lid.x + ${tx * j}u`, `${q}u`)};`);
    }
    for (let i = 0; i < c.rm; i++) {
      for (let j = 0; j < c.rn; j++) {
        emit(`    acc${i}_${j} += ${dotExpr(c.vec, `x${q}_${i}`, `w${q}_${j}`)};`);
      }
    }
  }
  emit("    workgroupBarrier();");
  emit("  }");
  emit("  // Each thread's outputs are strided by the workgroup size, so stores coalesce.");
  for (let i = 0; i < c.rm; i++) {
    emit(`  let r${i} = row0 + lid.y + ${ty * i}u;`);
    emit(`  if (r${i} < m) {`);
    for (let j = 0; j < c.rn; j++) {
      emit(`    let c${i}_${j} = col0 + lid.x + ${tx * j}u;`);
      emit(
        `    if (c${i}_${j} < N) { Y[yOffset + r${i} * Y_STRIDE + c${i}_${j}] = acc${i}_${j}; }`,
      );
    }
    emit("  }");
  }
  emit("}");
  return lines.join("\n") + "\n";
}

/** Workgroups to dispatch for m rows: [column tiles, row tiles, batches]. */
export function tileGrid(c: TileConfig, shape: GemmShape, m: number): [number, number, number] {
  return [Math.ceil(shape.n / c.bn), Math.ceil(m / c.bm), shape.xOffsets.length];
}
