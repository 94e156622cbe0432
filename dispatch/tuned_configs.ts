/**
 * Finding the tuned configs for a device and problem: the cache file is picked by the
 * adapter's fingerprint and fetched next to this module (a file: URL in Deno, the same path
 * on the page's server in a browser); each config in the entry is checked before use.
 *
 * @module
 */
import type { BucketResult, CacheEntry, CacheFile, StageResult } from "../cache/schema.ts";
import {
  adapterFingerprint,
  cacheFileName,
  CacheFormatError,
  GENERATOR_VERSION,
  OLDEST_RUNNABLE_GENERATOR,
  parseCacheFile,
  parseCacheText,
  problemKey,
  storedProblem,
} from "../cache/schema.ts";
import { configProblem, parseConfigName } from "../kernels/config.ts";
import { UNLIMITED_CAPS } from "../kernels/device.ts";
import type { Precision, WeightDtype } from "../kernels/dtype.ts";
import type { GemmShape, ProjectionSpec } from "../kernels/problem.ts";
import { batchedShape, fusedShape, unfusedShapes } from "../kernels/problem.ts";

/** Where to take tuning from: a parsed file, a URL to fetch, or none (defaults only). */
export type CacheSource = CacheFile | URL | false;

/** The cache folder that ships with this module. */
export const BUNDLED_CACHE_DIR = new URL("../cache/", import.meta.url);

/**
 * Reads and parses a cache file: with Deno's file API for a `file:` URL in Deno, else with
 * `fetch` (a browser, or a cache served over HTTP).
 *
 * @param required Whether a missing file is an error (a file the user named) or means "no
 * tuning" (the bundled file of a GPU nobody tuned).
 * @returns The file, or `undefined` if there is none at the URL and none was required.
 * @throws {CacheFormatError} If the file is there but corrupt.
 * @throws {Error} If a required file is missing or is a folder, or the read fails.
 */
export async function fetchCacheFile(url: URL, required = false): Promise<CacheFile | undefined> {
  const missing = (what: string, cause?: unknown) => {
    if (!required) return undefined;
    throw new Error(`Cannot load cache "${url.href}": ${what}`, { cause });
  };
  if (url.pathname.endsWith("/")) return missing("the URL names a folder, not a file");
  const deno = (globalThis as { Deno?: typeof Deno }).Deno;
  let text: string;
  if (url.protocol === "file:" && deno) {
    try {
      text = await deno.readTextFile(url);
    } catch (e) {
      if (e instanceof deno.errors.NotFound) return missing("there is no such file", e);
      if (e instanceof deno.errors.IsADirectory) return missing("it is a folder, not a file", e);
      throw e;
    }
  } else {
    const response = await fetch(url);
    if (response.status === 404) {
      await response.body?.cancel();
      return missing("the server answered 404 (no such file)");
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`Cannot fetch cache "${url.href}": HTTP ${response.status}`);
    }
    text = await response.text();
  }
  return parseCacheText(text, url.href);
}

/**
 * The cache entry for a problem on a device, checked against the problem: every config in it
 * must be valid for its stage's shape on some device (whether this device can run it is the
 * dispatcher's choice, per bucket and tier).
 *
 * @returns The entry, or `undefined` if the cache has none, or none from a generator whose
 * configs this one still runs (`OLDEST_RUNNABLE_GENERATOR` to `GENERATOR_VERSION`).
 * @throws {CacheFormatError} If the file (or object) is not a valid cache file, belongs to another
 * GPU, the entry's shape differs from the problem, or a config in it is invalid for the problem.
 * @throws {Error} If a cache URL the user named is missing or is a folder.
 */
export async function tunedEntry(
  device: GPUDevice,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  source: CacheSource | undefined,
  precision: Precision = "exact",
): Promise<CacheEntry | undefined> {
  if (source === false) return undefined;
  const fingerprint = adapterFingerprint(device.adapterInfo);
  const where = source instanceof URL
    ? source.href
    : source === undefined
    ? new URL(cacheFileName(fingerprint), BUNDLED_CACHE_DIR).href
    : "(cache object)";
  // A cache object is checked like a file: it may come from anywhere (a fetch, a bundle).
  const file = source === undefined || source instanceof URL
    ? await fetchCacheFile(new URL(where), source instanceof URL)
    : parseCacheFile(source, where);
  if (!file) return undefined;
  if (JSON.stringify(file.adapter) !== JSON.stringify(fingerprint)) {
    throw new CacheFormatError(
      where,
      "adapter",
      `is ${JSON.stringify(file.adapter)}, not this GPU ${JSON.stringify(fingerprint)}`,
    );
  }
  // A "fast" projection takes the exact tuning where there is no fast one: exact is allowed.
  const keys = precision === "fast"
    ? [problemKey(spec, dtype, "fast"), problemKey(spec, dtype)]
    : [problemKey(spec, dtype)];
  const runnable = (v: number) => v >= OLDEST_RUNNABLE_GENERATOR && v <= GENERATOR_VERSION;
  const key = keys.find((k) =>
    Object.hasOwn(file.entries, k) && runnable(file.entries[k].generatorVersion)
  );
  if (key === undefined) return undefined;
  const entry = file.entries[key];
  if (JSON.stringify(entry.problem) !== JSON.stringify(storedProblem(spec, dtype))) {
    throw new CacheFormatError(
      where,
      `entries.${key}.problem`,
      "does not match the problem's shape",
    );
  }
  const exact = !key.endsWith(" fast");
  for (const [m, bucket] of Object.entries(entry.buckets)) {
    checkBucket(bucket, spec, dtype, exact, where, `entries.${key}.buckets.${m}`);
  }
  return entry;
}

/** Checks that every config of a bucket is valid for its stage's shape on some device. */
function checkBucket(
  bucket: BucketResult,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  exact: boolean,
  where: string,
  field: string,
): void {
  const fused = fusedShape(spec), batched = batchedShape(spec), unfused = unfusedShapes(spec);
  const check = (name: string, shape: GemmShape | undefined, at: string) => {
    if (!shape) {
      throw new CacheFormatError(where, at, "names a config for a stage the problem does not have");
    }
    const config = parseConfigName(name);
    const problem = exact && config.family === "outer" && config.half
      ? `half math is for a "fast" entry`
      : configProblem(config, shape, dtype, UNLIMITED_CAPS);
    if (problem) {
      throw new CacheFormatError(
        where,
        at,
        `config "${name}" is invalid on any device: ${problem}`,
      );
    }
  };
  const checkStage = (stage: StageResult, shape: GemmShape | undefined, at: string) => {
    check(stage.config, shape, `${at}.config`);
    stage.tiers?.forEach((t, i) => check(t.config, shape, `${at}.tiers.${i}.config`));
  };
  checkStage(bucket.fused, fused, `${field}.fused`);
  if (bucket.batched) checkStage(bucket.batched, batched, `${field}.batched`);
  else if (batched) {
    throw new CacheFormatError(
      where,
      `${field}.batched`,
      "is missing for a problem with a batched stage",
    );
  }
  if (bucket.unfused) {
    if (bucket.unfused.configs.length !== unfused.length) {
      throw new CacheFormatError(
        where,
        `${field}.unfused.configs`,
        `has ${bucket.unfused.configs.length} configs, expected ${unfused.length}`,
      );
    }
    bucket.unfused.configs.forEach((name, i) =>
      check(name, unfused[i].shape, `${field}.unfused.configs.${i}`)
    );
  }
}
