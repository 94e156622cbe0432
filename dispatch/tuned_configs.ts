/**
 * Finding the tuned configs for a device and problem: the cache file is picked by the
 * adapter's fingerprint and fetched next to this module (a file: URL in Deno, the same path
 * on the page's server in a browser); each config in the entry is checked before use.
 *
 * @module
 */
import type { CacheEntry, CacheFile } from "../cache/schema.ts";
import {
  adapterFingerprint,
  cacheFileName,
  CacheFormatError,
  GENERATOR_VERSION,
  parseCacheFile,
  parseCacheText,
  problemKey,
  storedProblem,
} from "../cache/schema.ts";
import type { DeviceCaps } from "../kernels/config.ts";
import { configProblem, parseConfigName } from "../kernels/config.ts";
import type { WeightDtype } from "../kernels/dtype.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { batchedShape, fusedShape, unfusedShapes } from "../kernels/problem.ts";

/** Where to take tuning from: a parsed file, a URL to fetch, or none (defaults only). */
export type CacheSource = CacheFile | URL | false;

/** The cache folder that ships with this module. */
export const BUNDLED_CACHE_DIR = new URL("../cache/", import.meta.url);

/**
 * Fetches and parses a cache file.
 *
 * @returns The file, or `undefined` if there is none at the URL.
 * @throws {CacheFormatError} If the file is there but corrupt.
 */
export async function fetchCacheFile(url: URL): Promise<CacheFile | undefined> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    // Deno's fetch of a missing file: URL throws; anything else is a real error.
    if (url.protocol === "file:" && /No such file|not found/i.test((e as Error).message)) {
      return undefined;
    }
    throw e;
  }
  if (response.status === 404) {
    await response.body?.cancel();
    return undefined;
  }
  if (!response.ok) throw new Error(`Cannot fetch cache "${url}": HTTP ${response.status}`);
  return parseCacheText(await response.text(), url.href);
}

/**
 * The cache entry for a problem on a device, checked against the problem and the device.
 *
 * @returns The entry, or `undefined` if the cache has none (or none for this generator).
 * @throws {CacheFormatError} If the file (or object) is not a valid cache file, belongs to another
 * GPU, the entry's shape differs from the problem, or a config in it is invalid for the problem.
 * Buckets whose configs only exceed this device's limits are left out, with a warning.
 */
export async function tunedEntry(
  device: GPUDevice,
  caps: DeviceCaps,
  spec: ProjectionSpec,
  dtype: WeightDtype,
  source: CacheSource | undefined,
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
    ? await fetchCacheFile(new URL(where))
    : parseCacheFile(source, where);
  if (!file) return undefined;
  if (JSON.stringify(file.adapter) !== JSON.stringify(fingerprint)) {
    throw new CacheFormatError(
      where,
      "adapter",
      `is ${JSON.stringify(file.adapter)}, not this GPU ${JSON.stringify(fingerprint)}`,
    );
  }
  const key = problemKey(spec, dtype);
  const entry = file.entries[key];
  if (!entry || entry.generatorVersion !== GENERATOR_VERSION) return undefined;
  if (JSON.stringify(entry.problem) !== JSON.stringify(storedProblem(spec, dtype))) {
    throw new CacheFormatError(
      where,
      `entries.${key}.problem`,
      "does not match the problem's shape",
    );
  }
  const fused = fusedShape(spec), batched = batchedShape(spec), unfused = unfusedShapes(spec);
  // Buckets whose kernels need more than this device grants (a device created with WebGPU's
  // default limits, or without "subgroups") are left out, with a warning.
  const overLimits: string[] = [];
  const usable: CacheEntry["buckets"] = {};
  for (const [m, bucket] of Object.entries(entry.buckets)) {
    const field = `entries.${key}.buckets.${m}`;
    let fits = true;
    const check = (name: string, shape: typeof fused | undefined, at: string) => {
      if (!shape) {
        throw new CacheFormatError(
          where,
          at,
          "names a config for a stage the problem does not have",
        );
      }
      const config = parseConfigName(name);
      const problem = configProblem(config, shape, dtype, caps);
      if (problem && !configProblem(config, shape, dtype, UNLIMITED)) {
        if (fits) overLimits.push(`m=${m} (${name}: ${problem})`);
        fits = false;
      } else if (problem) {
        throw new CacheFormatError(
          where,
          at,
          `config "${name}" is invalid on this device: ${problem}`,
        );
      }
    };
    check(bucket.fused.config, fused, `${field}.fused.config`);
    if (bucket.batched) check(bucket.batched.config, batched, `${field}.batched.config`);
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
    if (fits) usable[m] = bucket;
  }
  if (overLimits.length > 0) {
    console.warn(
      `Tuned kernels of ${overLimits.length} bucket(s) of "${spec.name}" exceed this device's limits: ` +
        `${
          overLimits.join("; ")
        }. Those buckets are left out; their rows use the next tuned bucket ` +
        `(the defaults if none is left). Request the adapter's limits and the "subgroups" feature ` +
        `in requestDevice() to use them (see README).`,
    );
  }
  if (Object.keys(usable).length === 0) return undefined;
  return { ...entry, buckets: usable };
}

/** Limits no device has: a config invalid even here is invalid for the shape, not the device. */
const UNLIMITED: DeviceCaps = {
  maxInvocations: Infinity,
  maxWorkgroupSizeX: Infinity,
  maxWorkgroupSizeY: Infinity,
  maxWorkgroupStorage: Infinity,
  maxStorageBinding: Infinity,
  maxWorkgroupsPerDimension: Infinity,
  subgroups: true,
  subgroupMinSize: 128,
};
