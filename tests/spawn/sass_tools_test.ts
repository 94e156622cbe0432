/**
 * The tools behind bench/gpu_sass.sh that run anywhere: compiling one config alone, and counting
 * the opcodes of disassembled listings side by side.
 */
import assert from "node:assert/strict";
import { runScript, withTempDir } from "../helpers.ts";

Deno.test("sass_compile.ts compiles one config on this adapter and names it", async () => {
  const run = await runScript("bench/sass_compile.ts", [
    "outer-bm64-bn64-bk16-rm8-rn4",
    "--dtype",
    "f32",
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(
    run.stdout.trim(),
    "outer-bm64-bn64-bk16-rm8-rn4: compiled for kimi-linear-tp4 f32 (fused stage)",
  );
});

Deno.test("sass_compile.ts --runs dispatches the kernel, a stream-K one with its reduction", async () => {
  for (const config of ["outer-bm64-bn64-bk16-rm8-rn4", "outer-bm64-bn64-bk16-rm8-rn4-sk8"]) {
    const run = await runScript("bench/sass_compile.ts", [
      config,
      "--dtype",
      "f32",
      "--runs",
      "2",
      "--m",
      "70",
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(
      run.stdout.trim(),
      `${config}: compiled for kimi-linear-tp4 f32 (fused stage)\n${config}: 2 runs at m=70`,
    );
  }
  const bad = await runScript("bench/sass_compile.ts", [
    "outer-bm64-bn64-bk16-rm8-rn4",
    "--m",
    "0",
  ]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--runs and --m: expected whole numbers .*, got 0 and 0/);
});

Deno.test("sass_compile.ts names a bad weight type or a config the problem rules out", async () => {
  const dtype = await runScript("bench/sass_compile.ts", [
    "outer-bm64-bn64-bk16-rm8-rn4",
    "--dtype",
    "f8",
  ]);
  assert.equal(dtype.code, 2);
  assert.match(dtype.stderr, /--dtype: Expected a weight type \(f32, f16, bf16\), got "f8"/);
  // f16 math needs f16 weights.
  const half = await runScript("bench/sass_compile.ts", [
    "outer-bm64-bn64-bk32-rm8-rn4-h",
    "--dtype",
    "f32",
  ]);
  assert.notEqual(half.code, 0);
  assert.match(
    half.stderr,
    /Expected a config this GPU runs, got outer-bm64-bn64-bk32-rm8-rn4-h: /,
  );
});

Deno.test("sass_count.ts puts two listings side by side, broadcast HFMA2s apart", async () => {
  await withTempDir("sass-count-", async (dir) => {
    const line = (addr: number, text: string) =>
      `        /*${addr.toString(16).padStart(4, "0")}*/  ${text} ;`;
    await Deno.writeTextFile(
      `${dir}/plain.sass`,
      [
        ".text.main:",
        line(0, "HFMA2 R4, R2.H0_H0, R6, R4"),
        line(16, "HFMA2 R5, R2.H1_H1, R7, R5"),
        line(32, "LDS.128 R8, [R3]"),
      ].join("\n"),
    );
    await Deno.writeTextFile(
      `${dir}/splat.sass`,
      [
        line(0, "HFMA2 R4, R2, R6, R4"),
        line(16, "@P0 LDS.64 R8, [R3+0x10]"),
        line(32, "EXIT"),
      ].join("\n"),
    );
    const run = await runScript("bench/sass_count.ts", [`${dir}/plain.sass`, `${dir}/splat.sass`], {
      permissions: ["--allow-read"],
    });
    assert.equal(run.code, 0, run.stderr);
    const rows = run.stdout.trim().split("\n").map((l) => l.trim().split(/\s{2,}/));
    assert.deepEqual(rows, [
      ["opcode", "plain", "splat"],
      ["HFMA2", "2", "1"],
      ["HFMA2 (h0h0)", "2", "0"],
      ["LDS", "1", "1"],
      ["EXIT", "0", "1"],
      ["total", "3", "3"],
    ]);
  });
});

Deno.test("sass_count.ts --loop counts the largest loop's body, second-pipe HFMA2s apart", async () => {
  await withTempDir("sass-loop-", async (dir) => {
    const line = (addr: number, text: string) =>
      `        /*${addr.toString(16).padStart(4, "0")}*/  ${text} ;`;
    const listing = [
      line(0x00, "MOV R1, RZ"),
      line(0x10, "@P1 BRA 0x60"), // forward: not a loop
      line(0x20, "LDS.64 R8, [R3]"), // the k loop, 0x20-0x50
      line(0x30, "HFMA2.MMA R4, R8, R6, R4"),
      line(0x40, "HFMA2 R5, R9, R7, R5"),
      line(0x50, "@P0 BRA 0x20"),
      line(0x60, "HFMA2 R4, R4, R4, R4"), // a short loop, 0x60-0x70
      line(0x70, "@P2 BRA 0x60"),
      line(0x80, "EXIT"),
    ].join("\n");
    await Deno.writeTextFile(`${dir}/k.sass`, listing);
    const run = await runScript("bench/sass_count.ts", ["--loop", `${dir}/k.sass`], {
      permissions: ["--allow-read"],
    });
    assert.equal(run.code, 0, run.stderr);
    const rows = run.stdout.trim().split("\n").map((l) => l.trim().split(/\s{2,}/));
    assert.deepEqual(rows, [
      ["opcode", "k"],
      ["HFMA2", "2"],
      ["BRA", "1"],
      ["HFMA2 (mma)", "1"],
      ["LDS", "1"],
      ["total", "4"],
    ]);
  });
});
