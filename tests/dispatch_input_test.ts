/**
 * Hardening of the dispatcher (issue 4) on the software GPU: a cache file (or object) that
 * cannot be used is refused with a CacheFormatError naming the file and the field at fault;
 * weights, rows and inputs it cannot serve are refused with a TypeError or RangeError; NaN and
 * infinity in weights reach exactly the outputs they feed.
 */
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import type { CacheFile, ProjectionSpec } from "../mod.ts";
import { CacheFormatError, createProjection } from "../mod.ts";
import {
  adapterFingerprint,
  CACHE_SCHEMA_VERSION,
  GENERATOR_VERSION,
  OLDEST_RUNNABLE_GENERATOR,
  problemKey,
  storedProblem,
} from "../cache/schema.ts";
import { configName } from "../kernels/config.ts";
import { batchedInputWidth, batchedShape, fusedShape, fusedWidth } from "../kernels/problem.ts";
import { defaultConfig } from "../kernels/defaults.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";
import { loadProblem } from "../tuner/yaml_file.ts";
import { moduleGpu, quietConsole, ROOT, stageOf, withTempDir } from "./helpers.ts";

const gpu = await moduleGpu();
const device = gpu.device;
const spec = await loadProblem(`${ROOT}problems/tiny.yaml`);
const KEY = problemKey(spec, "f32");

function weightsOf(s: ProjectionSpec, seed = 1) {
  const random = seededRandom(seed);
  const b = s.batched;
  return {
    fused: randomNonZero(fusedWidth(s) * s.k, random),
    batched: b ? randomNonZero(b.inputs.length * b.n * batchedInputWidth(s), random) : undefined,
  };
}
const weights = weightsOf(spec) as { fused: Float32Array; batched: Float32Array };

/** A valid cache for this GPU: one tuned bucket (m = 4) of default configs, unfused too. */
function validCache(): CacheFile {
  const fused = configName(defaultConfig(fusedShape(spec), "f32", gpu.caps, 4));
  const batched = configName(defaultConfig(batchedShape(spec)!, "f32", gpu.caps, 4, "batched"));
  const unfusedCount = spec.segments.length + spec.batched!.inputs.length;
  return {
    schemaVersion: CACHE_SCHEMA_VERSION,
    adapter: adapterFingerprint(device.adapterInfo),
    entries: {
      [KEY]: {
        problem: storedProblem(spec, "f32"),
        generatorVersion: GENERATOR_VERSION,
        tunedAt: "2025-01-01T00:00:00.000Z",
        buckets: {
          "4": {
            fused: stageOf(fused),
            batched: stageOf(batched),
            fusedTotalUs: 2,
            unfused: {
              medianUs: 3,
              configs: Array.from(
                { length: unfusedCount },
                (_, i) => i < spec.segments.length ? fused : batched,
              ),
            },
          },
        },
      },
    },
  };
}

type Json = Record<string, unknown> & {
  entries: Record<string, { problem: { k: number }; buckets: Record<string, Bucket> }>;
};
type Bucket = Record<string, unknown> & {
  fused: { config: string; medianUs: number };
  unfused: { configs: string[] } | null;
};

const bucketField = `entries.${KEY}.buckets.4`;
/** Broken cache files: what is wrong, the text or how to break a valid file, the field. */
const BROKEN: [string, string | ((f: Json) => void), string | undefined][] = [
  ["truncated JSON", JSON.stringify(validCache(), null, 2).slice(0, 300), ""],
  ["an empty file", "", ""],
  ["JSON that is not an object", "[1, 2, 3]", undefined],
  ["a future schema version", (f) => (f.schemaVersion = CACHE_SCHEMA_VERSION + 1), "schemaVersion"],
  ["no schema version", (f) => delete f.schemaVersion, "schemaVersion"],
  [
    "another GPU's file",
    (f) => ((f.adapter as { description: string }).description = "Other GPU"),
    "adapter",
  ],
  [
    "a config name that does not parse",
    (f) => (f.entries[KEY].buckets["4"].fused.config = "tile-bm32"),
    `${bucketField}.fused.config`,
  ],
  [
    "a config the validator rejects (tile with vec 8)",
    (f) => (f.entries[KEY].buckets["4"].fused.config = "tile-bm32-bn32-bk8-rm4-rn4-v8"),
    `${bucketField}.fused.config`,
  ],
  [
    "an unfused config the validator rejects",
    (f) => (f.entries[KEY].buckets["4"].unfused!.configs[1] = "gemv-nc4-cn1-l16-rm1-v3"),
    `${bucketField}.unfused.configs.1`,
  ],
  [
    "unfused configs of the wrong count",
    (f) => f.entries[KEY].buckets["4"].unfused!.configs.pop(),
    `${bucketField}.unfused.configs`,
  ],
  [
    "a bucket without its batched stage",
    (f) => (f.entries[KEY].buckets["4"].batched = null),
    `${bucketField}.batched`,
  ],
  [
    "an entry whose shape is not the problem's",
    (f) => (f.entries[KEY].problem.k = 128),
    `entries.${KEY}.problem`,
  ],
  [
    "a negative time",
    (f) => (f.entries[KEY].buckets["4"].fused.medianUs = -1),
    `${bucketField}.fused.medianUs`,
  ],
  [
    "a string where a number goes",
    (f) => ((f.entries[KEY].buckets["4"] as Record<string, unknown>).fusedTotalUs = "2"),
    `${bucketField}.fusedTotalUs`,
  ],
  [
    "an unknown field",
    (f) => ((f.entries[KEY].buckets["4"] as Record<string, unknown>).fusedTotalMs = 2),
    `${bucketField}`,
  ],
];

function brokenText(make: string | ((f: Json) => void)): string {
  if (typeof make === "string") return make;
  const file = validCache() as unknown as Json;
  make(file);
  return JSON.stringify(file, null, 2);
}

function assertCacheError(e: unknown, file: string, field: string | undefined, what: string) {
  assert.ok(e instanceof CacheFormatError, `${what}: expected a CacheFormatError, got ${e}`);
  assert.equal(e.file, file, what);
  assert.ok(e.message.includes(file), `${what}: names the file: ${e.message}`);
  if (field !== undefined) {
    assert.equal(e.field, field, `${what}: ${e.message}`);
    if (field) {
      assert.ok(e.message.includes(`"${field}"`), `${what}: names the field: ${e.message}`);
    }
  }
  return true;
}

Deno.test({
  name: "a valid cache file of this GPU drives the projection (the baseline of the cases below)",
  fn: async () => {
    await withTempDir("dispatch_input_", async (dir) => {
      const path = `${dir}/gpu.json`;
      await Deno.writeTextFile(path, JSON.stringify(validCache()));
      for (const mode of ["auto", "fused", "unfused"] as const) {
        const proj = await createProjection(device, spec, {
          weights,
          cache: pathToFileURL(path),
          mode,
        });
        try {
          assert.equal(proj.config(4).source, "tuned");
          // The fused pass (2 us) beat the unfused GEMMs (3 us): auto runs it fused.
          assert.equal(proj.config(4).mode, mode === "unfused" ? "unfused" : "fused");
        } finally {
          proj.destroy();
        }
      }
    });
  },
});

Deno.test({
  name:
    "createProjection() refuses an unusable cache file with a CacheFormatError naming the file and field",
  fn: async () => {
    await withTempDir("dispatch_input_", async (dir) => {
      for (const [i, [what, make, field]] of BROKEN.entries()) {
        const path = `${dir}/gpu-${i}.json`;
        const text = brokenText(make);
        await Deno.writeTextFile(path, text);
        const url = pathToFileURL(path);
        await assert.rejects(
          createProjection(device, spec, { weights, cache: url }),
          (e: unknown) => assertCacheError(e, url.href, field, what),
        );
        assert.equal(await Deno.readTextFile(path), text, `${what}: the file is left as it was`);
      }
    });
  },
});

Deno.test({
  name: "a tuned bucket whose kernel exceeds this device's limits is left out, with a warning",
  fn: async () => {
    const file = validCache();
    // Bucket 8 stays usable; bucket 4 gets 16384 threads per workgroup: valid for the problem,
    // over every device's limit.
    file.entries[KEY].buckets["8"] = structuredClone(file.entries[KEY].buckets["4"]);
    file.entries[KEY].buckets["4"].fused.config = "tile-bm256-bn256-bk8-rm2-rn2-v4";
    const alone = structuredClone(file);
    delete alone.entries[KEY].buckets["8"];
    const warnings: string[] = [];
    const onWarning = (message: string) => warnings.push(message);
    const printed = quietConsole();
    try {
      const proj = await createProjection(device, spec, { weights, cache: file, onWarning });
      try {
        // Rows of the left-out bucket use the next tuned one.
        assert.deepEqual([proj.config(4).source, proj.config(4).bucket], ["tuned", 8]);
      } finally {
        proj.destroy();
      }
      // With no tuned bucket left, the defaults, and the config says why.
      const lone = await createProjection(device, spec, { weights, cache: alone, onWarning });
      try {
        assert.equal(lone.config(4).source, "default");
        assert.match(lone.config(4).reason ?? "", /every tuned bucket exceeds this device/);
        assert.notEqual(lone.config(4).fused, "tile-bm256-bn256-bk8-rm2-rn2-v4");
      } finally {
        lone.destroy();
      }
    } finally {
      printed.restore();
    }
    assert.deepEqual(printed.calls, [], "the library prints nothing");
    assert.equal(warnings.length, 2);
    assert.match(warnings[0], /m=4 \(fused stage: tile-bm256-bn256-bk8-rm2-rn2-v4: 16384 threads/);
    assert.match(warnings[0], /Those buckets are left out/);
  },
});

Deno.test({
  name: "an entry of an older kernel generator runs with a warning; a newer one is not used",
  fn: async () => {
    const sourceWith = async (generatorVersion: number) => {
      const file = validCache();
      file.entries[KEY].generatorVersion = generatorVersion;
      const warnings: string[] = [];
      const onWarning = (message: string) => warnings.push(message);
      const proj = await createProjection(device, spec, { weights, cache: file, onWarning });
      try {
        return { source: proj.config(4).source, warnings };
      } finally {
        proj.destroy();
      }
    };
    const printed = quietConsole();
    try {
      assert.deepEqual(await sourceWith(GENERATOR_VERSION), { source: "tuned", warnings: [] });
      const older = await sourceWith(OLDEST_RUNNABLE_GENERATOR);
      if (OLDEST_RUNNABLE_GENERATOR < GENERATOR_VERSION) {
        assert.equal(older.source, "tuned");
        assert.equal(older.warnings.length, 1);
        assert.match(older.warnings[0], /made with kernel generator \d+, not this library's/);
      }
      const tooOld = await sourceWith(OLDEST_RUNNABLE_GENERATOR - 1);
      assert.deepEqual(tooOld, { source: "default", warnings: [] });
      const newer = await sourceWith(GENERATOR_VERSION + 1);
      assert.deepEqual(newer, { source: "default", warnings: [] });
    } finally {
      printed.restore();
    }
    assert.deepEqual(printed.calls, [], "the library prints nothing");
  },
});

Deno.test({
  name: "createProjection() checks a cache object like a file, naming it (cache object)",
  fn: async () => {
    for (const [what, make, field] of BROKEN) {
      if (typeof make === "string") continue;
      const file = validCache() as unknown as Json;
      make(file);
      await assert.rejects(
        createProjection(device, spec, { weights, cache: file as unknown as CacheFile }),
        (e: unknown) => assertCacheError(e, "(cache object)", field, what),
      );
    }
  },
});

Deno.test({
  name: "createProjection() refuses weights over the device's storage buffer limit",
  fn: async () => {
    const limit = Math.min(gpu.caps.maxStorageBinding, device.limits.maxBufferSize);
    const k = 4096;
    const n = Math.floor(limit / (4 * k)) + 1; // one row too many as f32
    const big: ProjectionSpec = { name: "big", k, segments: [{ name: "a", n }] };
    await assert.rejects(
      createProjection(device, big, { weights: { fused: new Float32Array(n * k) }, cache: false }),
      (e: unknown) => {
        assert.ok(e instanceof RangeError, String(e));
        assert.match(
          e.message,
          /weights\.fused takes \d+ bytes as f32, over .* limit of \d+ bytes/,
        );
        return true;
      },
    );
  },
});

Deno.test({
  name: "createProjection() refuses 16-bit weights whose rows have an odd length",
  fn: async () => {
    const oddK: ProjectionSpec = { name: "odd-k", k: 63, segments: [{ name: "a", n: 8 }] };
    await assert.rejects(
      createProjection(device, oddK, {
        weights: { fused: new Float32Array(8 * 63) },
        dtype: "f16",
        cache: false,
      }),
      { name: "RangeError", message: /k must be even, got 63/ },
    );
    const oddKb: ProjectionSpec = {
      name: "odd-kb",
      k: 64,
      segments: [{ name: "a", n: 8 }, { name: "f", n: 7 }, { name: "g", n: 7 }],
      batched: { inputs: ["f", "g"], outputs: ["f_b", "g_b"], n: 4 },
    };
    const w = weightsOf(oddKb) as { fused: Float32Array; batched: Float32Array };
    await assert.rejects(
      createProjection(device, oddKb, { weights: w, dtype: "bf16", cache: false }),
      { name: "RangeError", message: /batched stage's input width \(segment "f"\) must be even/ },
    );
    // f32 has no pairs: the same problems are fine.
    const proj = await createProjection(device, oddKb, { weights: w, cache: false });
    proj.destroy();
  },
});

Deno.test({
  name: "createProjection() and run() refuse inputs of the wrong type with a TypeError",
  fn: async () => {
    for (
      const bad of [
        undefined,
        null,
        {},
        { fused: new Uint8Array(10) },
        { fused: "weights" },
        { fused: weights.fused, batched: new Int32Array(weights.batched.length) },
      ]
    ) {
      await assert.rejects(
        createProjection(device, spec, {
          weights: bad as unknown as { fused: Float32Array },
          cache: false,
        }),
        TypeError,
        JSON.stringify(bad),
      );
    }
    const noBatched: ProjectionSpec = { name: "x", k: 64, segments: [{ name: "a", n: 8 }] };
    await assert.rejects(
      createProjection(device, noBatched, {
        weights: { fused: new Float32Array(8 * 64), batched: new Float32Array(4) },
        cache: false,
      }),
      { name: "TypeError", message: /has no batched stage/ },
    );
    const proj = await createProjection(device, spec, { weights, cache: false });
    try {
      for (const x of [null, undefined, new Float64Array(spec.k), [1, 2], "x"]) {
        await assert.rejects(proj.run(x as unknown as Float32Array, 1), TypeError, String(x));
      }
      for (const m of ["1", undefined, null, 1n, 2 ** 53, -0.5, -Infinity]) {
        await assert.rejects(
          proj.run(new Float32Array(spec.k), m as unknown as number),
          RangeError,
          `m = ${String(m)}`,
        );
      }
      // A row too many or too few for the rows asked.
      await assert.rejects(proj.run(new Float32Array(2 * spec.k + 1), 2), /m \* k = 2 \* 64/);
    } finally {
      proj.destroy();
    }
  },
});

Deno.test({
  name: "NaN and infinity in weights reach the columns they feed and no other (f32 and f16)",
  fn: async () => {
    const width = fusedWidth(spec);
    const fOffset = spec.segments.findIndex((s) => s.name === "f");
    const fColumn = spec.segments.slice(0, fOffset).reduce((sum, s) => sum + s.n, 0) + 3;
    for (const dtype of ["f32", "f16"] as const) {
      const w = { fused: weights.fused.slice(), batched: weights.batched.slice() };
      w.fused[5 * spec.k + 10] = NaN; // column 5 of segment a
      w.fused[7 * spec.k + 0] = Infinity; // column 7 of segment a
      w.fused[fColumn * spec.k + 2] = NaN; // column 3 of f: feeds every column of f_b
      if (dtype === "f16") w.fused[9 * spec.k + 1] = 1e6; // past f16's range: infinity
      const proj = await createProjection(device, spec, { weights: w, dtype, cache: false });
      try {
        const m = 3;
        const out = await proj.run(randomNonZero(m * spec.k, seededRandom(3)), m);
        for (let r = 0; r < m; r++) {
          const a = out.a.subarray(r * 40, (r + 1) * 40);
          assert.ok(Number.isNaN(a[5]), `${dtype} row ${r}: a[5] is NaN`);
          assert.ok(!Number.isFinite(a[7]), `${dtype} row ${r}: a[7] is not finite`);
          if (dtype === "f16") assert.ok(!Number.isFinite(a[9]), `f16 row ${r}: a[9] overflows`);
          const finite = [...a].filter((_, c) =>
            c !== 5 && c !== 7 && (dtype !== "f16" || c !== 9)
          );
          assert.ok(finite.every(Number.isFinite), `${dtype} row ${r}: the other columns of a`);
          assert.ok(out.f.subarray(r * 16, (r + 1) * 16).some(Number.isNaN));
          assert.ok(out.g.subarray(r * 16, (r + 1) * 16).every(Number.isFinite));
          assert.ok(out.f_b.subarray(r * 24, (r + 1) * 24).every(Number.isNaN), "f_b reads f");
          assert.ok(out.g_b.subarray(r * 24, (r + 1) * 24).every(Number.isFinite), "g_b does not");
          assert.ok(out.b.subarray(r * 8, (r + 1) * 8).every(Number.isFinite));
        }
        assert.equal(width, 80);
      } finally {
        proj.destroy();
      }
    }
  },
});

Deno.test({
  name: "createProjection() refuses a cache URL it was given that is missing or a folder",
  fn: async () => {
    await withTempDir("dispatch_named_", async (dir) => {
      const missing = pathToFileURL(`${dir}/none.json`);
      const folder = pathToFileURL(`${dir}/`);
      const folderNoSlash = pathToFileURL(dir);
      for (
        const [url, why] of [
          [missing, /there is no such file/],
          [folder, /names a folder/],
          [folderNoSlash, /it is a folder/],
        ] as const
      ) {
        await assert.rejects(
          createProjection(device, spec, { weights, cache: url }),
          (e: unknown) => {
            assert.ok(e instanceof Error && !(e instanceof CacheFormatError), String(e));
            assert.ok(e.message.includes(`Cannot load cache "${url.href}"`), e.message);
            assert.match(e.message, why);
            return true;
          },
        );
      }
    });
  },
});
