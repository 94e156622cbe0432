/**
 * The outer-product tiled GEMM family for many rows, the layout of fast CUDA SGEMMs. A
 * workgroup of `(bn/rn) x (bm/rm)` threads computes a `bm x bn` tile of Y. Per `bk` slice of k,
 * X and W are stored k-major (transposed) in workgroup memory, so at each k a thread reads its
 * `rm` rows and `rn` columns as vec4s and does `rm x rn` fused multiply-adds on vec4
 * accumulators: no dot products, no horizontal adds. The next slice is loaded into registers
 * while this one is computed.
 *
 * A thread's rows and columns are interleaved in groups of four (`4 * (tid + threads * i)`),
 * so that neighbouring threads read neighbouring vec4s of workgroup memory and write
 * neighbouring 16-byte chunks of Y.
 *
 * @module
 */
import type { OuterConfig } from "./config.ts";
import { configName } from "./config.ts";
import type { WeightDtype } from "./dtype.ts";
import type { GemmShape } from "./problem.ts";
import { kernelPrelude, tiledEntry, tileLoadSlots } from "./wgsl.ts";

/** Generates the WGSL of an outer-product GEMM. Validate the config first with `configProblem`. */
export function outerWgsl(c: OuterConfig, shape: GemmShape, dtype: WeightDtype): string {
  const tx = c.bn / c.rn, ty = c.bm / c.rm, threads = tx * ty;
  const sliceVecs = c.bk / 4; // k vectors per tile row and slice
  const xPitch = c.bm / 4 + 1, wPitch = c.bn / 4 + 1; // vec4s per k row, + 1 against bank conflicts
  const xLoads = Math.ceil((c.bm * sliceVecs) / threads),
    wLoads = Math.ceil((c.bn * sliceVecs) / threads);
  const rmv = c.rm / 4, rnv = c.rn / 4;
  const lines: string[] = [];
  const emit = (s: string) => lines.push(s);
  const guarded = (l: number, rows: number, body: string) =>
    (l + 1) * threads > rows * sliceVecs
      ? `if (li + ${l * threads}u < ${rows * sliceVecs}u) { ${body} }`
      : body;

  // f16 math: tiles, prefetch registers and per-slice sums in f16 (see OuterConfig.half).
  const t = c.half ? "f16" : "f32";
  if (c.half) emit("enable f16;");
  emit(kernelPrelude(`outer-product GEMM ${configName(c)}`, shape, dtype, 4));
  if (c.half) {
    emit("fn loadWh(i: u32) -> vec4<f16> {");
    emit("  let u = W[i];");
    // Exact: every f16 is an f32. (naga types bitcast<vec2<f16>>(u32) as f32 and refuses it.)
    emit("  return vec4<f16>(vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y)));");
    emit("}");
    emit("");
  }
  const loadX = (at: string) => (c.half ? `vec4<f16>(X[${at}])` : `X[${at}]`);
  const loadW = (at: string) => (c.half ? `loadWh(${at})` : `loadW(${at})`);
  emit(`const BM = ${c.bm}u;`);
  emit(`const BN = ${c.bn}u;`);
  emit(`const SLICE = ${sliceVecs}u; // k vectors per slice`);
  if (c.split > 1) {
    emit(`const SPLIT = ${c.split}u; // workgroups per tile, each over KV / SPLIT`);
    emit(`const PART = ${shape.k / 4 / c.split}u; // k vectors per workgroup`);
  }
  emit("");
  emit(
    `var<workgroup> xTile: array<vec4<${t}>, ${c.bk * xPitch}>; // [k][row / 4], pitch ${xPitch}`,
  );
  emit(
    `var<workgroup> wTile: array<vec4<${t}>, ${
      c.bk * wPitch
    }>; // [k][column / 4], pitch ${wPitch}`,
  );
  emit("");
  for (const line of tiledEntry(tx, ty, shape, 4, c.split)) emit(line);
  // This workgroup's k range, and where its tile goes: Y, or its part's slab of the scratch.
  const [kBegin, kEnd, yAt] = c.split > 1
    ? ["kBegin", "kBegin + PART", "yPart"]
    : ["0u", "KV", "yOffset"];
  if (c.split > 1) {
    emit("  let kBegin = part * PART;");
    emit("  let yPart = yOffset + part * m * Y_STRIDE;");
  }
  const plus = (at: string) => (c.split > 1 ? `${at} + kBegin` : at);
  emit("  // Each thread loads whole k vectors of some tile rows; rows past the edge are clamped.");
  for (const line of tileLoadSlots(xLoads, wLoads, threads, "SLICE")) emit(line);
  for (let l = 0; l < xLoads; l++) emit(`  var xNext${l} = ${loadX(plus(`xAt${l}`))};`);
  for (let l = 0; l < wLoads; l++) emit(`  var wNext${l} = ${loadW(plus(`wAt${l}`))};`);
  // With f16 math each thread sums a slice into `hacc` and then adds that into `acc`.
  const sum = c.half ? "hacc" : "acc";
  for (let i = 0; i < c.rm; i++) {
    emit(
      `  ${Array.from({ length: rnv }, (_, j) => `var acc${i}_${j} = vec4<f32>(0.0);`).join(" ")}`,
    );
  }
  emit(`  for (var k = ${kBegin}; k < ${kEnd}; k += SLICE) {`);
  emit("    workgroupBarrier(); // everyone is done reading the previous slice");
  emit(
    "    // Store the prefetched slice transposed: component c of a k vector goes to k row 4q + c.",
  );
  const store = (tile: string, pitch: number, r: string, q: string, v: string) =>
    [0, 1, 2, 3].map((cc) =>
      `${tile}[(4u * ${q} + ${cc}u) * ${pitch}u + ${r} / 4u][${r} % 4u] = ${v}.${"xyzw"[cc]};`
    )
      .join(" ");
  for (let l = 0; l < xLoads; l++) {
    emit(`    ${guarded(l, c.bm, store("xTile", xPitch, `xr${l}`, `xq${l}`, `xNext${l}`))}`);
  }
  for (let l = 0; l < wLoads; l++) {
    emit(`    ${guarded(l, c.bn, store("wTile", wPitch, `wr${l}`, `wq${l}`, `wNext${l}`))}`);
  }
  emit("    workgroupBarrier();");
  emit(
    "    // Prefetch the next slice (the last trip reloads its own slice, unused) while computing.",
  );
  emit(`    let next = min(k + SLICE, ${kEnd} - SLICE);`);
  for (let l = 0; l < xLoads; l++) emit(`    xNext${l} = ${loadX(`xAt${l} + next`)};`);
  for (let l = 0; l < wLoads; l++) emit(`    wNext${l} = ${loadW(`wAt${l} + next`)};`);
  if (c.half) {
    for (let i = 0; i < c.rm; i++) {
      emit(
        `    ${
          Array.from({ length: rnv }, (_, j) => `var hacc${i}_${j} = vec4<f16>(0.0);`).join(" ")
        }`,
      );
    }
  }
  for (let kk = 0; kk < c.bk; kk++) {
    for (let i = 0; i < rmv; i++) {
      emit(`    let a${kk}_${i} = xTile[${kk * xPitch}u + lid.y + ${ty * i}u];`);
    }
    for (let j = 0; j < rnv; j++) {
      emit(`    let b${kk}_${j} = wTile[${kk * wPitch}u + lid.x + ${tx * j}u];`);
    }
    for (let i = 0; i < rmv; i++) {
      for (let ii = 0; ii < 4; ii++) {
        for (let j = 0; j < rnv; j++) {
          const a = `${sum}${4 * i + ii}_${j}`;
          emit(`    ${a} = fma(vec4<${t}>(a${kk}_${i}.${"xyzw"[ii]}), b${kk}_${j}, ${a});`);
        }
      }
    }
  }
  if (c.half) {
    for (let i = 0; i < c.rm; i++) {
      for (let j = 0; j < rnv; j++) emit(`    acc${i}_${j} += vec4<f32>(hacc${i}_${j});`);
    }
  }
  emit("  }");
  emit("  // Row 4 * (lid.y + TY * i) + ii, columns 4 * (lid.x + TX * j) + 0..3.");
  for (let i = 0; i < rmv; i++) {
    for (let ii = 0; ii < 4; ii++) {
      const r = `r${4 * i + ii}`;
      emit(`  let ${r} = row0 + 4u * (lid.y + ${ty * i}u) + ${ii}u;`);
      emit(`  if (${r} < m) {`);
      for (let j = 0; j < rnv; j++) {
        const col = `c${4 * i + ii}_${j}`;
        emit(`    let ${col} = col0 + 4u * (lid.x + ${tx * j}u);`);
        for (let cc = 0; cc < 4; cc++) {
          emit(
            `    if (${col} + ${cc}u < N) { Y[${yAt} + ${r} * Y_STRIDE + ${col} + ${cc}u] = acc${
              4 * i + ii
            }_${j}.${"xyzw"[cc]}; }`,
          );
        }
      }
      emit("  }");
    }
  }
  emit("}");
  return lines.join("\n") + "\n";
}

/** Workgroups to dispatch for m rows: [column tiles, row tiles, batches x split]. */
export function outerGrid(c: OuterConfig, shape: GemmShape, m: number): [number, number, number] {
  return [Math.ceil(shape.n / c.bn), Math.ceil(m / c.bm), shape.xOffsets.length * c.split];
}
