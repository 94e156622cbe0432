import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import type { AdapterFingerprint, CacheEntry } from "../../cache/schema.ts";
import {
  adapterFingerprint,
  CACHE_SCHEMA_VERSION,
  cacheFileName,
  CacheFormatError,
  GENERATOR_VERSION,
  parseCacheFile,
  parseCacheText,
  problemKey,
  storedProblem,
} from "../../cache/schema.ts";
import { loadCacheFile, saveCacheEntry, STALE_LOCK_MS, withFileLock } from "../../cache/store.ts";
import type { ProjectionSpec } from "../../kernels/problem.ts";
import { kimiLinearSpec } from "../../kernels/problem.ts";
import { configName } from "../../kernels/config.ts";
import { mergeCacheFiles } from "../../bench/merge_caches.ts";
import { gemvConfig, withTempDir } from "../helpers.ts";

const ADAPTER: AdapterFingerprint = {
  vendor: "65541",
  architecture: "",
  device: "0",
  description: "llvmpipe (LLVM 15.0.6, 256 bits)",
};
const OTHER: AdapterFingerprint = { ...ADAPTER, description: "Some Other GPU" };

const TINY: ProjectionSpec = {
  name: "tiny",
  k: 64,
  segments: [{ name: "a", n: 40 }, { name: "b", n: 8 }, { name: "f", n: 16 }, { name: "g", n: 16 }],
  batched: { inputs: ["f", "g"], outputs: ["f_b", "g_b"], n: 24 },
};

function entry(fusedConfig = "tile-bm32-bn32-bk8-rm4-rn4-v4"): CacheEntry {
  return {
    problem: storedProblem(TINY, "f32"),
    generatorVersion: GENERATOR_VERSION,
    tunedAt: "2025-01-01T00:00:00.000Z",
    buckets: {
      "1": {
        fused: {
          config: configName(gemvConfig({ nc: 4, lanes: 16 })),
          medianUs: 10,
          runnerUp: configName(gemvConfig({ nc: 2, lanes: 16 })),
          runnerUpMarginPct: 5,
          trials: 3,
        },
        batched: {
          config: configName(gemvConfig({ nc: 4, lanes: 8 })),
          medianUs: 5,
          runnerUp: null,
          runnerUpMarginPct: null,
          trials: 1,
        },
        fusedTotalUs: 15,
        unfused: null,
      },
      "16": {
        fused: {
          config: fusedConfig,
          medianUs: 20,
          runnerUp: null,
          runnerUpMarginPct: null,
          trials: 1,
        },
        batched: {
          config: "tile-bm16-bn32-bk8-rm2-rn2-v4",
          medianUs: 8,
          runnerUp: null,
          runnerUpMarginPct: null,
          trials: 1,
        },
        fusedTotalUs: 28,
        unfused: { medianUs: 50, configs: ["tile-bm16-bn32-bk8-rm2-rn2-v4"] },
      },
    },
  };
}

function validFile(): Record<string, unknown> {
  return {
    schemaVersion: CACHE_SCHEMA_VERSION,
    adapter: { ...ADAPTER },
    entries: { [problemKey(TINY, "f32")]: entry() },
  };
}

/** Asserts a CacheFormatError whose message names the file and (when given) the field. */
function assertFormatError(fn: () => unknown, file: string, field?: string | RegExp) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CacheFormatError, `expected CacheFormatError, got ${e}`);
    assert.ok(e instanceof SyntaxError, "CacheFormatError is a SyntaxError");
    assert.ok(e.message.includes(file), `message names the file: ${e.message}`);
    assert.equal(e.file, file);
    if (typeof field === "string") {
      assert.equal(e.field, field);
      assert.ok(e.message.includes(`"${field}"`), `message names the field: ${e.message}`);
    } else if (field) assert.match(e.field, field);
    return true;
  });
}

/** `deno run` arguments for a cache-writing child script, with the repository's config. */
function writerArgs(script: string, ...args: string[]): string[] {
  const config = fileURLToPath(new URL("../../deno.json", import.meta.url));
  return ["run", "--allow-read", "--allow-write", "--config", config, "--no-lock", script, ...args];
}

Deno.test("cacheFileName() slugs the adapter fingerprint", () => {
  assert.equal(
    cacheFileName({
      vendor: "4318",
      architecture: "",
      device: "8960",
      description: "NVIDIA H100 80GB HBM3",
    }),
    "4318-8960-nvidia-h100-80gb-hbm3.json",
  );
  assert.equal(cacheFileName(ADAPTER), "65541-0-llvmpipe-llvm-15-0-6-256-bits.json");
  assert.equal(
    cacheFileName({ vendor: "", architecture: "", device: "", description: "" }),
    "unknown-gpu.json",
  );
  assert.equal(
    cacheFileName({ vendor: "Apple", architecture: "metal-3", device: "", description: "" }),
    "apple-metal-3.json",
  );
});

Deno.test("adapterFingerprint() reads the four identifying fields as strings", () => {
  const info = { vendor: "v", architecture: "a", device: "d", description: "x", extra: 1 };
  assert.deepEqual(adapterFingerprint(info as unknown as GPUAdapterInfo), {
    vendor: "v",
    architecture: "a",
    device: "d",
    description: "x",
  });
});

Deno.test("problemKey() names sizes, segment names, the batched stage and the dtype", () => {
  assert.equal(
    problemKey({ name: "x", k: 64, segments: [{ name: "a", n: 8 }] }, "f16"),
    "k64 a=8 f16",
  );
  assert.equal(
    problemKey(TINY, "bf16"),
    "k64 a=40 b=8 f=16 g=16 bmm(f,g->f_b,g_b)=24 bf16",
  );
  assert.equal(
    problemKey(kimiLinearSpec({ tp: 8 }), "f32"),
    "k2304 q=512 k=512 v=512 b=4 f_a=128 g_a=128 bmm(f_a,g_a->f_b,g_b)=512 f32",
  );
  // The spec's name is not part of the key: two specs of one shape share their tuning.
  assert.equal(problemKey({ ...TINY, name: "other" }, "f32"), problemKey(TINY, "f32"));
});

Deno.test("saveCacheEntry() then loadCacheFile() round-trips an entry", async () => {
  await withTempDir("cache_test_", async (dir) => {
    const path = `${dir}/${cacheFileName(ADAPTER)}`;
    assert.equal(await loadCacheFile(path), undefined, "no file yet");
    const key = problemKey(TINY, "f32");
    await saveCacheEntry(path, ADAPTER, key, entry());
    const loaded = await loadCacheFile(path);
    assert.deepEqual(loaded, {
      schemaVersion: CACHE_SCHEMA_VERSION,
      adapter: ADAPTER,
      entries: { [key]: entry() },
    });
    // A second entry keeps the first; entries are sorted by key.
    const key16 = problemKey(TINY, "f16");
    const e16 = { ...entry(), problem: storedProblem(TINY, "f16") };
    await saveCacheEntry(path, ADAPTER, key16, e16);
    const both = await loadCacheFile(path);
    assert.deepEqual(Object.keys(both!.entries), [key16, key].sort((a, b) => a.localeCompare(b)));
    assert.deepEqual(both!.entries[key], entry());
    // Overwriting one entry replaces it.
    const newer = { ...entry(), tunedAt: "2026-01-01T00:00:00.000Z" };
    await saveCacheEntry(path, ADAPTER, key, newer);
    assert.equal((await loadCacheFile(path))!.entries[key].tunedAt, newer.tunedAt);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), [cacheFileName(ADAPTER)]);
  });
});

Deno.test("parseCacheText() rejects truncated JSON with a CacheFormatError naming the file", () => {
  const text = JSON.stringify(validFile(), null, 2);
  assertFormatError(() => parseCacheText(text.slice(0, text.length / 2), "gpu.json"), "gpu.json");
  assertFormatError(() => parseCacheText("", "empty.json"), "empty.json");
});

Deno.test("parseCacheFile() refuses another schemaVersion, naming the field", () => {
  const file = { ...validFile(), schemaVersion: CACHE_SCHEMA_VERSION + 1 };
  assertFormatError(() => parseCacheFile(file, "gpu.json"), "gpu.json", "schemaVersion");
  const missing = validFile();
  delete missing.schemaVersion;
  assertFormatError(() => parseCacheFile(missing, "gpu.json"), "gpu.json", "schemaVersion");
});

Deno.test("parseCacheFile() rejects a bucket whose fused.config is not a config name", () => {
  const key = problemKey(TINY, "f32");
  const file = { ...validFile(), entries: { [key]: entry("bogus") } };
  assertFormatError(
    () => parseCacheFile(file, "gpu.json"),
    "gpu.json",
    `entries.${key}.buckets.16.fused.config`,
  );
  // A name that parses but is not canonical is refused too.
  const padded = { ...validFile(), entries: { [key]: entry("tile-bm032-bn32-bk8-rm4-rn4-v4") } };
  assertFormatError(() => parseCacheFile(padded, "gpu.json"), "gpu.json", /fused\.config$/);
});

Deno.test("parseCacheFile() rejects missing fields and unknown fields, naming them", () => {
  const key = problemKey(TINY, "f32");
  const noTunedAt = entry() as Partial<CacheEntry>;
  delete noTunedAt.tunedAt;
  assertFormatError(
    () => parseCacheFile({ ...validFile(), entries: { [key]: noTunedAt } }, "a.json"),
    "a.json",
    `entries.${key}.tunedAt`,
  );
  const noMedian = entry();
  delete (noMedian.buckets["1"].fused as Partial<typeof noMedian.buckets["1"]["fused"]>).medianUs;
  assertFormatError(
    () => parseCacheFile({ ...validFile(), entries: { [key]: noMedian } }, "a.json"),
    "a.json",
    `entries.${key}.buckets.1.fused.medianUs`,
  );
  const noAdapter = validFile();
  delete noAdapter.adapter;
  assertFormatError(() => parseCacheFile(noAdapter, "a.json"), "a.json", "adapter");
  assertFormatError(
    () => parseCacheFile({ ...validFile(), extra: true }, "a.json"),
    "a.json",
  );
  const badBucket = entry();
  badBucket.buckets["0"] = badBucket.buckets["1"];
  assertFormatError(
    () => parseCacheFile({ ...validFile(), entries: { [key]: badBucket } }, "a.json"),
    "a.json",
    /buckets/,
  );
});

Deno.test("loadCacheFile() of a corrupt file throws a CacheFormatError naming the path", async () => {
  await withTempDir("cache_test_", async (dir) => {
    const path = `${dir}/gpu.json`;
    await Deno.writeTextFile(path, JSON.stringify(validFile()).slice(0, 100));
    await assert.rejects(loadCacheFile(path), (e: unknown) => {
      assert.ok(e instanceof CacheFormatError);
      assert.ok(e.message.includes(path));
      return true;
    });
    await Deno.writeTextFile(
      path,
      JSON.stringify({ ...validFile(), schemaVersion: CACHE_SCHEMA_VERSION + 1 }),
    );
    await assert.rejects(loadCacheFile(path), (e: unknown) => {
      assert.ok(e instanceof CacheFormatError);
      assert.ok(e.message.includes(path) && e.message.includes("schemaVersion"), e.message);
      return true;
    });
  });
});

Deno.test("saveCacheEntry() refuses a file of another adapter and leaves it untouched", async () => {
  await withTempDir("cache_test_", async (dir) => {
    const path = `${dir}/gpu.json`;
    await saveCacheEntry(path, OTHER, problemKey(TINY, "f32"), entry());
    const before = await Deno.readFile(path);
    await assert.rejects(
      saveCacheEntry(path, ADAPTER, problemKey(TINY, "f16"), entry()),
      (e: unknown) => e instanceof CacheFormatError && e.field === "adapter",
    );
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["gpu.json"], "no leftovers");
  });
});

Deno.test("saveCacheEntry() refuses to overwrite a corrupt file and leaves it untouched", async () => {
  await withTempDir("cache_test_", async (dir) => {
    const path = `${dir}/gpu.json`;
    await Deno.writeTextFile(path, "{ not json");
    await assert.rejects(saveCacheEntry(path, ADAPTER, "k", entry()), CacheFormatError);
    assert.equal(await Deno.readTextFile(path), "{ not json");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["gpu.json"], "no leftovers");
  });
});

Deno.test("two concurrent saveCacheEntry() calls with different keys both survive", async () => {
  await withTempDir("cache_test_", async (dir) => {
    const path = `${dir}/gpu.json`;
    const keys = Array.from({ length: 8 }, (_, i) => `key ${i}`);
    await Promise.all(keys.map((key) => saveCacheEntry(path, ADAPTER, key, entry())));
    const file = await loadCacheFile(path);
    assert.deepEqual(Object.keys(file!.entries).sort(), keys);
    JSON.parse(await Deno.readTextFile(path));
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["gpu.json"], "no leftovers");
  });
});

Deno.test("two processes saving 20 entries each at once keep all 40 in valid JSON", async () => {
  await withTempDir("cache_test_", async (dir) => {
    const path = `${dir}/gpu.json`;
    const script = `${dir}/writer.ts`;
    const store = new URL("../../cache/store.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { saveCacheEntry } from ${JSON.stringify(store)};
const [path, who] = Deno.args;
const adapter = ${JSON.stringify(ADAPTER)};
const entry = ${JSON.stringify(entry())};
for (let i = 0; i < 20; i++) await saveCacheEntry(path, adapter, who + " " + i, entry);
`,
    );
    const run = (who: string) =>
      new Deno.Command(Deno.execPath(), {
        args: writerArgs(script, path, who),
        stdout: "piped",
        stderr: "piped",
      }).output();
    const results = await Promise.all([run("A"), run("B")]);
    for (const r of results) {
      assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    }
    const text = await Deno.readTextFile(path);
    JSON.parse(text);
    const file = await loadCacheFile(path);
    const keys = Object.keys(file!.entries);
    assert.equal(keys.length, 40, `kept ${keys.length} entries`);
    for (let i = 0; i < 20; i++) {
      assert.ok(keys.includes(`A ${i}`) && keys.includes(`B ${i}`), `entry ${i} of both`);
    }
    const left = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
      n.endsWith(".tmp") || n.endsWith(".lock")
    );
    assert.deepEqual(left, [], "no temporary or lock files remain");
  });
});

Deno.test("withFileLock() takes over a stale lock and times out on a live one", async () => {
  await withTempDir("cache_test_", async (dir) => {
    const path = `${dir}/gpu.json`;
    await Deno.writeTextFile(`${path}.lock`, "12345\n");
    const old = new Date(Date.now() - 10 * 60_000);
    await Deno.utime(`${path}.lock`, old, old);
    assert.equal(await withFileLock(path, () => Promise.resolve(42)), 42);
    await assert.rejects(Deno.stat(`${path}.lock`), Deno.errors.NotFound, "lock released");
    await Deno.writeTextFile(`${path}.lock`, "12345\n");
    await assert.rejects(withFileLock(path, () => Promise.resolve(1), 100), /Cannot lock/);
    await Deno.remove(`${path}.lock`);
  });
});

Deno.test("withFileLock(): of many waiters that find one stale lock, one at a time holds it", async () => {
  await withTempDir("cache_test_", async (dir) => {
    const path = `${dir}/gpu.json`;
    for (let round = 0; round < 5; round++) {
      await Deno.writeTextFile(`${path}.lock`, "12345 otherhost stale-token\n");
      const old = new Date(Date.now() - 10 * 60_000);
      await Deno.utime(`${path}.lock`, old, old);
      let inside = 0, most = 0, runs = 0;
      await Promise.all(Array.from({ length: 8 }, () =>
        withFileLock(path, async () => {
          most = Math.max(most, ++inside);
          await new Promise((r) => setTimeout(r, 5));
          inside--;
          runs++;
        })));
      assert.equal(runs, 8, `round ${round}: every waiter ran`);
      assert.equal(most, 1, `round ${round}: ${most} waiters held the lock at once`);
    }
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), [], "no lock or claim left");
  });
});

Deno.test("withFileLock(): a holder keeps its lock fresh however long it runs; an unrefreshed lock goes stale", async () => {
  await withTempDir("cache_test_", async (dir) => {
    const path = `${dir}/gpu.json`;
    const staleMs = 300;
    let inside = 0, most = 0;
    const hold = (ms: number) =>
      withFileLock(
        path,
        async () => {
          most = Math.max(most, ++inside);
          await new Promise((r) => setTimeout(r, ms));
          inside--;
        },
        10_000,
        staleMs,
      );
    // The first holds for 4 stale ages; the second, waiting, must not break its lock.
    await Promise.all([
      hold(4 * staleMs),
      new Promise((r) => setTimeout(r, 50)).then(() => hold(10)),
    ]);
    assert.equal(most, 1, "the long holder kept its lock");
    // A lock nobody refreshes (its holder was killed) is broken once it is staleMs old.
    await Deno.writeTextFile(`${path}.lock`, "99999 elsewhere token\n");
    const t0 = Date.now();
    assert.equal(await withFileLock(path, () => Promise.resolve(3), 10_000, staleMs), 3);
    const waited = Date.now() - t0;
    assert.ok(waited >= staleMs - 50 && waited < 5_000, `waited ${waited} ms`);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), [], "nothing left");
  });
});

Deno.test("a writer SIGKILLed while saving leaves a whole cache file, and its lock goes stale for the next writer", async () => {
  await withTempDir("cache_test_", async (dir) => {
    const path = `${dir}/gpu.json`;
    const script = `${dir}/writer.ts`;
    const store = new URL("../../cache/store.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { saveCacheEntry } from ${JSON.stringify(store)};
const entry = ${JSON.stringify(entry())};
for (let i = 0; ; i++) await saveCacheEntry(Deno.args[0], ${
        JSON.stringify(ADAPTER)
      }, "key " + (i % 300), entry);
`,
    );
    for (const ms of [150, 300, 450, 600]) {
      const child = new Deno.Command(Deno.execPath(), {
        args: writerArgs(script, path),
        stdout: "null",
        stderr: "null",
      }).spawn();
      await new Promise((r) => setTimeout(r, ms));
      child.kill("SIGKILL");
      await child.status;
      const file = await loadCacheFile(path); // parses, or throws
      assert.ok(file === undefined || Object.keys(file.entries).length > 0, `after ${ms} ms`);
      // A lock left by the killed writer is no longer refreshed: once it is STALE_LOCK_MS old
      // (made so here, rather than waited for), the next writer takes it over.
      const lock = `${path}.lock`;
      const left = await Deno.stat(lock).then(() => true, () => false);
      if (left) {
        const old = new Date(Date.now() - STALE_LOCK_MS - 1_000);
        await Deno.utime(lock, old, old);
      }
      const t0 = Date.now();
      await saveCacheEntry(path, ADAPTER, "after", entry());
      assert.ok(Date.now() - t0 < 2_000, `the next save did not wait (${Date.now() - t0} ms)`);
      for (const f of Deno.readDirSync(dir)) {
        if (f.name.endsWith(".tmp")) await Deno.remove(`${dir}/${f.name}`); // the killed write's
      }
    }
    assert.ok((await loadCacheFile(path))!.entries["after"]);
  });
});

Deno.test("mergeCacheFiles() keeps each bucket's faster result across copies of one GPU's file", async () => {
  await withTempDir("cache_test_", async (dir) => {
    const key = problemKey(TINY, "f32");
    const target = `${dir}/gpu.json`;
    await Deno.writeTextFile(target, JSON.stringify(validFile()));
    // A second call's copy: m = 16 re-tuned faster, m = 1 slower, and a new bucket.
    const faster = entry("tile-bm16-bn16-bk8-rm2-rn2-v4");
    faster.buckets["16"].fusedTotalUs = 20;
    faster.buckets["16"].unfused = { medianUs: 50, configs: [] };
    faster.buckets["1"].fusedTotalUs = 99;
    faster.buckets["64"] = { ...faster.buckets["16"] };
    const copy = `${dir}/copy.json`;
    await Deno.writeTextFile(copy, JSON.stringify({ ...validFile(), entries: { [key]: faster } }));
    assert.deepEqual(await mergeCacheFiles(target, [copy]), [key]);
    const merged = (await loadCacheFile(target))!.entries[key].buckets;
    assert.equal(merged["16"].fused.config, "tile-bm16-bn16-bk8-rm2-rn2-v4");
    assert.equal(merged["1"].fusedTotalUs, 15, "the slower copy of m = 1 does not replace it");
    assert.ok(merged["64"], "a bucket only the copy has is added");
    assert.deepEqual(await mergeCacheFiles(target, [copy]), [], "merging again changes nothing");
    const other = `${dir}/other.json`;
    await Deno.writeTextFile(other, JSON.stringify({ ...validFile(), adapter: OTHER }));
    await assert.rejects(mergeCacheFiles(target, [other]), CacheFormatError);
    await assert.rejects(mergeCacheFiles(target, [`${dir}/none.json`]), Deno.errors.NotFound);
  });
});
