/**
 * Device tiers (issue 8): the tuner keeps each tier's best config, always measures one of each
 * tier, and the dispatcher runs per bucket the fastest tier the device can; old cache files
 * still load.
 */
import assert from "node:assert/strict";
import type { BucketResult } from "../cache/schema.ts";
import { CACHE_SCHEMA_VERSION, parseCacheFile } from "../cache/schema.ts";
import { configName, configProblem, parseConfigName } from "../kernels/config.ts";
import { PORTABLE_CAPS, tierCaps } from "../kernels/device.ts";
import { batchedShape, fusedShape, unfusedShapes } from "../kernels/problem.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { DEFAULT_SPACE, enumerateSpace } from "../kernels/space.ts";
import { tunedBucketConfig } from "../dispatch/bucket_plan.ts";
import { createProjection, requestTunedDevice } from "../mod.ts";
import { batchedInputWidth, fusedWidth } from "../kernels/problem.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";
import { loadProblem } from "../tuner/yaml_file.ts";
import { ROOT } from "./helpers.ts";
import { stageTiers, withTierCandidates } from "../tuner/tiers.ts";

const SPEC: ProjectionSpec = {
  name: "t",
  k: 256,
  segments: [{ name: "a", n: 64 }, { name: "b", n: 64 }],
  batched: { inputs: ["a", "b"], outputs: ["c", "d"], n: 32 },
};
const SHAPES = {
  fused: fusedShape(SPEC),
  batched: batchedShape(SPEC),
  unfused: unfusedShapes(SPEC),
};
/** An H100-like device: large limits and subgroups of 32. */
const BIG = {
  ...PORTABLE_CAPS,
  maxInvocations: 1024,
  maxWorkgroupSizeX: 1024,
  maxWorkgroupSizeY: 1024,
  maxWorkgroupStorage: 49152,
  subgroups: true,
  subgroupMinSize: 32,
};
const SG = "gemv-nc4-cn1-l16-rm1-v4-sg"; // needs subgroups
const WIDE = "gemv-nc32-cn1-l16-rm1-v4"; // 512 threads: over WebGPU's default 256
const PORTABLE = "gemv-nc4-cn1-l16-rm1-v4";

Deno.test("stageTiers() keeps the fastest config of each weaker tier, not repeating one", () => {
  const timed = [
    { config: PORTABLE, medianUs: 7 },
    { config: SG, medianUs: 5 },
    { config: WIDE, medianUs: 6 },
  ];
  assert.deepEqual(stageTiers(timed, SHAPES.fused, "f32", BIG), [
    { tier: "no-subgroups", config: WIDE, medianUs: 6 },
    { tier: "portable", config: PORTABLE, medianUs: 7 },
  ]);
  // The portable config is also the fastest without subgroups: listed once, as no-subgroups.
  const two = [{ config: SG, medianUs: 5 }, { config: PORTABLE, medianUs: 6 }];
  assert.deepEqual(stageTiers(two, SHAPES.fused, "f32", BIG), [
    { tier: "no-subgroups", config: PORTABLE, medianUs: 6 },
  ]);
  // A winner every tier runs needs no tiers; a tier nothing fits is left out.
  assert.deepEqual(stageTiers([{ config: PORTABLE, medianUs: 1 }], SHAPES.fused, "f32", BIG), []);
  assert.deepEqual(stageTiers([{ config: SG, medianUs: 1 }], SHAPES.fused, "f32", BIG), []);
});

Deno.test("withTierCandidates() adds one candidate of each tier the budget's configs miss", () => {
  const valid = enumerateSpace(DEFAULT_SPACE).filter((c) =>
    !configProblem(c, SHAPES.fused, "f32", BIG) && (c.family !== "gemv" || c.rm === 1)
  );
  const subgroupOnly = valid.filter((c) => c.family === "gemv" && c.subgroup);
  const ordered = [...subgroupOnly, ...valid.filter((c) => !subgroupOnly.includes(c))];
  const chosen = withTierCandidates(ordered, 3, SHAPES.fused, "f32", BIG);
  assert.deepEqual(chosen.slice(0, 3), ordered.slice(0, 3), "the budget's candidates come first");
  for (const tier of ["no-subgroups", "portable"] as const) {
    const caps = tierCaps(tier, BIG);
    assert.ok(
      chosen.some((c) => !configProblem(c, SHAPES.fused, "f32", caps)),
      `a ${tier} candidate among ${chosen.map(configName)}`,
    );
  }
  assert.ok(chosen.length <= 5);
  // A budget that already covers every tier gets nothing more.
  const portableFirst = [...valid].sort((a, b) =>
    Number(!configProblem(a, SHAPES.fused, "f32", PORTABLE_CAPS)) -
    Number(!configProblem(b, SHAPES.fused, "f32", PORTABLE_CAPS))
  ).reverse();
  assert.equal(withTierCandidates(portableFirst, 2, SHAPES.fused, "f32", BIG).length, 2);
  assert.deepEqual(withTierCandidates([], 4, SHAPES.fused, "f32", BIG), []);
});

/** A tuned bucket: winners SG (fused) and WIDE (batched), with tiers, and unfused timings. */
function bucket(unfusedUs = 100): BucketResult {
  const stage = (config: string, tiers: string[]) => ({
    config,
    medianUs: 5,
    runnerUp: null,
    runnerUpMarginPct: null,
    trials: 3,
    tiers: tiers.map((c, i) => ({
      tier: (i === 0 && tiers.length > 1 ? "no-subgroups" : "portable") as
        | "no-subgroups"
        | "portable",
      config: c,
      medianUs: 6 + i,
    })),
  });
  return {
    fused: stage(SG, [WIDE, PORTABLE]),
    batched: stage(WIDE, [PORTABLE]),
    fusedTotalUs: 10,
    unfused: {
      medianUs: unfusedUs,
      configs: SHAPES.unfused.map(() => SG),
    },
  };
}

Deno.test("tunedBucketConfig() runs the winners on a device that can", () => {
  const c = tunedBucketConfig(1, bucket(), SHAPES, "f32", BIG, "auto");
  assert.ok(!("leftOut" in c));
  assert.deepEqual([c.tier, c.fused, c.batched, c.reason], ["best", SG, WIDE, null]);
});

Deno.test("tunedBucketConfig() runs each stage's fastest tier the device can, saying why", () => {
  const noSubgroups = tunedBucketConfig(
    1,
    bucket(),
    SHAPES,
    "f32",
    tierCaps("no-subgroups", BIG),
    "auto",
  );
  assert.ok(!("leftOut" in noSubgroups));
  assert.deepEqual([noSubgroups.tier, noSubgroups.fused, noSubgroups.batched], [
    "no-subgroups",
    WIDE,
    WIDE,
  ]);
  assert.match(
    noSubgroups.reason!,
    new RegExp(`tuned fused config ${SG}: the device has no subgroups`),
  );
  const plain = tunedBucketConfig(1, bucket(), SHAPES, "f32", PORTABLE_CAPS, "auto");
  assert.ok(!("leftOut" in plain));
  assert.deepEqual([plain.tier, plain.fused, plain.batched], ["portable", PORTABLE, PORTABLE]);
  assert.match(plain.reason!, /512 threads per workgroup exceed the device's 256/);
  for (const name of [plain.fused, plain.batched!]) {
    assert.equal(
      configProblem(parseConfigName(name), SHAPES.fused, "f32", PORTABLE_CAPS),
      undefined,
    );
  }
});

Deno.test("tunedBucketConfig() leaves a bucket out when no tier of a stage fits, naming each", () => {
  const b = bucket();
  b.batched!.tiers = [];
  const c = tunedBucketConfig(4, b, SHAPES, "f32", PORTABLE_CAPS, "auto");
  assert.ok("leftOut" in c);
  assert.match(c.leftOut, new RegExp(`^m=4 \\(batched stage: ${WIDE}: 512 threads`));
});

Deno.test("tunedBucketConfig() runs unfused where it won and fits, else fused with the reason", () => {
  const faster = tunedBucketConfig(1, bucket(3), SHAPES, "f32", BIG, "auto");
  assert.ok(!("leftOut" in faster));
  assert.deepEqual([faster.mode, faster.tier], ["unfused", "best"]);
  const cannot = tunedBucketConfig(1, bucket(3), SHAPES, "f32", PORTABLE_CAPS, "auto");
  assert.ok(!("leftOut" in cannot));
  assert.equal(cannot.mode, "fused");
  assert.match(cannot.reason!, /the tuned unfused configs exceed this device/);
  const slower = tunedBucketConfig(1, bucket(), SHAPES, "f32", BIG, "auto");
  assert.ok(!("leftOut" in slower));
  assert.equal(slower.mode, "fused");
});

Deno.test("parseCacheFile() reads a version 1 file (no tiers) as the current version", () => {
  const v1 = {
    schemaVersion: 1,
    adapter: { vendor: "v", architecture: "", device: "d", description: "GPU" },
    entries: {},
  };
  const file = parseCacheFile(v1, "old.json");
  assert.equal(file.schemaVersion, CACHE_SCHEMA_VERSION);
  assert.equal(CACHE_SCHEMA_VERSION, 2);
});

Deno.test("on a plain requestDevice() device the bundled tuning runs a weaker tier, correctly", async () => {
  const adapter = await navigator.gpu.requestAdapter();
  const tuned = await requestTunedDevice(adapter!);
  const plain = await adapter!.requestDevice();
  try {
    const spec = await loadProblem(`${ROOT}problems/tiny.yaml`);
    const random = seededRandom(5);
    const weights = {
      fused: randomNonZero(fusedWidth(spec) * spec.k, random),
      batched: randomNonZero(2 * spec.batched!.n * batchedInputWidth(spec), random),
    };
    const x = randomNonZero(4 * spec.k, random);
    const warnings: string[] = [];
    const onWarning = (w: string) => warnings.push(w);
    const outputs = [];
    const configs = [];
    for (const device of [tuned, plain]) {
      const proj = await createProjection(device, spec, { weights, onWarning });
      try {
        outputs.push(await proj.run(x, 4));
        configs.push(proj.config(4));
      } finally {
        proj.destroy();
      }
    }
    assert.equal(configs[0].source, "tuned");
    assert.equal(configs[1].source, "tuned");
    if (tuned.features.has("subgroups")) {
      // The committed llvmpipe cache's m = 4 winners use subgroups.
      assert.deepEqual([configs[0].tier, configs[0].reason], ["best", null]);
      assert.notEqual(configs[1].tier, "best");
      assert.match(configs[1].reason!, /the device has no subgroups/);
      assert.equal(warnings.length, 1);
    }
    for (const [name, values] of Object.entries(outputs[0])) {
      const other = outputs[1][name];
      values.forEach((v, i) => assert.ok(Math.abs(v - other[i]) <= 1e-4 * (1 + Math.abs(v)), name));
    }
  } finally {
    tuned.destroy();
    plain.destroy();
  }
});
