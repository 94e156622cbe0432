/**
 * The dispatcher contract of mod.ts on the real (software) GPU: every Kimi Linear rank size and
 * weight type, outputs against a float64 reference over the rounded weights, and the errors
 * the API promises.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { loadCacheFile } from "../cache/store.ts";
import type { Precision, WeightDtype } from "../kernels/dtype.ts";
import { roundWeights, WEIGHT_DTYPES } from "../kernels/dtype.ts";
import type { ProjectionOptions, ProjectionSpec } from "../mod.ts";
import type { CacheFile } from "../mod.ts";
import { bucketFor, CacheFormatError, createProjection, kimiLinearSpec } from "../mod.ts";
import {
  adapterFingerprint,
  CACHE_SCHEMA_VERSION,
  cacheFileName,
  GENERATOR_VERSION,
  OLDEST_RUNNABLE_GENERATOR,
  problemKey,
  storedProblem,
} from "../cache/schema.ts";
import { configName } from "../kernels/config.ts";
import {
  batchedInputWidth,
  batchedShape,
  fusedShape,
  fusedWidth,
  segmentOffsets,
} from "../kernels/problem.ts";
import { readBuffer } from "../kernels/gpu.ts";
import { projectionReference } from "../kernels/reference.ts";
import { DEFAULT_BUCKETS, defaultConfig, measuredDefault } from "../kernels/defaults.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";
import { moduleGpu, stageOf } from "./helpers.ts";

const gpu = await moduleGpu();
const device = gpu.device;
const ROWS = [1, 3, 64, 100];
const OUTPUTS = ["q", "k", "v", "b", "f_a", "g_a", "f_b", "g_b"];

/** Random non-zero weights of a spec, generated once per spec and shared by the dtypes. */
const weightCache = new Map<string, { fused: Float32Array; batched: Float32Array }>();
function weightsOf(spec: ProjectionSpec) {
  let w = weightCache.get(spec.name);
  if (!w) {
    const random = seededRandom(spec.k + fusedWidth(spec));
    const b = spec.batched!;
    w = {
      fused: randomNonZero(fusedWidth(spec) * spec.k, random),
      batched: randomNonZero(b.inputs.length * b.n * batchedInputWidth(spec), random),
    };
    weightCache.clear(); // one spec's weights at a time: tp 1 is 116 MB
    weightCache.set(spec.name, w);
  }
  return w;
}

/**
 * Checks every output of `run()` on a few rows (first, middle, last) and all columns against a
 * float64 reference; the batched outputs are referenced from the reference f_a and g_a.
 */
function checkOutputs(
  spec: ProjectionSpec,
  dtype: WeightDtype,
  x: Float32Array,
  m: number,
  out: Record<string, Float32Array>,
  rounded: { fused: Float64Array; batched: Float64Array },
  tolerance = 1e-4,
) {
  assert.deepEqual(Object.keys(out).sort(), [...OUTPUTS].sort());
  const widths = new Map<string, number>(spec.segments.map((s) => [s.name, s.n]));
  for (const name of spec.batched!.outputs) widths.set(name, spec.batched!.n);
  for (const name of OUTPUTS) {
    assert.ok(out[name] instanceof Float32Array, `${name} is a Float32Array`);
    assert.equal(out[name].length, m * widths.get(name)!, `${name} has m * n values`);
  }
  const rows = [...new Set([0, Math.floor(m / 2), m - 1])];
  const reference = projectionReference(spec, x, rounded, rows);
  const where = `${spec.name} ${dtype} m=${m}`;
  let worst = 0;
  rows.forEach((r, i) => {
    for (const [name, ref] of reference) {
      for (let c = 0; c < ref.n; c++) {
        const [got, want] = [out[name][r * ref.n + c], ref.values[i * ref.n + c]];
        const err = Math.abs(got - want);
        const bound = tolerance * (ref.magnitudes[i * ref.n + c] + 1e-3);
        worst = Math.max(worst, err / bound);
        if (!(err <= bound)) {
          assert.fail(`${where}: ${name}[${r}, ${c}] = ${got}, expected ${want} (error ${err})`);
        }
      }
    }
  });
  return worst;
}

/** The bundled cache file of this GPU (cache/<fingerprint>.json), if the repository has one. */
const bundled = await loadCacheFile(
  fileURLToPath(
    new URL(`../cache/${cacheFileName(adapterFingerprint(device.adapterInfo))}`, import.meta.url),
  ),
);

/** Where the bundled cache lookup takes a problem's configs from on this GPU. */
function bundledSource(spec: ProjectionSpec, dtype: WeightDtype): "tuned" | "default" {
  const entry = bundled?.entries[problemKey(spec, dtype)];
  const runnable = entry && entry.generatorVersion >= OLDEST_RUNNABLE_GENERATOR &&
    entry.generatorVersion <= GENERATOR_VERSION;
  return runnable ? "tuned" : "default";
}

for (const tp of [1, 2, 4, 8]) {
  for (const dtype of WEIGHT_DTYPES) {
    Deno.test({
      name: `run() of Kimi Linear tp ${tp} with ${dtype} weights matches the float64 reference`,
      fn: async () => {
        const spec = kimiLinearSpec({ tp });
        const weights = weightsOf(spec);
        // Alternate between the untuned defaults and the bundled cache of this GPU, which has
        // entries for some problems (cache/ holds one for llvmpipe) and not for others.
        const cache = (tp + WEIGHT_DTYPES.indexOf(dtype)) % 2 === 0 ? false : undefined;
        const source = cache === false ? "default" : bundledSource(spec, dtype);
        const proj = await createProjection(device, spec, { weights, dtype, cache });
        try {
          assert.equal(proj.dtype, dtype);
          const rounded = {
            fused: roundWeights(weights.fused, dtype),
            batched: roundWeights(weights.batched, dtype),
          };
          const random = seededRandom(tp * 100 + WEIGHT_DTYPES.indexOf(dtype));
          for (const m of ROWS) {
            const x = randomNonZero(m * spec.k, random);
            const out = await proj.run(x, m);
            checkOutputs(spec, dtype, x, m, out, rounded);
            const config = proj.config(m);
            assert.equal(config.source, source, `m=${m}: ${source} configs`);
          }
        } finally {
          proj.destroy();
        }
      },
    });
  }
}

const small = kimiLinearSpec({ tp: 8 });

Deno.test("the device has the adapter's buffer limits, so tp 1's 116 MB of weights fit", () => {
  const adapter = gpu.adapter.limits;
  assert.equal(device.limits.maxStorageBufferBindingSize, adapter.maxStorageBufferBindingSize);
  assert.equal(device.limits.maxBufferSize, adapter.maxBufferSize);
  const tp1 = kimiLinearSpec({ tp: 1 });
  assert.ok(device.limits.maxStorageBufferBindingSize >= fusedWidth(tp1) * tp1.k * 4);
});

Deno.test({
  name: "config(m) reports the bucket, source and kernels that serve m rows",
  fn: async () => {
    const proj = await createProjection(device, small, { weights: weightsOf(small), cache: false });
    try {
      for (const m of [1, 2, 3, 5, 8, 9, 64, 100, 1000]) {
        const c = proj.config(m);
        assert.equal(c.source, "default");
        assert.equal(typeof c.fused, "string");
        assert.equal(typeof c.batched, "string");
        assert.equal(c.bucket, bucketFor(m, DEFAULT_BUCKETS), `bucket rule at m=${m}`);
        assert.ok(c.fused !== "" && c.batched !== "", "both stages have a kernel");
      }
      // A copy: changing it does not change the projection.
      const c = proj.config(3);
      c.bucket = -1;
      assert.notEqual(proj.config(3).bucket, -1);
    } finally {
      proj.destroy();
    }
  },
});

Deno.test({
  name: "encode() records into a caller's encoder, with outputs placed as run() returns them",
  fn: async () => {
    const weights = weightsOf(small);
    const proj = await createProjection(device, small, { weights, dtype: "f16" });
    try {
      const m = 5;
      const x = randomNonZero(m * small.k, seededRandom(5));
      const expected = await proj.run(x, m);
      const xBuffer = device.createBuffer({
        size: x.byteLength,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      });
      device.queue.writeBuffer(xBuffer, 0, x.buffer as ArrayBuffer, x.byteOffset, x.byteLength);
      const encoder = device.createCommandEncoder();
      const encoded = proj.encode(encoder, xBuffer, m);
      assert.deepEqual(Object.keys(encoded.outputs).sort(), [...OUTPUTS].sort());
      const width = fusedWidth(small);
      const offsets = segmentOffsets(small);
      for (const s of small.segments) {
        const v = encoded.outputs[s.name];
        assert.equal(v.buffer, encoded.fused);
        assert.equal(v.offset, offsets.get(s.name));
        assert.equal(v.rowStride, width);
        assert.equal(v.n, s.n);
      }
      const b = small.batched!;
      b.outputs.forEach((name, i) => {
        const v = encoded.outputs[name];
        assert.equal(v.buffer, encoded.batched);
        assert.equal(v.offset, i * b.n);
        assert.equal(v.rowStride, b.outputs.length * b.n);
      });
      const read = (buffer: GPUBuffer, bytes: number) => readBuffer(device, buffer, bytes);
      device.queue.submit([encoder.finish()]);
      const fused = await read(encoded.fused, m * width * 4);
      const batched = await read(encoded.batched!, m * b.outputs.length * b.n * 4);
      for (const [name, view] of Object.entries(encoded.outputs)) {
        const all = view.buffer === encoded.fused ? fused : batched;
        for (let r = 0; r < m; r++) {
          for (let c = 0; c < view.n; c++) {
            const got = all[r * view.rowStride + view.offset + c];
            if (got !== expected[name][r * view.n + c]) {
              assert.fail(
                `${name}[${r}, ${c}]: encode gave ${got}, run gave ${
                  expected[name][r * view.n + c]
                }`,
              );
            }
          }
        }
      }
      assert.throws(() => proj.encode(device.createCommandEncoder(), xBuffer, m + 1), RangeError);
      xBuffer.destroy();
    } finally {
      proj.destroy();
    }
  },
});

Deno.test({
  name: "createProjection() rejects weights of the wrong length or type",
  fn: async () => {
    const w = weightsOf(small);
    const cases: [unknown, unknown, typeof RangeError | typeof TypeError][] = [
      [w.fused.subarray(1), w.batched, RangeError],
      [w.fused, w.batched.subarray(2), RangeError],
      [new Float64Array(w.fused), w.batched, TypeError],
      [Array.from(w.fused.subarray(0, 10)), w.batched, TypeError],
      [undefined, w.batched, TypeError],
      [w.fused, undefined, TypeError],
    ];
    for (const [fused, batched, error] of cases) {
      await assert.rejects(
        createProjection(device, small, {
          weights: { fused, batched } as { fused: Float32Array; batched: Float32Array },
          cache: false,
        }),
        error,
      );
    }
    await assert.rejects(
      createProjection(device, small, { weights: w, dtype: "f64" as WeightDtype }),
      RangeError,
    );
    await assert.rejects(
      createProjection(device, { ...small, k: 0 }, { weights: w, cache: false }),
      RangeError,
    );
  },
});

Deno.test({
  name: "run() rejects a bad m or x with a RangeError or TypeError",
  fn: async () => {
    const proj = await createProjection(device, small, { weights: weightsOf(small), cache: false });
    try {
      const x = new Float32Array(3 * small.k);
      await assert.rejects(proj.run(x, 2), RangeError, "x of the wrong length");
      await assert.rejects(proj.run(x.subarray(1), 3), RangeError, "x of the wrong length");
      await assert.rejects(
        proj.run(Array.from(x) as unknown as Float32Array, 3),
        TypeError,
        "x not a Float32Array",
      );
      for (const m of [0, -1, 1.5, NaN, Infinity]) {
        await assert.rejects(proj.run(new Float32Array(0), m), RangeError, `m = ${m}`);
        assert.throws(() => proj.config(m), RangeError, `config(${m})`);
      }
      const max = proj.maxRows;
      assert.ok(Number.isInteger(max) && max >= 100, `maxRows ${max}`);
      await assert.rejects(proj.run(new Float32Array((max + 1) * small.k), max + 1), RangeError);
      assert.throws(() => proj.config(max + 1), RangeError);
      assert.equal(proj.config(max).bucket > 0, true);
      const tiny = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
      assert.throws(() => proj.encode(device.createCommandEncoder(), tiny, 1), RangeError);
      tiny.destroy();
    } finally {
      proj.destroy();
    }
    await assert.rejects(proj.run(new Float32Array(small.k), 1), /destroyed/);
  },
});

Deno.test({
  name: "NaN and Infinity in a row of x reach that row's outputs and no other row",
  fn: async () => {
    const proj = await createProjection(device, small, { weights: weightsOf(small) });
    try {
      for (const m of [4, 40]) {
        const x = randomNonZero(m * small.k, seededRandom(m));
        x[1 * small.k + 7] = NaN;
        x[2 * small.k + small.k - 1] = Infinity;
        const out = await proj.run(x, m);
        for (const name of OUTPUTS) {
          const n = out[name].length / m;
          for (let r = 0; r < m; r++) {
            const row = out[name].subarray(r * n, (r + 1) * n);
            if (r === 1) {
              assert.ok(row.every(Number.isNaN), `m=${m} ${name} row 1 is NaN`);
            } else if (r === 2) {
              assert.ok(
                row.every((v) => !Number.isFinite(v)),
                `m=${m} ${name} row 2 is not finite`,
              );
            } else {
              assert.ok(row.every(Number.isFinite), `m=${m} ${name} row ${r} is finite`);
            }
          }
        }
      }
    } finally {
      proj.destroy();
    }
  },
});

/**
 * A cache object for this GPU with one tuned bucket (m = 4 unless given) of default configs,
 * or of the configs given.
 */
function cacheFor(
  spec: ProjectionSpec,
  tuned?: {
    bucket: number;
    fused: string;
    batched: string;
    dtype?: WeightDtype;
    precision?: Precision;
  },
): CacheFile {
  const dtype = tuned?.dtype ?? "f32";
  const fused = tuned?.fused ?? configName(defaultConfig(fusedShape(spec), "f32", gpu.caps, 4));
  const batched = tuned?.batched ??
    configName(defaultConfig(batchedShape(spec)!, "f32", gpu.caps, 4, "batched"));
  return {
    schemaVersion: CACHE_SCHEMA_VERSION,
    adapter: adapterFingerprint(device.adapterInfo),
    entries: {
      [problemKey(spec, dtype, tuned?.precision)]: {
        problem: storedProblem(spec, dtype),
        generatorVersion: GENERATOR_VERSION,
        tunedAt: "2025-01-01T00:00:00.000Z",
        buckets: {
          [String(tuned?.bucket ?? 4)]: {
            fused: stageOf(fused),
            batched: stageOf(batched),
            fusedTotalUs: 2,
            unfused: null,
          },
        },
      },
    },
  };
}

Deno.test({
  name: "createProjection() takes tuned configs from a cache object and rejects another GPU's",
  fn: async () => {
    const cache = cacheFor(small);
    const proj = await createProjection(device, small, { weights: weightsOf(small), cache });
    try {
      for (const m of [1, 4, 100]) {
        const c = proj.config(m);
        assert.equal(c.source, "tuned");
        assert.equal(c.bucket, 4, "the only bucket serves every m");
      }
    } finally {
      proj.destroy();
    }
    const other = { ...cache, adapter: { ...cache.adapter, description: "Another GPU" } };
    await assert.rejects(
      createProjection(device, small, { weights: weightsOf(small), cache: other }),
      (e: unknown) => e instanceof CacheFormatError && /adapter/.test(e.message),
    );
    // A different spec of another shape finds no entry and falls back to the defaults.
    const tp4 = kimiLinearSpec({ tp: 4 });
    const w4 = weightsOf(tp4);
    const fallback = await createProjection(device, tp4, { weights: w4, cache });
    try {
      assert.equal(fallback.config(1).source, "default");
    } finally {
      fallback.destroy();
    }
  },
});

Deno.test({
  name:
    "split-K and stream-K configs from a cache run through a scratch buffer, past the bucket too",
  fn: async () => {
    const weights = weightsOf(small);
    const rounded = {
      fused: roundWeights(weights.fused, "f32"),
      batched: roundWeights(weights.batched, "f32"),
    };
    const limit = Math.min(gpu.caps.maxStorageBinding, device.limits.maxBufferSize);
    // Rows past the last bucket run its kernels: their scratch must fit one binding, split-K's
    // 4 slabs of the output, stream-K's every tile and a partial tile per workgroup.
    const cases = [
      [
        "outer-bm32-bn64-bk16-rm4-rn4-s4",
        "outer-bm32-bn32-bk8-rm4-rn4-s2",
        (rows: number) => 4 * rows * fusedWidth(small) * 4,
      ],
      [
        "outer-bm32-bn64-bk16-rm4-rn4-sk7",
        "outer-bm32-bn32-bk8-rm4-rn4-sk3",
        (rows: number) =>
          (Math.ceil(rows / 32) * Math.ceil(fusedWidth(small) / 64) + 7) * 32 * 64 * 4,
      ],
    ] as const;
    for (const [fused, batched, scratch] of cases) {
      const cache = cacheFor(small, { bucket: 64, fused, batched });
      const proj = await createProjection(device, small, { weights, cache });
      try {
        assert.deepEqual([proj.config(3).fused, proj.config(3).batched], [fused, batched]);
        assert.ok(scratch(proj.maxRows) <= limit, `${fused}: scratch fits`);
        for (const m of [3, 64, 100]) {
          const x = randomNonZero(m * small.k, seededRandom(m));
          checkOutputs(small, "f32", x, m, await proj.run(x, m), rounded);
        }
      } finally {
        proj.destroy();
      }
    }
  },
});

Deno.test({
  name: "precision fast runs f16-math kernels from a fast entry; exact never reads them",
  fn: async () => {
    const weights = weightsOf(small);
    const half = {
      bucket: 64,
      fused: "outer-bm32-bn64-bk16-rm4-rn4-s2-h",
      batched: "outer-bm32-bn32-bk8-rm4-rn4-h",
      dtype: "f16" as const,
    };
    const cache = cacheFor(small, { ...half, precision: "fast" });
    for (const [dtype, precision] of [["bf16", "fast"], ["f16", "quick"]] as const) {
      await assert.rejects(
        createProjection(device, small, { weights, dtype, precision: precision as Precision }),
        (e: unknown) => e instanceof RangeError && /precision "(fast|quick)"/.test(e.message),
      );
    }
    const rounded = {
      fused: roundWeights(weights.fused, "f16"),
      batched: roundWeights(weights.batched, "f16"),
    };
    // f16 weights with precision fast, from a cache (or none).
    const fastFrom = (cache: ProjectionOptions["cache"]) =>
      createProjection(device, small, { weights, dtype: "f16", precision: "fast", cache });
    const fast = await fastFrom(cache);
    try {
      assert.equal(fast.config(5).fused, half.fused);
      const x = randomNonZero(37 * small.k, seededRandom(3));
      // f16 math: about 4e-4 of sum |x * w| at most on the H100 (README); 2e-3 here.
      checkOutputs(small, "f16", x, 37, await fast.run(x, 37), rounded, 2e-3);
    } finally {
      fast.destroy();
    }
    // With no tuning, precision fast runs the f16-math defaults where the device has shader-f16.
    const untuned = await fastFrom(false);
    try {
      const pick = measuredDefault(64, "fused", "f16", gpu.caps.shaderF16 ? "fast" : "exact");
      assert.equal(untuned.config(37).fused, pick);
      const x = randomNonZero(37 * small.k, seededRandom(4));
      checkOutputs(small, "f16", x, 37, await untuned.run(x, 37), rounded, 2e-3);
    } finally {
      untuned.destroy();
    }
    const exact = await createProjection(device, small, { weights, dtype: "f16", cache });
    try {
      assert.equal(exact.config(5).source, "default", "an exact projection ignores fast entries");
    } finally {
      exact.destroy();
    }
    await assert.rejects(
      createProjection(device, small, { weights, dtype: "f16", cache: cacheFor(small, half) }),
      (e: unknown) =>
        e instanceof CacheFormatError && /half math is for a "fast" entry/.test(e.message),
    );
    const exactOnly = cacheFor(small, { ...half, fused: "outer-bm32-bn64-bk16-rm4-rn4-s2" });
    const fallback = await fastFrom(exactOnly).catch((e) => e);
    assert.ok(fallback instanceof CacheFormatError, "the exact entry still names a half batched");
    const plain = cacheFor(small, {
      ...half,
      fused: "outer-bm32-bn64-bk16-rm4-rn4-s2",
      batched: "outer-bm32-bn32-bk8-rm4-rn4",
    });
    const noFastEntry = await fastFrom(plain);
    try {
      assert.equal(noFastEntry.config(5).source, "tuned", "fast without its entry runs exact's");
    } finally {
      noFastEntry.destroy();
    }
  },
});

Deno.test({
  name: "the cache entry of a spec matches the same spec with its keys reordered",
  fn: async () => {
    const cache = cacheFor(small);
    const b = small.batched!;
    const reordered: ProjectionSpec = {
      name: small.name,
      k: small.k,
      segments: small.segments,
      batched: { n: b.n, inputs: b.inputs, outputs: b.outputs },
    };
    const proj = await createProjection(device, reordered, { weights: weightsOf(small), cache });
    try {
      assert.equal(proj.config(1).source, "tuned");
    } finally {
      proj.destroy();
    }
  },
});
