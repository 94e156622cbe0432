/**
 * Adds the device tiers (cache format 2) to a cache file tuned before they existed, from its
 * trial logs: for every entry, bucket and stage, the fastest logged config of each weaker tier.
 * Every logged timing ran on the tuning device, so a config fits its "no-subgroups" tier when it
 * uses no subgroups, and its "portable" tier when it fits WebGPU's default limits.
 *
 *   deno run -A tuner/backfill_tiers.ts cache/<gpu>.json   # logs from cache/logs/<gpu>/
 *
 * @module
 */
import { problemKey } from "../cache/schema.ts";
import type { CacheEntry } from "../cache/schema.ts";
import { loadCacheFile, saveCacheEntry } from "../cache/store.ts";
import { UNLIMITED_CAPS } from "../kernels/device.ts";
import { WEIGHT_DTYPES } from "../kernels/dtype.ts";
import { batchedShape, fusedShape } from "../kernels/problem.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { stageTiers } from "./tiers.ts";
import { logFileName, readTrials } from "./trial_log.ts";
import { loadProblem } from "./yaml_file.ts";

const path = Deno.args[0];
if (!path?.endsWith(".json")) {
  console.error("usage: deno run -A tuner/backfill_tiers.ts cache/<gpu>.json");
  Deno.exit(2);
}
const file = await loadCacheFile(path);
if (!file) throw new Error(`Cannot backfill "${path}": there is no such file`);
const logDir = path.replace(/\.json$/, "").replace(/([^/]+)$/, "logs/$1");
const problemsDir = new URL("../problems/", import.meta.url);
const problems: ProjectionSpec[] = [];
for await (const e of Deno.readDir(problemsDir)) {
  if (e.name.endsWith(".yaml")) {
    problems.push(await loadProblem(new URL(e.name, problemsDir).pathname));
  }
}
for (const [key, entry] of Object.entries(file.entries)) {
  const dtype = entry.problem.dtype;
  const spec = problems.find((p) => WEIGHT_DTYPES.includes(dtype) && problemKey(p, dtype) === key);
  if (!spec) {
    throw new Error(`Cannot backfill entry "${key}": no problem in problems/ has its shape`);
  }
  const logName = await logFileName(spec.name, key, entry.generatorVersion);
  const trials = await readTrials(`${logDir}/${logName}`);
  const timed = (target: string, m: string) =>
    trials.filter((t) =>
      t.target === target && String(t.bucket) === m && t.outcome === "ok" &&
      t.generator === entry.generatorVersion
    ).map((t) => ({ config: t.config, medianUs: t.medianUs! }));
  const buckets: CacheEntry["buckets"] = {};
  for (const [m, bucket] of Object.entries(entry.buckets)) {
    const fused = stageTiers(
      timed("fused", m),
      fusedShape(spec),
      dtype,
      UNLIMITED_CAPS,
      bucket.fused.config,
    );
    buckets[m] = { ...bucket, fused: { ...bucket.fused, tiers: fused } };
    if (bucket.batched) {
      const tiers = stageTiers(
        timed("batched", m),
        batchedShape(spec)!,
        dtype,
        UNLIMITED_CAPS,
        bucket.batched.config,
      );
      buckets[m].batched = { ...bucket.batched, tiers };
    }
  }
  await saveCacheEntry(path, file.adapter, key, { ...entry, buckets });
  console.log(
    `${key}: tiers of ${Object.keys(buckets).length} buckets from ${logName}`,
  );
}
