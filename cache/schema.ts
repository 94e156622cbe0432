/**
 * The tuned-cache format: one JSON file per GPU, keyed by the adapter's fingerprint, then by
 * problem and weight type, then by m bucket. Pure (no I/O), so browsers can use it too.
 *
 * @module
 */
// A full specifier, not the import map's "zod": mod.ts must import from any folder or project,
// where this repository's deno.json does not apply (the same version as the map's).
// deno-lint-ignore no-import-prefix
import { z } from "npm:zod@3.25.76";
import { configName, parseConfigName } from "../kernels/config.ts";
import type { DeviceTier } from "../kernels/device.ts";
import type { Precision, WeightDtype } from "../kernels/dtype.ts";
import type { ProjectionSpec } from "../kernels/problem.ts";

/**
 * Version of the file format. Version 1 files (no `tiers`) are read too; a file of any other
 * version is refused.
 */
export const CACHE_SCHEMA_VERSION = 2;

/** Older versions this one reads. */
const READABLE_VERSIONS = [1, CACHE_SCHEMA_VERSION];

/**
 * Version of the kernel generators. Bump it when generated code changes meaning or speed, so
 * that old trial logs are not resumed as if they measured today's kernels. One change did not
 * bump it: the vec4 stream-K reduction (2026-12-06) only made stream-K configs 2-3% faster, so
 * generator 2's logged stream-K times are upper bounds and its cached winners are no slower than
 * recorded (NOTES.md, "The vec4 stream-K reduction measured").
 */
export const GENERATOR_VERSION = 2;

/**
 * The oldest generator whose config names still name the same computation. The dispatcher runs
 * a cache entry tuned with it or later (each config checked as always) and warns that its
 * winners may no longer be the fastest; an older or newer entry is not used. Raise it when a
 * config name changes meaning.
 */
export const OLDEST_RUNNABLE_GENERATOR = 1;

/** What identifies a GPU: the fields of `GPUAdapterInfo`. */
export interface AdapterFingerprint {
  /** `GPUAdapterInfo.vendor`. */
  vendor: string;
  /** `GPUAdapterInfo.architecture`. */
  architecture: string;
  /** `GPUAdapterInfo.device`. */
  device: string;
  /** `GPUAdapterInfo.description`. */
  description: string;
}

/** Reads the fingerprint of an adapter. */
export function adapterFingerprint(info: GPUAdapterInfo): AdapterFingerprint {
  return {
    vendor: String(info.vendor ?? ""),
    architecture: String(info.architecture ?? ""),
    device: String(info.device ?? ""),
    description: String(info.description ?? ""),
  };
}

/**
 * The cache file name of a GPU: its fingerprint, lower-cased, in letters, digits and dashes.
 *
 * @example
 * ```ts
 * import { cacheFileName } from "./schema.ts";
 * const name = cacheFileName({ vendor: "4318", architecture: "", device: "8960", description: "NVIDIA H100 80GB HBM3" });
 * if (name !== "4318-8960-nvidia-h100-80gb-hbm3.json") throw new Error(name);
 * ```
 */
export function cacheFileName(fp: AdapterFingerprint): string {
  const slug = [fp.vendor, fp.architecture, fp.device, fp.description]
    .map((s) => s.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, ""))
    .filter(Boolean)
    .join("-");
  return `${slug || "unknown-gpu"}.json`;
}

/**
 * The key of a problem, weight type and precision in a cache file: sizes and names, not the
 * spec's name, so two specs of the same shape share their tuning; `"fast"` tunings (f16 math)
 * have keys of their own.
 *
 * @example
 * ```ts
 * import { problemKey } from "./schema.ts";
 * const key = problemKey({ name: "x", k: 64, segments: [{ name: "a", n: 8 }] }, "f16");
 * if (key !== "k64 a=8 f16") throw new Error(key);
 * const fast = problemKey({ name: "x", k: 64, segments: [{ name: "a", n: 8 }] }, "f16", "fast");
 * if (fast !== "k64 a=8 f16 fast") throw new Error(fast);
 * ```
 */
export function problemKey(
  spec: ProjectionSpec,
  dtype: WeightDtype,
  precision: Precision = "exact",
): string {
  const parts = [`k${spec.k}`, ...spec.segments.map((s) => `${s.name}=${s.n}`)];
  const b = spec.batched;
  if (b) parts.push(`bmm(${b.inputs.join(",")}->${b.outputs.join(",")})=${b.n}`);
  parts.push(dtype);
  if (precision === "fast") parts.push("fast");
  return parts.join(" ");
}

const configNameSchema = z.string().refine((name) => {
  try {
    return configName(parseConfigName(name)) === name;
  } catch {
    return false;
  }
}, { message: "not a kernel config name" });

const stageResultSchema: z.ZodType<StageResult> = z.object({
  /** Winning config's name. */
  config: configNameSchema,
  /** Its median time, microseconds. */
  medianUs: z.number().positive(),
  /** The runner-up's name, if there was one. */
  runnerUp: configNameSchema.nullable(),
  /** How much slower the runner-up was, percent. */
  runnerUpMarginPct: z.number().nonnegative().nullable(),
  /** Configs timed for this stage and bucket. */
  trials: z.number().int().nonnegative(),
  /** The winner's timing stayed too noisy to trust after a second measurement. */
  noisy: z.literal(true).optional(),
  /** The best measured config of each weaker device tier, where it differs from the winner. */
  tiers: z.array(
    z.object({
      tier: z.enum(["no-subgroups", "portable"]),
      config: configNameSchema,
      medianUs: z.number().positive(),
    }).strict(),
  ).optional(),
}).strict();

const bucketSchema: z.ZodType<BucketResult> = z.object({
  fused: stageResultSchema,
  batched: stageResultSchema.nullable(),
  /** Fused stage + batched stage, microseconds. */
  fusedTotalUs: z.number().positive(),
  /** The unfused baseline (one GEMM per segment and per batched input), if it was timed. */
  unfused: z.object({
    medianUs: z.number().positive(),
    /** Config per unfused GEMM, in `unfusedShapes` order. */
    configs: z.array(configNameSchema),
  }).strict().nullable(),
}).strict();

const problemSchema: z.ZodType<CacheEntry["problem"]> = z.object({
  k: z.number().int().positive(),
  segments: z.array(z.object({ name: z.string().min(1), n: z.number().int().positive() }).strict())
    .min(1),
  batched: z.object({
    inputs: z.array(z.string()).min(1),
    outputs: z.array(z.string()).min(1),
    n: z.number().int().positive(),
  }).strict().nullable(),
  dtype: z.enum(["f32", "f16", "bf16"]),
}).strict();

const entrySchema: z.ZodType<CacheEntry> = z.object({
  problem: problemSchema,
  generatorVersion: z.number().int(),
  tunedAt: z.string(),
  buckets: z.record(
    z.string().regex(/^[1-9][0-9]*$/, "bucket keys are positive integers"),
    bucketSchema,
  ),
}).strict();

/** The schema of a cache file. */
export const cacheFileSchema: z.ZodType<CacheFile> = z.object({
  schemaVersion: z.number().int().refine((v) => READABLE_VERSIONS.includes(v)),
  adapter: z.object({
    vendor: z.string(),
    architecture: z.string(),
    device: z.string(),
    description: z.string(),
  }).strict(),
  entries: z.record(z.string(), entrySchema),
}).strict();

/** The winner of one stage at one bucket. */
export interface StageResult {
  /** Winning config's name. */
  config: string;
  /** Its median time, microseconds. */
  medianUs: number;
  /** The runner-up's name, if there was one. */
  runnerUp: string | null;
  /** How much slower the runner-up was, percent. */
  runnerUpMarginPct: number | null;
  /** Configs timed for this stage and bucket. */
  trials: number;
  /**
   * Set when the winner's timing stayed too noisy to trust (spread over 25%) after a second
   * measurement; absent otherwise.
   */
  noisy?: true;
  /**
   * The best measured config of each weaker device tier ("no-subgroups", then "portable"),
   * listed where it differs from the winner and from the tier before; the dispatcher runs the
   * first one the device can. Absent in version 1 files.
   */
  tiers?: TierResult[];
}

/** The best measured config of a stage and bucket on a weaker device tier. */
export interface TierResult {
  /** The tier: "no-subgroups" or "portable". */
  tier: Exclude<DeviceTier, "best">;
  /** Its best measured config's name. */
  config: string;
  /** Its median time on the tuning device, microseconds. */
  medianUs: number;
}

/** The winners at one bucket. */
export interface BucketResult {
  /** The fused stage's winner. */
  fused: StageResult;
  /** The batched stage's winner, or null for a problem without one. */
  batched: StageResult | null;
  /**
   * The whole fused projection, microseconds: both stages timed in one pass beside the unfused
   * baseline, or the sum of the stages' own times where that baseline was not timed (`unfused`
   * null: `--no-unfused`, or a run out of time before it).
   */
  fusedTotalUs: number;
  /** The unfused baseline (one GEMM per segment and per batched input), if it was timed. */
  unfused: { medianUs: number; configs: string[] } | null;
}

/** The tuning of one problem and weight type. */
export interface CacheEntry {
  /** The problem's shape and weight type (see {@linkcode storedProblem}). */
  problem: {
    k: number;
    segments: { name: string; n: number }[];
    batched: { inputs: string[]; outputs: string[]; n: number } | null;
    dtype: WeightDtype;
  };
  /** The kernel generators' version it was tuned with ({@linkcode GENERATOR_VERSION}). */
  generatorVersion: number;
  /** When it was tuned (ISO 8601). */
  tunedAt: string;
  /** By bucket (m, as a decimal string). */
  buckets: Record<string, BucketResult>;
}

/** A whole cache file. */
export interface CacheFile {
  /** The format's version ({@linkcode CACHE_SCHEMA_VERSION} once read). */
  schemaVersion: number;
  /** The GPU the file was tuned on. */
  adapter: AdapterFingerprint;
  /** By {@linkcode problemKey}. */
  entries: Record<string, CacheEntry>;
}

/** A cache file that cannot be used, with the file and the field at fault. */
export class CacheFormatError extends SyntaxError {
  /**
   * Makes the error.
   *
   * @param file Where the cache came from (a path, a URL, or "(cache object)").
   * @param field The dotted path of the field at fault ("" for the whole file).
   * @param detail What is wrong with it.
   */
  constructor(readonly file: string, readonly field: string, detail: string) {
    super(`Cannot load cache "${file}": ${field ? `field "${field}" ` : ""}${detail}`);
    this.name = "CacheFormatError";
  }
}

/**
 * Validates parsed JSON as a cache file.
 *
 * @param file Where it came from, for the error message.
 * @throws {CacheFormatError} Naming the first field at fault.
 */
export function parseCacheFile(json: unknown, file: string): CacheFile {
  const version = (json as { schemaVersion?: unknown })?.schemaVersion;
  if (
    typeof json === "object" && json !== null && !READABLE_VERSIONS.includes(version as number)
  ) {
    throw new CacheFormatError(
      file,
      "schemaVersion",
      `is ${JSON.stringify(version)}, this version reads ${READABLE_VERSIONS.join(" and ")}`,
    );
  }
  const result = cacheFileSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new CacheFormatError(file, issue.path.join("."), issue.message.toLowerCase());
  }
  // A version 1 file is a version 2 file without tiers.
  return { ...result.data, schemaVersion: CACHE_SCHEMA_VERSION };
}

/**
 * Parses the text of a cache file.
 *
 * @throws {CacheFormatError} If it is not JSON or not a cache file.
 */
export function parseCacheText(text: string, file: string): CacheFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CacheFormatError(file, "", `is not valid JSON (${(e as Error).message})`);
  }
  return parseCacheFile(json, file);
}

/** An empty cache file for an adapter. */
export function emptyCache(adapter: AdapterFingerprint): CacheFile {
  return { schemaVersion: CACHE_SCHEMA_VERSION, adapter, entries: {} };
}

/** The problem part of an entry, as stored. */
export function storedProblem(spec: ProjectionSpec, dtype: WeightDtype): CacheEntry["problem"] {
  return {
    k: spec.k,
    segments: spec.segments.map((s) => ({ name: s.name, n: s.n })),
    // Built field by field, so key order in the caller's spec does not matter.
    batched: spec.batched
      ? { inputs: [...spec.batched.inputs], outputs: [...spec.batched.outputs], n: spec.batched.n }
      : null,
    dtype,
  };
}
