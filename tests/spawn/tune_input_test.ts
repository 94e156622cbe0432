/**
 * Hardening of the tuner against bad input (issue 4): problem and search-space files that are
 * malformed, incomplete, mistyped, out of range or misspelt; a weight type or bucket list the
 * problem or space cannot serve; bad flags; a corrupt or foreign cache file. Each is refused
 * with a message naming the cause, a non-zero exit, and nothing written.
 */
import assert from "node:assert/strict";
import type { SearchSpace } from "../../kernels/space.ts";
import { DEFAULT_SPACE, enumerateSpace } from "../../kernels/space.ts";
import { CACHE_SCHEMA_VERSION, cacheFileName } from "../../cache/schema.ts";
import { parseCli, UsageError } from "../../tuner/cli.ts";
import { planSpace, TuneInputError } from "../../tuner/plan.ts";
import { InputFileError, loadProblem, parseProblem, parseSpace } from "../../tuner/yaml_file.ts";
import {
  CAPS,
  childAdapterFingerprint,
  filesUnder,
  ROOT,
  runCli,
  withTempDir,
} from "../helpers.ts";

const tiny = await loadProblem(`${ROOT}problems/tiny.yaml`);
const SEGMENTS = "segments:\n  - { name: a, n: 8 }\n";

/** Problem files that cannot be used, and the field (or words) the error must name. */
const BAD_PROBLEMS: [string, string, RegExp][] = [
  ["malformed YAML", "name: x\nk: [64\n", /not valid YAML/],
  ["not a mapping", "- 1\n- 2\n", /expected object/],
  ["an empty file", "", /expected object/],
  ["no name", `k: 64\n${SEGMENTS}`, /field "name" required/],
  ["no k", `name: x\n${SEGMENTS}`, /field "k" required/],
  ["no segments", "name: x\nk: 64\n", /field "segments" required/],
  ["k as a string", `name: x\nk: "64"\n${SEGMENTS}`, /field "k" expected number/],
  ["k fractional", `name: x\nk: 64.5\n${SEGMENTS}`, /field "k" expected integer/],
  ["k zero", `name: x\nk: 0\n${SEGMENTS}`, /field "k" .*greater than 0/],
  ["k negative", `name: x\nk: -64\n${SEGMENTS}`, /field "k" .*greater than 0/],
  [
    "segments not a list",
    "name: x\nk: 64\nsegments: { a: 8 }\n",
    /field "segments" expected array/,
  ],
  [
    "a segment width zero",
    "name: x\nk: 64\nsegments:\n  - { name: a, n: 0 }\n",
    /field "segments.0.n"/,
  ],
  [
    "a segment without a name",
    "name: x\nk: 64\nsegments:\n  - { n: 8 }\n",
    /field "segments.0.name" required/,
  ],
  [
    "a misspelt top-level key",
    `name: x\nk: 64\n${SEGMENTS}segmnets: []\n`,
    /unrecognized key.*segmnets/,
  ],
  [
    "a misspelt segment key",
    "name: x\nk: 64\nsegments:\n  - { name: a, width: 8 }\n",
    /field "segments.0" unrecognized key.*'width'/,
  ],
  [
    "a misspelt batched key",
    `name: x\nk: 64\n${SEGMENTS}batched: { inputs: [a], outputs: [b], n: 4, m: 1 }\n`,
    /field "batched" unrecognized key.*'m'/,
  ],
  [
    "a batched input that is not a segment",
    `name: x\nk: 64\n${SEGMENTS}batched: { inputs: [z], outputs: [y], n: 4 }\n`,
    /"z" is not a segment/,
  ],
  [
    "repeated names",
    "name: x\nk: 64\nsegments:\n  - { name: a, n: 8 }\n  - { name: a, n: 4 }\n",
    /"a" repeats/,
  ],
];

Deno.test("parseProblem() refuses each bad problem file naming the file and the field", () => {
  for (const [what, text, cause] of BAD_PROBLEMS) {
    assert.throws(() => parseProblem(text, "bad.yaml"), (e: unknown) => {
      assert.ok(e instanceof InputFileError, `${what}: ${e}`);
      assert.ok(e.message.includes('"bad.yaml"'), `${what}: names the file: ${e.message}`);
      assert.match(e.message, cause, what);
      return true;
    }, what);
  }
});

const TILE = "tile: { bm: [32], bn: [32], bk: [8], rm: [4], rn: [4], vec: [4] }\n";
/** Search-space files that cannot be used, and what the error must name. */
const BAD_SPACES: [string, string, RegExp][] = [
  ["malformed YAML", "tile: { bm: [32\n", /not valid YAML/],
  ["no family", "{}\n", /names no kernel family/],
  ["a misspelt family", TILE.replace("tile", "tiel"), /unrecognized key.*tiel/],
  ["a misspelt knob", TILE.replace("bk:", "bkk:"), /field "tile" unrecognized key.*'bkk'/],
  [
    "a missing knob",
    TILE.replace(" vec: [4]", "").replace(", }", " }"),
    /field "tile.vec" required/,
  ],
  [
    "a knob that is not a list",
    TILE.replace("bm: [32]", "bm: 32"),
    /field "tile.bm" expected array/,
  ],
  ["an empty list", TILE.replace("bm: [32]", "bm: []"), /field "tile.bm" .*at least 1/],
  ["a string size", TILE.replace("bm: [32]", "bm: [big]"), /field "tile.bm.0" expected number/],
  ["a zero size", TILE.replace("bm: [32]", "bm: [32, 0]"), /field "tile.bm.1" .*greater than 0/],
  ["a negative size", TILE.replace("rm: [4]", "rm: [-4]"), /field "tile.rm.0" .*greater than 0/],
  ["a fractional size", TILE.replace("rn: [4]", "rn: [2.5]"), /field "tile.rn.0" expected integer/],
  [
    "subgroup not a boolean",
    "gemv: { nc: [4], cn: [1], lanes: [16], rm: [1], vec: [4], subgroup: [yes] }\n",
    /field "gemv.subgroup.0" expected boolean/,
  ],
];

Deno.test("parseSpace() refuses each bad search-space file naming the file and the field", () => {
  parseSpace(TILE, "good.yaml");
  for (const [what, text, cause] of BAD_SPACES) {
    assert.throws(() => parseSpace(text, "space.yaml"), (e: unknown) => {
      assert.ok(e instanceof InputFileError, `${what}: ${e}`);
      assert.ok(e.message.includes('"space.yaml"'), `${what}: names the file: ${e.message}`);
      assert.match(e.message, cause, what);
      return true;
    }, what);
  }
});

Deno.test("every search space under bench/spaces parses and names configs", async () => {
  const files = filesUnder(`${ROOT}bench/spaces`).filter((f) => f.endsWith(".yaml"));
  assert.ok(files.length >= 10, files.join(", "));
  for (const file of files) {
    const space = parseSpace(await Deno.readTextFile(`${ROOT}bench/spaces/${file}`), file);
    assert.ok(enumerateSpace(space).length > 0, file);
  }
});

function assertInputError(fn: () => unknown, cause: RegExp) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof TuneInputError, String(e));
    assert.match(e.message, cause);
    return true;
  });
}

Deno.test("planSpace() refuses a weight type whose pairs do not fit the problem's rows", () => {
  const oddK = { ...tiny, k: 63 };
  for (const dtype of ["f16", "bf16"] as const) {
    assertInputError(
      () => planSpace(oddK, dtype, [1], DEFAULT_SPACE, CAPS),
      new RegExp(`"tiny" with ${dtype} weights: .*k must be even, got 63`),
    );
  }
  // f32 weights are not paired: an odd k only needs configs that read one element at a time.
  const ones: SearchSpace = {
    tile: { bm: [16], bn: [32], bk: [1], rm: [2], rn: [2], vec: [1] },
    gemv: { nc: [4], cn: [1], lanes: [1], rm: [1], vec: [1], subgroup: [false] },
  };
  planSpace(oddK, "f32", [1, 16], ones, CAPS);
});

Deno.test("planSpace() says why no config of the space is valid for a stage", () => {
  // vec 3 is never valid; with only that, every config of the stage is rejected.
  const vec3: SearchSpace = { tile: { bm: [32], bn: [32], bk: [8], rm: [4], rn: [4], vec: [3] } };
  assertInputError(
    () => planSpace(tiny, "f32", [16], vec3, CAPS),
    /No config of the search space is valid for the fused stage of "tiny" \(k 64, n 80, f32 weights\): all 1 are rejected; most often "every size must be a power of two" \(1\)/,
  );
  // bk larger than k: valid for nothing.
  const deep: SearchSpace = { tile: { bm: [8], bn: [8], bk: [128], rm: [2], rn: [2], vec: [4] } };
  assertInputError(
    () => planSpace(tiny, "f32", [16], deep, CAPS),
    /k 64 is not a multiple of bk 128/,
  );
  // The batched stage (k 16) is checked too.
  const bk32: SearchSpace = { tile: { bm: [16], bn: [32], bk: [32], rm: [4], rn: [4], vec: [4] } };
  assertInputError(
    () => planSpace(tiny, "f32", [16], bk32, CAPS),
    /the batched stage of "tiny" \(k 16/,
  );
  // Workgroups over the device's limits.
  const huge: SearchSpace = { tile: { bm: [256], bn: [256], bk: [8], rm: [1], rn: [1], vec: [4] } };
  assertInputError(() => planSpace(tiny, "f32", [16], huge, CAPS), /threads per workgroup exceed/);
});

Deno.test("planSpace() refuses buckets no valid config of the space serves, and bad buckets", () => {
  const gemvOnly: SearchSpace = { gemv: { ...DEFAULT_SPACE.gemv!, rw: [1] } };
  assertInputError(
    () => planSpace(tiny, "f32", [1, 16, 64, 128], gemvOnly, CAPS),
    /No valid config of the search space suits m = 64, 128 for the fused stage.*gemv serves m <= 32/,
  );
  // The default space's GEMVs with row groups reach 64 rows.
  assertInputError(
    () => planSpace(tiny, "f32", [1, 16, 64, 128], { gemv: DEFAULT_SPACE.gemv }, CAPS),
    /No valid config of the search space suits m = 128 for the fused stage.*64 with row groups/,
  );
  const tileOnly: SearchSpace = { tile: DEFAULT_SPACE.tile };
  assertInputError(() => planSpace(tiny, "f32", [1, 2, 16], tileOnly, CAPS), /suits m = 1, 2 /);
  for (const buckets of [[], [0], [-1], [1.5], [NaN]]) {
    assertInputError(() => planSpace(tiny, "f32", buckets, DEFAULT_SPACE, CAPS), /buckets/);
  }
  assertInputError(() => planSpace(tiny, "f32", [1], {}, CAPS), /search space is empty/);
  const plans = planSpace(tiny, "f16", [1, 16, 1024], DEFAULT_SPACE, CAPS);
  assert.deepEqual(plans.map((p) => p.stage), ["fused", "batched"]);
  for (const p of plans) assert.ok(p.valid.length > 0 && p.invalid.size > 0);
});

Deno.test("planSpace() keeps f16-math configs to precision fast with f16 weights", () => {
  const f16Caps = { ...CAPS, shaderF16: true };
  const half = (plans: ReturnType<typeof planSpace>) =>
    plans[0].valid.filter((c) => c.family === "outer" && c.half).length;
  const exact = planSpace(tiny, "f16", [1024], DEFAULT_SPACE, f16Caps);
  assert.equal(half(exact), 0);
  assert.ok(
    ![...exact[0].invalid.keys()].some((name) => name.endsWith("-h")),
    "not searched, so not logged as invalid either",
  );
  const fast = planSpace(tiny, "f16", [1024], DEFAULT_SPACE, f16Caps, "fast");
  assert.ok(half(fast) > 0, "fast searches half math");
  assert.ok(fast[0].valid.length > exact[0].valid.length);
  assert.equal(half(planSpace(tiny, "f16", [1024], DEFAULT_SPACE, CAPS, "fast")), 0, "no f16");
  assertInputError(
    () => planSpace(tiny, "bf16", [1024], DEFAULT_SPACE, f16Caps, "fast"),
    /precision "fast" is for f16 weights, got bf16/,
  );
});

Deno.test("parseCli() refuses a zero budget, a bad seed and a bad trial timeout; accepts seed 0", () => {
  const cases: [string[], RegExp][] = [
    [["--max-seconds", "0"], /--max-seconds/],
    [["--max-trials", "-3"], /--max-trials/],
    [["--seed", "-1"], /--seed/],
    [["--seed=-1"], /--seed must be an integer from 0 to 4294967295, got "-1"/],
    [["--seed", "4294967296"], /--seed/],
    [["--seed", "1.5"], /--seed/],
    [["--trial-timeout", "0"], /--trial-timeout must be a positive number, got "0"/],
    [["--trial-timeout", "-5"], /--trial-timeout/],
    [["--trial-timeout", "soon"], /--trial-timeout/],
    [["--buckets", ""], /--buckets/],
    [["--buckets", "1;2"], /--buckets/],
    [["--dtype", "fp16"], /--dtype: Expected a weight type \(f32, f16, bf16\), got "fp16"/],
    [["--dtype", ""], /--dtype/],
    [["--dtype", "bf16", "--precision", "fast"], /"fast" is for f16 weights, got bf16/],
    [["--precision", "quick"], /precision "quick" is not one of exact, fast/],
  ];
  for (const [args, cause] of cases) {
    assert.throws(() => parseCli(["--problem", "tiny", ...args]), (e: unknown) => {
      assert.ok(e instanceof UsageError, `${args.join(" ")}: ${e}`);
      assert.match(e.message, cause, args.join(" "));
      return true;
    });
  }
  assert.equal(parseCli(["--problem", "tiny", "--seed", "0"]).seed, 0);
  assert.equal(parseCli(["--problem", "tiny", "--seed", "4294967295"]).seed, 4294967295);
  assert.equal(parseCli(["--problem", "tiny", "--trial-timeout", "0.5"]).trialTimeout, 0.5);
  assert.equal(parseCli(["--problem", "tiny"]).trialTimeout, 60);
});

Deno.test("the CLI checks a --print-wgsl name before it opens the GPU, and exits 2", async () => {
  const noGpu = { DENO_WEBGPU_BACKEND: "metal" }; // no such backend on Linux: no adapter
  const bad = await runCli(["--problem", "tiny", "--print-wgsl", "tile-bm32"], noGpu);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /--print-wgsl: Cannot parse kernel config name "tile-bm32"/);
  const noStage = await runCli(
    [
      "--problem",
      "llama3-8b-qkv",
      "--print-wgsl",
      "tile-bm32-bn32-bk8-rm4-rn4-v4",
      "--stage",
      "batched",
    ],
    noGpu,
  );
  assert.equal(noStage.code, 2, noStage.stderr);
  assert.match(noStage.stderr, /no batched stage/);
  if (Deno.build.os === "linux") {
    const good = await runCli([
      "--problem",
      "tiny",
      "--print-wgsl",
      "tile-bm32-bn32-bk8-rm4-rn4-v4",
    ], noGpu);
    assert.equal(good.code, 1, "a good name gets as far as opening the GPU, which is not there");
    assert.match(good.stderr, /Cannot get a WebGPU adapter/);
  }
  const invalid = await runCli([
    "--problem",
    "tiny",
    "--print-wgsl",
    "tile-bm16-bn16-bk128-rm2-rn2-v4",
  ]);
  assert.equal(invalid.code, 2, invalid.stderr);
  assert.match(invalid.stderr, /is invalid here: k 64 is not a multiple of bk 128/);
});

Deno.test("the CLI makes the folder __GL_SHADER_DISK_CACHE_PATH names before it opens the GPU", async () => {
  await withTempDir("tune_shader_cache_", async (dir) => {
    // The NVIDIA driver does not make it, and compiles without its disk cache (NOTES.md).
    const folder = `${dir}/shaders/nvidia`;
    const run = await runCli(["--problem", "tiny", "--cache-dir", `${dir}/cache`, "--quiet"], {
      DENO_WEBGPU_BACKEND: "metal", // no such backend on Linux: the run stops at the adapter
      __GL_SHADER_DISK_CACHE_PATH: folder,
    });
    assert.equal(run.code, 1, run.stderr);
    assert.ok((await Deno.stat(folder)).isDirectory);
  });
});

Deno.test("the CLI refuses bad problem and space files, spaces with no valid config and odd k with f16, writing nothing", async () => {
  await withTempDir("tune_input_", async (dir) => {
    const inputs = `${dir}/inputs`;
    await Deno.mkdir(inputs);
    const cacheDir = `${dir}/cache`;
    const write = async (name: string, text: string) => {
      await Deno.writeTextFile(`${inputs}/${name}`, text);
      return `${inputs}/${name}`;
    };
    const oddK = await write(
      "odd-k.yaml",
      "name: odd-k\nk: 63\nsegments:\n  - { name: a, n: 8 }\n",
    );
    const cases: [string, string[], number, RegExp][] = [];
    for (const [i, [what, text, cause]] of BAD_PROBLEMS.slice(0, 6).entries()) {
      const file = await write(`problem-${i}.yaml`, text);
      cases.push([
        `problem: ${what}`,
        ["--problem", file],
        1,
        new RegExp(`${file}.*${cause.source}`),
      ]);
    }
    for (const [i, [what, text, cause]] of BAD_SPACES.entries()) {
      const file = await write(`space-${i}.yaml`, text);
      cases.push([
        `space: ${what}`,
        ["--problem", "tiny", "--space", file],
        1,
        new RegExp(`${file}.*${cause.source}`),
      ]);
    }
    const vec3 = await write("vec3.yaml", TILE.replace("vec: [4]", "vec: [3]"));
    const gemvOnly = await write(
      "gemv.yaml",
      "gemv: { nc: [4], cn: [1], lanes: [16], rm: [1, 4], vec: [4], subgroup: [false] }\n",
    );
    cases.push(
      [
        "no space file",
        ["--problem", "tiny", "--space", `${inputs}/none.yaml`],
        1,
        /none\.yaml": no such file/,
      ],
      [
        "a space with no valid config",
        ["--problem", "tiny", "--space", vec3],
        1,
        /No config of the search space is valid for the fused stage .*power of two/,
      ],
      [
        "a space serving no config at m = 64",
        ["--problem", "tiny", "--space", gemvOnly, "--buckets", "1,64"],
        1,
        /suits m = 64/,
      ],
      [
        "odd k with f16",
        ["--problem", oddK, "--dtype", "f32,f16"],
        2,
        /--dtype f16 does not fit problem "odd-k": f16 weights are packed in pairs along k, so k must be even, got 63/,
      ],
      [
        "an unknown problem",
        ["--problem", "tiny-typo"],
        2,
        /"tiny-typo" is not a file or one of: .*tiny/,
      ],
    );
    const runs = [];
    for (const [, args] of cases) {
      runs.push(await runCli([...args, "--cache-dir", cacheDir, "--quiet"]));
    }
    runs.forEach((r, i) => {
      const [what, , code, cause] = cases[i];
      assert.equal(r.code, code, `${what}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, cause, what);
      assert.deepEqual(filesUnder(cacheDir), [], `${what}: nothing written`);
    });
  });
});

Deno.test("the CLI refuses a corrupt, foreign or future cache file before tuning and leaves it untouched", async () => {
  const fingerprint = await childAdapterFingerprint();
  await withTempDir("tune_input_", async (dir) => {
    const file = `${dir}/${cacheFileName(fingerprint)}`;
    const empty = { schemaVersion: CACHE_SCHEMA_VERSION, adapter: fingerprint, entries: {} };
    const cases: [string, string, RegExp][] = [
      ["truncated JSON", JSON.stringify(empty).slice(0, 30), /is not valid JSON/],
      [
        "a future schema version",
        JSON.stringify({ ...empty, schemaVersion: CACHE_SCHEMA_VERSION + 1 }),
        /field "schemaVersion" is 3, this version reads 1 and 2/,
      ],
      [
        "another GPU's file",
        JSON.stringify({ ...empty, adapter: { ...fingerprint, description: "Other GPU" } }),
        /field "adapter" is .*Other GPU.*not this GPU/,
      ],
      ["an unknown field", JSON.stringify({ ...empty, extra: 1 }), /unrecognized key/],
    ];
    for (const [what, text, cause] of cases) {
      await Deno.writeTextFile(file, text);
      const r = await runCli([
        "--problem",
        "tiny",
        "--buckets",
        "1",
        "--cache-dir",
        dir,
        "--quiet",
      ]);
      assert.equal(r.code, 1, `${what}: exit ${r.code}\n${r.stderr}`);
      assert.ok(r.stderr.includes(file), `${what}: names the file: ${r.stderr}`);
      assert.match(r.stderr, cause, what);
      assert.equal(await Deno.readTextFile(file), text, `${what}: left as it was`);
      assert.deepEqual(filesUnder(dir), [cacheFileName(fingerprint)], `${what}: no log, no lock`);
    }
  });
});
