/**
 * The split-k GEMV family for few rows. A workgroup of `nc * lanes` threads computes `nc`
 * columns of Y for `rm` rows. The `lanes` threads of a column walk k together (lane i reads
 * vectors i, i + lanes, ..., so neighbouring threads read neighbouring addresses), keep one
 * vector accumulator per row, and then reduce across lanes in workgroup memory or with
 * subgroup shuffles. Decode (m = 1) is bound by reading W once, and this reads it once.
 *
 * @module
 */
import type { GemvConfig } from "./config.ts";
import { configName } from "./config.ts";
import type { WeightDtype } from "./dtype.ts";
import type { GemmShape } from "./problem.ts";
import { batchOffsets, f32Vec, kernelPrelude } from "./wgsl.ts";

/** Iterations of the k loop body that are unrolled into one loop trip. */
function unrollFactor(steps: number): number {
  for (let u = Math.min(steps, 8); u > 1; u--) if (steps % u === 0) return u;
  return 1;
}

/** Generates the WGSL of a split-k GEMV. Validate the config first with `configProblem`. */
export function gemvWgsl(c: GemvConfig, shape: GemmShape, dtype: WeightDtype): string {
  const threads = c.nc * c.lanes;
  const steps = shape.k / c.vec / c.lanes; // k vectors each lane reads per row
  const unroll = unrollFactor(steps);
  const vt = f32Vec(c.vec);
  const sum = (v: string) =>
    c.vec === 1 ? v : c.vec === 2 ? `${v}.x + ${v}.y` : `(${v}.x + ${v}.y) + (${v}.z + ${v}.w)`; // vec 8 accumulates in a vec4
  const lines: string[] = [];
  const emit = (s: string) => lines.push(s);

  emit(kernelPrelude(`split-k GEMV ${configName(c)}`, shape, dtype, c.vec));
  emit(`const NC = ${c.nc}u; // columns per workgroup`);
  emit(`const LANES = ${c.lanes}u; // threads per column`);
  emit(`const RM = ${c.rm}u; // rows per workgroup`);
  if (!c.subgroup) emit(`\nvar<workgroup> partial: array<f32, ${c.rm * threads}>;`);
  emit("");
  emit(`@compute @workgroup_size(${threads})`);
  emit("fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {");
  emit("  let m = params.m;");
  emit("  let b = wg.z;");
  emit(batchOffsets(shape, c.vec, "  ").trimEnd());
  emit("  let lane = li % LANES;");
  emit("  let col = wg.x * NC + li / LANES;");
  emit("  let wRow = W_OFFSET + b * W_BATCH + min(col, N - 1u) * KV;");
  emit("  let row0 = wg.y * RM;");
  for (let r = 0; r < c.rm; r++) {
    emit(
      `  let x${r} = xOffset + min(row0 + ${r}u, m - 1u) * X_STRIDE; // rows past m are clamped`,
    );
    emit(`  var acc${r} = ${vt}(0.0);`);
  }
  emit(`  for (var q = lane; q < KV; q += ${unroll * c.lanes}u) {`);
  emit("    // All weight loads first, so that they are in flight together.");
  const at = (u: number) => (u === 0 ? "q" : `q + ${u * c.lanes}u`);
  for (let u = 0; u < unroll; u++) emit(`    let w${u} = loadW(wRow + ${at(u)});`);
  for (let u = 0; u < unroll; u++) {
    for (let r = 0; r < c.rm; r++) {
      if (c.vec === 8) {
        emit(`    acc${r} = fma(X[x${r} + 2u * (${at(u)})], w${u}.lo, acc${r});`);
        emit(`    acc${r} = fma(X[x${r} + 2u * (${at(u)}) + 1u], w${u}.hi, acc${r});`);
      } else {
        emit(`    acc${r} = fma(X[x${r} + ${at(u)}], w${u}, acc${r});`);
      }
    }
  }
  emit("  }");
  if (c.subgroup) {
    emit("  // Lanes of a column are neighbours in one subgroup: butterfly-reduce with shuffles.");
    for (let r = 0; r < c.rm; r++) {
      emit(`  var s${r} = ${sum(`acc${r}`)};`);
      for (let off = c.lanes / 2; off >= 1; off /= 2) {
        emit(`  s${r} += subgroupShuffleXor(s${r}, ${off}u);`);
      }
    }
    emit("  if (lane == 0u && col < N) {");
    for (let r = 0; r < c.rm; r++) {
      emit(`    if (row0 + ${r}u < m) { Y[yOffset + (row0 + ${r}u) * Y_STRIDE + col] = s${r}; }`);
    }
    emit("  }");
  } else {
    for (let r = 0; r < c.rm; r++) emit(`  partial[${r * threads}u + li] = ${sum(`acc${r}`)};`);
    emit("  workgroupBarrier();");
    emit("  // Tree reduction over the lanes of each column.");
    for (let off = c.lanes / 2; off >= 1; off /= 2) {
      emit(`  if (lane < ${off}u) {`);
      for (let r = 0; r < c.rm; r++) {
        emit(`    partial[${r * threads}u + li] += partial[${r * threads}u + li + ${off}u];`);
      }
      emit("  }");
      emit("  workgroupBarrier();");
    }
    emit("  if (lane == 0u && col < N) {");
    for (let r = 0; r < c.rm; r++) {
      emit(
        `    if (row0 + ${r}u < m) { Y[yOffset + (row0 + ${r}u) * Y_STRIDE + col] = partial[${
          r * threads
        }u + li]; }`,
      );
    }
    emit("  }");
  }
  emit("}");
  return lines.join("\n") + "\n";
}

/** Workgroups to dispatch for m rows: [column groups, row groups, batches]. */
export function gemvGrid(c: GemvConfig, shape: GemmShape, m: number): [number, number, number] {
  return [Math.ceil(shape.n / c.nc), Math.ceil(m / c.rm), shape.xOffsets.length];
}
