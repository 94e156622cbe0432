/**
 * The split-k GEMV family for few rows. A workgroup of `nc * lanes` threads computes
 * `nc * cn` columns of Y for `rm` rows. The `lanes` threads of a column group walk k together
 * (lane i reads vectors i, i + lanes, ..., so neighbouring threads read neighbouring
 * addresses); each thread keeps `rm x cn` vector accumulators, so one load of X serves `cn`
 * columns and one load of W serves `rm` rows. The lanes then reduce in workgroup memory or
 * with subgroup shuffles. Decode (m = 1) is bound by reading W once, and this reads it once.
 *
 * @module
 */
import type { GemvConfig } from "./config.ts";
import { configName } from "./config.ts";
import type { WeightDtype } from "./dtype.ts";
import type { GemmShape } from "./problem.ts";
import { batchOffsets, f32Vec, kernelPrelude } from "./wgsl.ts";

/** Iterations of the k loop body that are unrolled into one loop trip. */
function unrollFactor(steps: number, perStep: number): number {
  const most = Math.max(1, Math.min(8, Math.floor(32 / perStep)));
  for (let u = Math.min(steps, most); u > 1; u--) if (steps % u === 0) return u;
  return 1;
}

/** Generates the WGSL of a split-k GEMV. Validate the config first with `configProblem`. */
export function gemvWgsl(c: GemvConfig, shape: GemmShape, dtype: WeightDtype): string {
  const threads = c.nc * c.lanes;
  const steps = shape.k / c.vec / c.lanes; // k vectors each lane reads per row
  const unroll = unrollFactor(steps, c.cn);
  const vt = f32Vec(c.vec);
  // Horizontal sum of an accumulator (vec 8 accumulates in a vec4).
  const sum = (v: string) =>
    c.vec === 1 ? v : c.vec === 2 ? `${v}.x + ${v}.y` : `(${v}.x + ${v}.y) + (${v}.z + ${v}.w)`;
  const acc = (r: number, j: number) => `acc${r}_${j}`;
  const rowsCols = (f: (r: number, j: number) => void) => {
    for (let r = 0; r < c.rm; r++) for (let j = 0; j < c.cn; j++) f(r, j);
  };
  const lines: string[] = [];
  const emit = (s: string) => lines.push(s);

  emit(kernelPrelude(`split-k GEMV ${configName(c)}`, shape, dtype, c.vec));
  emit(`const NC = ${c.nc}u; // column groups per workgroup`);
  emit(`const CN = ${c.cn}u; // columns per thread`);
  emit(`const LANES = ${c.lanes}u; // threads per column group`);
  emit(`const RM = ${c.rm}u; // rows per workgroup`);
  if (!c.subgroup) emit(`\nvar<workgroup> partial: array<f32, ${c.rm * c.cn * threads}>;`);
  emit("");
  emit(`@compute @workgroup_size(${threads})`);
  emit("fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {");
  emit("  let m = params.m;");
  emit("  let b = wg.z;");
  emit(batchOffsets(shape, c.vec, "  ").trimEnd());
  emit("  let lane = li % LANES;");
  emit("  // Column j of this thread's group: neighbouring groups own neighbouring columns.");
  emit("  let col0 = wg.x * NC * CN + li / LANES;");
  for (let j = 0; j < c.cn; j++) {
    emit(`  let w${j}Row = W_OFFSET + b * W_BATCH + min(col0 + ${j * c.nc}u, N - 1u) * KV;`);
  }
  emit("  let row0 = wg.y * RM;");
  for (let r = 0; r < c.rm; r++) {
    emit(
      `  let x${r} = xOffset + min(row0 + ${r}u, m - 1u) * X_STRIDE; // rows past m are clamped`,
    );
  }
  rowsCols((r, j) => emit(`  var ${acc(r, j)} = ${vt}(0.0);`));
  emit(`  for (var q = lane; q < KV; q += ${unroll * c.lanes}u) {`);
  emit("    // All weight loads first, so that they are in flight together.");
  const at = (u: number) => (u === 0 ? "q" : `q + ${u * c.lanes}u`);
  for (let u = 0; u < unroll; u++) {
    for (let j = 0; j < c.cn; j++) emit(`    let w${u}_${j} = loadW(w${j}Row + ${at(u)});`);
  }
  for (let u = 0; u < unroll; u++) {
    for (let r = 0; r < c.rm; r++) {
      if (c.vec === 8) {
        emit(`    let xa${u}_${r} = X[x${r} + 2u * (${at(u)})];`);
        emit(`    let xb${u}_${r} = X[x${r} + 2u * (${at(u)}) + 1u];`);
        for (let j = 0; j < c.cn; j++) {
          emit(
            `    ${acc(r, j)} = fma(xb${u}_${r}, w${u}_${j}.hi, fma(xa${u}_${r}, w${u}_${j}.lo, ${
              acc(r, j)
            }));`,
          );
        }
      } else {
        emit(`    let x${u}_${r} = X[x${r} + ${at(u)}];`);
        for (let j = 0; j < c.cn; j++) {
          emit(`    ${acc(r, j)} = fma(x${u}_${r}, w${u}_${j}, ${acc(r, j)});`);
        }
      }
    }
  }
  emit("  }");
  const store = (r: number, j: number, value: string) =>
    `    if (row0 + ${r}u < m && col0 + ${
      j * c.nc
    }u < N) { Y[yOffset + (row0 + ${r}u) * Y_STRIDE + col0 + ${j * c.nc}u] = ${value}; }`;
  if (c.subgroup) {
    emit(
      "  // The lanes of a group are neighbours in one subgroup: butterfly-reduce with shuffles.",
    );
    rowsCols((r, j) => {
      emit(`  var s${r}_${j} = ${sum(acc(r, j))};`);
      for (let off = c.lanes / 2; off >= 1; off /= 2) {
        emit(`  s${r}_${j} += subgroupShuffleXor(s${r}_${j}, ${off}u);`);
      }
    });
    emit("  if (lane == 0u) {");
    rowsCols((r, j) => emit(store(r, j, `s${r}_${j}`)));
    emit("  }");
  } else {
    const slot = (r: number, j: number) => (r * c.cn + j) * threads;
    rowsCols((r, j) => emit(`  partial[${slot(r, j)}u + li] = ${sum(acc(r, j))};`));
    emit("  workgroupBarrier();");
    emit("  // Tree reduction over the lanes of each column group.");
    for (let off = c.lanes / 2; off >= 1; off /= 2) {
      emit(`  if (lane < ${off}u) {`);
      rowsCols((r, j) =>
        emit(`    partial[${slot(r, j)}u + li] += partial[${slot(r, j)}u + li + ${off}u];`)
      );
      emit("  }");
      emit("  workgroupBarrier();");
    }
    emit("  if (lane == 0u) {");
    rowsCols((r, j) => emit(store(r, j, `partial[${slot(r, j)}u + li]`)));
    emit("  }");
  }
  emit("}");
  return lines.join("\n") + "\n";
}

/** Workgroups to dispatch for m rows: [column groups, row groups, batches]. */
export function gemvGrid(c: GemvConfig, shape: GemmShape, m: number): [number, number, number] {
  return [Math.ceil(shape.n / (c.nc * c.cn)), Math.ceil(m / c.rm), shape.xOffsets.length];
}
