/**
 * The cache files the repository ships (cache/*.json) are what users' dispatches run: every config
 * in them must fit the shape of its entry's problem on a device without limits, generate WGSL and
 * suit its bucket's rows, so that a bad merge of two devices' runs or a hand edit fails here.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { problemKey } from "../cache/schema.ts";
import type { BucketResult, CacheEntry } from "../cache/schema.ts";
import { loadCacheFile } from "../cache/store.ts";
import { configProblem, parseConfigName } from "../kernels/config.ts";
import { UNLIMITED_CAPS } from "../kernels/device.ts";
import { WEIGHT_DTYPES } from "../kernels/dtype.ts";
import { kernelWgsl } from "../kernels/generate.ts";
import type { GemmShape, ProjectionSpec } from "../kernels/problem.ts";
import { stageShape } from "../kernels/problem.ts";
import { suitsRows } from "../kernels/space.ts";
import { loadProblem } from "../tuner/yaml_file.ts";

const cacheDir = new URL("../cache/", import.meta.url);
const problemsDir = new URL("../problems/", import.meta.url);
const names = (dir: URL, ext: string) =>
  [...Deno.readDirSync(dir)].filter((e) => e.isFile && e.name.endsWith(ext)).map((e) => e.name)
    .sort();

/** Every problem of problems/ by its cache key, in each weight type and precision. */
async function problemsByKey(): Promise<Map<string, ProjectionSpec>> {
  const byKey = new Map<string, ProjectionSpec>();
  for (const name of names(problemsDir, ".yaml")) {
    const spec = await loadProblem(fileURLToPath(new URL(name, problemsDir)));
    for (const dtype of WEIGHT_DTYPES) {
      byKey.set(problemKey(spec, dtype), spec);
      byKey.set(problemKey(spec, dtype, "fast"), spec);
    }
  }
  return byKey;
}

/** Each config a bucket names for a stage: the winner and its weaker tiers' picks. */
function stageConfigs(bucket: BucketResult, stage: "fused" | "batched"): string[] {
  const result = bucket[stage];
  return result ? [result.config, ...(result.tiers ?? []).map((t) => t.config)] : [];
}

/** What is wrong with an entry's configs, one line each; empty if nothing. */
function entryProblems(entry: CacheEntry, spec: ProjectionSpec): string[] {
  const dtype = entry.problem.dtype;
  const found: string[] = [];
  for (const [m, bucket] of Object.entries(entry.buckets)) {
    for (const stage of ["fused", "batched"] as const) {
      const shape: GemmShape = stageShape(spec, stage);
      for (const name of stageConfigs(bucket, stage)) {
        const config = parseConfigName(name);
        const problem = configProblem(config, shape, dtype, UNLIMITED_CAPS);
        if (problem) found.push(`m = ${m} ${stage} ${name}: ${problem}`);
        else if (!kernelWgsl(config, shape, dtype).includes("@compute")) {
          found.push(`m = ${m} ${stage} ${name}: no compute entry point`);
        }
        if (!suitsRows(config, Number(m))) {
          found.push(`m = ${m} ${stage} ${name}: not for ${m} rows`);
        }
      }
    }
  }
  return found;
}

const files = names(cacheDir, ".json");
const byKey = await problemsByKey();

Deno.test("the repository ships cache files for llvmpipe, the H100 and the H200", () => {
  assert.equal(files.length, 3, files.join(", "));
});

for (const name of files) {
  Deno.test(`${name}: every config fits its problem, generates WGSL and suits its rows`, async () => {
    const file = await loadCacheFile(fileURLToPath(new URL(name, cacheDir)));
    assert.ok(file, `${name} is missing`);
    const found: string[] = [];
    for (const [key, entry] of Object.entries(file.entries)) {
      const spec = byKey.get(key);
      if (!spec) found.push(`entry "${key}": no problem in problems/ has its shape`);
      else found.push(...entryProblems(entry, spec).map((p) => `"${key}" ${p}`));
    }
    assert.deepEqual(found, []);
  });
}
