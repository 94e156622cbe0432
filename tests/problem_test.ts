import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import type { ProjectionSpec } from "../kernels/problem.ts";
import {
  batchedInputWidth,
  batchedShape,
  fusedShape,
  fusedWidth,
  kimiLinearSpec,
  projectionFlops,
  segmentOffsets,
  stageShape,
  unfusedShapes,
  validateSpec,
} from "../kernels/problem.ts";
import { InputFileError, loadProblem, parseProblem } from "../tuner/yaml_file.ts";

const problemsDir = fileURLToPath(new URL("../problems/", import.meta.url));

Deno.test("kimiLinearSpec() gives the per-rank widths for tp 1, 2, 4 and 8", () => {
  const expected: Record<number, { fused: number; n: number; heads: number }> = {
    1: { fused: 12576, n: 4096, heads: 32 },
    2: { fused: 6416, n: 2048, heads: 16 },
    4: { fused: 3336, n: 1024, heads: 8 },
    8: { fused: 1796, n: 512, heads: 4 },
  };
  for (const [tp, want] of Object.entries(expected)) {
    const spec = kimiLinearSpec({ tp: Number(tp) });
    validateSpec(spec);
    assert.equal(spec.name, `kimi-linear-tp${tp}`);
    assert.equal(spec.k, 2304);
    assert.equal(fusedWidth(spec), want.fused, `fused width at tp ${tp}`);
    assert.deepEqual(spec.segments.map((s) => s.name), ["q", "k", "v", "b", "f_a", "g_a"]);
    assert.equal(spec.segments.find((s) => s.name === "b")!.n, want.heads);
    assert.deepEqual(spec.batched, {
      inputs: ["f_a", "g_a"],
      outputs: ["f_b", "g_b"],
      n: want.n,
    });
    assert.equal(batchedInputWidth(spec), 128);
  }
});

Deno.test("kimiLinearSpec() rejects a tp that does not divide the heads with a RangeError", () => {
  for (const tp of [3, 0, 16, 1.5]) {
    assert.throws(() => kimiLinearSpec({ tp }), RangeError, `tp ${tp}`);
  }
});

Deno.test("every problems/kimi-linear-tp*.yaml loads and equals kimiLinearSpec()", async () => {
  let count = 0;
  for (const tp of [1, 2, 4, 8]) {
    const spec = await loadProblem(`${problemsDir}kimi-linear-tp${tp}.yaml`);
    assert.deepEqual(spec, kimiLinearSpec({ tp }), `tp ${tp}`);
    count++;
  }
  const files = [...Deno.readDirSync(problemsDir)].filter((e) => /^kimi-linear-tp/.test(e.name));
  assert.equal(files.length, count, "one YAML file per tp");
});

Deno.test("the llama3 YAML files express fused QKV and gate/up without a batched stage", async () => {
  const qkv = await loadProblem(`${problemsDir}llama3-8b-qkv.yaml`);
  assert.equal(qkv.k, 4096);
  assert.deepEqual(qkv.segments, [{ name: "q", n: 4096 }, { name: "k", n: 1024 }, {
    name: "v",
    n: 1024,
  }]);
  assert.equal(qkv.batched, undefined);
  assert.equal(batchedShape(qkv), undefined);
  assert.equal(fusedWidth(qkv), 6144);
  const gateUp = await loadProblem(`${problemsDir}llama3-8b-gate-up.yaml`);
  assert.equal(gateUp.k, 4096);
  assert.deepEqual(gateUp.segments.map((s) => [s.name, s.n]), [["gate", 14336], ["up", 14336]]);
  assert.equal(unfusedShapes(gateUp).length, 2);
});

Deno.test("every YAML file in problems/ loads and validates", async () => {
  for (const entry of Deno.readDirSync(problemsDir)) {
    if (!/\.ya?ml$/.test(entry.name)) continue;
    const spec = await loadProblem(`${problemsDir}${entry.name}`);
    validateSpec(spec);
    assert.equal(`${spec.name}.yaml`, entry.name, "the name matches the file name");
  }
});

Deno.test("segmentOffsets() gives each segment's first column in the fused output", () => {
  const spec = kimiLinearSpec({ tp: 4 });
  assert.deepEqual(
    [...segmentOffsets(spec)],
    [["q", 0], ["k", 1024], ["v", 2048], ["b", 3072], ["f_a", 3080], ["g_a", 3208]],
  );
});

Deno.test("fusedShape() reads X densely and writes the full fused row", () => {
  const spec = kimiLinearSpec({ tp: 8 });
  assert.deepEqual(fusedShape(spec), {
    k: 2304,
    n: 1796,
    xOffsets: [0],
    xRowStride: 2304,
    wOffset: 0,
    yOffsets: [0],
    yRowStride: 1796,
  });
});

Deno.test("batchedShape() reads f_a and g_a in place from the fused output", () => {
  const spec = kimiLinearSpec({ tp: 4 });
  const shape = batchedShape(spec)!;
  assert.deepEqual(shape, {
    k: 128,
    n: 1024,
    xOffsets: [3080, 3208], // columns of f_a and g_a
    xRowStride: 3336, // the fused width
    wOffset: 0,
    yOffsets: [0, 1024],
    yRowStride: 2048,
  });
});

Deno.test("unfusedShapes() gives one GEMM per segment and per batched input", () => {
  const spec = kimiLinearSpec({ tp: 2 });
  const shapes = unfusedShapes(spec);
  assert.equal(shapes.length, spec.segments.length + spec.batched!.inputs.length);
  assert.deepEqual(shapes.map((s) => s.stage), [
    "fused",
    "fused",
    "fused",
    "fused",
    "fused",
    "fused",
    "batched",
    "batched",
  ]);
  const offsets = segmentOffsets(spec);
  spec.segments.forEach((s, i) => {
    const { shape } = shapes[i];
    assert.equal(shape.n, s.n, `${s.name} width`);
    assert.equal(shape.wOffset, offsets.get(s.name)! * spec.k, `${s.name} weight offset`);
    assert.deepEqual(shape.yOffsets, [offsets.get(s.name)], `${s.name} output offset`);
    assert.equal(shape.yRowStride, fusedWidth(spec));
    assert.deepEqual(shape.xOffsets, [0]);
  });
  const [fb, gb] = shapes.slice(6).map((s) => s.shape);
  assert.deepEqual(fb.xOffsets, [offsets.get("f_a")]);
  assert.deepEqual(gb.xOffsets, [offsets.get("g_a")]);
  assert.equal(fb.wOffset, 0);
  assert.equal(gb.wOffset, 2048 * 128);
  assert.deepEqual(fb.yOffsets, [0]);
  assert.deepEqual(gb.yOffsets, [2048]);
  assert.equal(gb.yRowStride, 4096);
});

Deno.test("unfusedShapes() of a spec without a batched stage has one GEMM per segment", () => {
  const spec: ProjectionSpec = {
    name: "x",
    k: 8,
    segments: [{ name: "a", n: 4 }, { name: "b", n: 2 }],
  };
  assert.deepEqual(unfusedShapes(spec).map((s) => [s.stage, s.shape.wOffset]), [
    ["fused", 0],
    ["fused", 32],
  ]);
});

Deno.test("projectionFlops() counts both stages", () => {
  const spec = kimiLinearSpec({ tp: 8 });
  assert.equal(projectionFlops(spec, 3), 2 * 3 * 2304 * 1796 + 2 * 3 * 128 * 512 * 2);
});

const valid = (): ProjectionSpec => ({
  name: "t",
  k: 64,
  segments: [{ name: "a", n: 8 }, { name: "f", n: 16 }, { name: "g", n: 16 }],
  batched: { inputs: ["f", "g"], outputs: ["f_b", "g_b"], n: 24 },
});

Deno.test("validateSpec() accepts a well-formed spec", () => {
  validateSpec(valid());
  validateSpec({ name: "x", k: 1, segments: [{ name: "a", n: 1 }] });
});

Deno.test("validateSpec() rejects repeated segment and output names", () => {
  const dup = valid();
  dup.segments.push({ name: "a", n: 4 });
  assert.throws(() => validateSpec(dup), { name: "RangeError", message: /"a" repeats/ });
  const clash = valid();
  clash.batched!.outputs = ["f_b", "a"];
  assert.throws(() => validateSpec(clash), { name: "RangeError", message: /"a" repeats/ });
});

Deno.test("validateSpec() rejects a batched input that is not a segment", () => {
  const spec = valid();
  spec.batched!.inputs = ["f", "nope"];
  assert.throws(() => validateSpec(spec), {
    name: "RangeError",
    message: /"nope" is not a segment/,
  });
});

Deno.test("validateSpec() rejects batched inputs of unequal widths", () => {
  const spec = valid();
  spec.batched!.inputs = ["a", "f"];
  assert.throws(() => validateSpec(spec), { name: "RangeError", message: /one width/ });
});

Deno.test("validateSpec() rejects unequal counts of batched inputs and outputs", () => {
  const spec = valid();
  spec.batched!.outputs = ["f_b"];
  assert.throws(() => validateSpec(spec), RangeError);
});

Deno.test("validateSpec() rejects zero, negative and non-integer sizes naming the field", () => {
  const cases: [string, (s: ProjectionSpec) => void, RegExp][] = [
    ["k = 0", (s) => (s.k = 0), /"k"/],
    ["k = -64", (s) => (s.k = -64), /"k"/],
    ["k = 1.5", (s) => (s.k = 1.5), /"k"/],
    ["segment n = 0", (s) => (s.segments[1].n = 0), /segments\[1\]\.n/],
    ["segment n = -8", (s) => (s.segments[0].n = -8), /segments\[0\]\.n/],
    ["segment n = 2.5", (s) => (s.segments[2].n = 2.5), /segments\[2\]\.n/],
    ["batched n = 0", (s) => (s.batched!.n = 0), /batched\.n/],
  ];
  for (const [what, mutate, field] of cases) {
    const spec = valid();
    mutate(spec);
    assert.throws(() => validateSpec(spec), { name: "RangeError", message: field }, what);
  }
});

Deno.test("validateSpec() rejects fields of the wrong type with a TypeError", () => {
  const spec = valid() as unknown as Record<string, unknown>;
  spec.k = "64";
  assert.throws(() => validateSpec(spec as unknown as ProjectionSpec), TypeError);
  assert.throws(
    () => validateSpec({ name: "x", k: 8, segments: [] } as ProjectionSpec),
    TypeError,
  );
  assert.throws(() => validateSpec({ name: "", k: 8, segments: [{ name: "a", n: 1 }] }), TypeError);
});

Deno.test("parseProblem() rejects bad YAML specs naming the file", () => {
  const file = "bad.yaml";
  const cases = [
    "k: [",
    "name: x\nk: 64\nsegments: []\n",
    "name: x\nk: 64\nsegments:\n  - { name: a, n: 8 }\nextra: 1\n",
    "name: x\nk: 0\nsegments:\n  - { name: a, n: 8 }\n",
    "name: x\nk: 64\nsegments:\n  - { name: a, n: 8 }\n  - { name: a, n: 8 }\n",
    "name: x\nk: 64\nsegments:\n  - { name: a, n: 8 }\nbatched: { inputs: [z], outputs: [y], n: 4 }\n",
  ];
  for (const text of cases) {
    assert.throws(
      () => parseProblem(text, file),
      (e: unknown) => e instanceof InputFileError && e.message.includes(`"${file}"`),
      JSON.stringify(text),
    );
  }
});

Deno.test("stageShape() names the stage it cannot give", () => {
  const spec = kimiLinearSpec({ tp: 4 });
  assert.deepEqual(stageShape(spec, "fused"), fusedShape(spec));
  assert.deepEqual(stageShape(spec, "batched"), batchedShape(spec));
  assert.throws(() => stageShape(spec, "unfused"), {
    name: "RangeError",
    message: 'Expected the stage to be fused or batched, got "unfused"',
  });
  const single = { ...spec, name: "single", batched: undefined };
  assert.throws(() => stageShape(single, "batched"), {
    name: "RangeError",
    message: 'problem "single" has no batched stage',
  });
});
