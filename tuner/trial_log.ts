/**
 * The append-only trial log: one JSON object per line, written as each trial finishes, so an
 * interrupted run loses at most the trial in flight and the next run resumes from the file.
 *
 * @module
 */

/** How a trial ended, as in Kernel Tuner: each failure is an outcome, not an exception. */
export type Outcome = "ok" | "invalid" | "compile" | "verify" | "runtime";

/** One line of the log. */
export interface Trial {
  /** Generator version the kernel came from; trials of another version are not resumed. */
  generator: number;
  /** "fused", "batched", or "unfused:<i>" for the i-th unfused GEMM. */
  target: string;
  /** m the config was timed at; null for outcomes that do not depend on m. */
  bucket: number | null;
  config: string;
  outcome: Outcome;
  medianUs?: number;
  spreadPct?: number;
  samples?: number;
  clock?: "gpu" | "wall";
  /** The clock probe's time per run while this was timed, microseconds (clock_probe.ts). */
  probeUs?: number;
  /** How far the probe was from its fastest then, percent. */
  driftPct?: number;
  /** The spread stayed over the noise limit after a second measurement (see timing.ts). */
  noisy?: boolean;
  /** Why the trial failed. */
  reason?: string;
  at: string;
}

/**
 * The log file of a problem and weight type: the problem's name (anything but letters, digits,
 * dots, dashes and underscores replaced, so that no name writes outside the log folder), the
 * weight type, and a hash of the problem's shape and the generator version, so that a problem
 * whose sizes changed under the same name, or kernels of another generator, start a new log.
 *
 * @param problem The problem's name.
 * @param key The problem's cache key (`problemKey`: shape and weight type).
 * @param generator The kernel generators' version.
 * @example
 * ```ts
 * import { logFileName } from "./trial_log.ts";
 * const name = await logFileName("../x/y", "k64 a=8 f16", 1);
 * if (!/^x-y-f16-[0-9a-f]{8}\.jsonl$/.test(name)) throw new Error(name);
 * if (name === await logFileName("../x/y", "k64 a=16 f16", 1)) throw new Error("same hash");
 * ```
 */
export async function logFileName(
  problem: string,
  key: string,
  generator: number,
): Promise<string> {
  const safe = problem.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[.-]+/, "");
  const words = key.split(" "); // the weight type ends the key, then "fast" for f16 math
  const dtype = words.slice(words.at(-1) === "fast" ? -2 : -1).join("-");
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(`${key} generator ${generator}`),
  );
  const hash = [...new Uint8Array(digest).slice(0, 4)]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${safe || "problem"}-${dtype}-${hash}.jsonl`;
}

/**
 * A line that opens each run in the log: what the run was asked to do, so that a plain rerun
 * resumes with the same seed, and a reader knows what the trials after it belong to.
 */
export interface RunRecord {
  run: {
    /** The seed of the data and of random search. */
    seed: number;
    /** The problem's cache key (shape and weight type) and the generator version. */
    problem: string;
    generator: number;
    strategy: string;
    /** A count, or a share of the valid configs such as "15%". */
    maxTrials: number | string;
    buckets: number[];
    at: string;
  };
}

function isRunRecord(x: unknown): x is RunRecord {
  const r = (x as { run?: Record<string, unknown> })?.run;
  return typeof r === "object" && r !== null && typeof r.seed === "number" &&
    typeof r.problem === "string";
}

/**
 * Reads a log; a torn last line (from a kill mid-write) is skipped, other bad lines throw. A path
 * ending in `.gz` is read gzipped (logs kept as evidence are stored so, being 10x smaller).
 */
export async function readTrials(path: string): Promise<Trial[]> {
  const bytes = await readIfPresent(path);
  if (!bytes) return [];
  const plain = path.endsWith(".gz") ? await gunzip(bytes) : bytes;
  return parseTrials(new TextDecoder().decode(plain), path);
}

async function readIfPresent(path: string): Promise<Uint8Array<ArrayBuffer> | undefined> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

function gunzip(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip")))
    .bytes();
}

/** `<path>.gz` unpacked to `path`; undefined if there is none. */
async function unpackGzipped(path: string): Promise<Uint8Array | undefined> {
  const gzipped = await readIfPresent(`${path}.gz`);
  if (!gzipped) return undefined;
  const plain = await gunzip(gzipped);
  await Deno.writeFile(path, plain);
  return plain;
}

function parseTrials(text: string, path: string): Trial[] {
  return parseLog(text, path).trials;
}

function parseLog(text: string, path: string): { trials: Trial[]; runs: RunRecord[] } {
  const lines = text.split("\n");
  const trials: Trial[] = [];
  const runs: RunRecord[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    let trial: unknown;
    try {
      trial = JSON.parse(line);
    } catch {
      if (i < lines.length - 1 && lines.slice(i + 1).some((l) => l.trim() !== "")) {
        throw new SyntaxError(`Cannot read trial log "${path}": line ${i + 1} is not JSON`);
      }
      return;
    }
    if (isRunRecord(trial)) {
      runs.push(trial);
      return;
    }
    if (!isTrial(trial)) {
      throw new SyntaxError(`Cannot read trial log "${path}": line ${i + 1} is not a trial`);
    }
    trials.push(trial);
  });
  return { trials, runs };
}

const OUTCOMES: readonly string[] = ["ok", "invalid", "compile", "verify", "runtime"];

function isTrial(t: unknown): t is Trial {
  const x = t as Record<string, unknown>;
  return typeof t === "object" && t !== null && typeof x.generator === "number" &&
    typeof x.target === "string" && typeof x.config === "string" &&
    (x.bucket === null || typeof x.bucket === "number") &&
    OUTCOMES.includes(x.outcome as string) &&
    (x.outcome !== "ok" || x.bucket === null || typeof x.medianUs === "number");
}

/**
 * The time limit, in seconds, a trial failed by running past, or `undefined` if it did not
 * time out. Such a trial is worth retrying under a larger limit.
 *
 * @example
 * ```ts
 * import { timedOutAfter } from "./trial_log.ts";
 * const t = { generator: 1, target: "fused", bucket: 1, config: "x", outcome: "runtime" as const, reason: "timed out after 0.001 s (timing at m=1)", at: "" };
 * if (timedOutAfter(t) !== 0.001) throw new Error("the limit");
 * ```
 */
export function timedOutAfter(t: Trial): number | undefined {
  if (t.outcome !== "runtime") return undefined;
  const m = /^timed out after ([0-9.]+) s/.exec(t.reason ?? "");
  return m ? Number(m[1]) : undefined;
}

/** A trial that was timed: ok, at a bucket, with its median. */
export type TimedTrial = Trial & { outcome: "ok"; bucket: number; medianUs: number };

/**
 * Whether a trial was timed (ok, at a bucket, with a median): the trials that reports compare.
 *
 * @example
 * ```ts
 * import { isTimed } from "./trial_log.ts";
 * const t = { generator: 2, target: "fused", bucket: 64, config: "x", outcome: "ok" as const, medianUs: 9, at: "" };
 * if (!isTimed(t)) throw new Error("timed");
 * if (isTimed({ ...t, bucket: null }) || isTimed({ ...t, medianUs: undefined })) throw new Error("untimed");
 * ```
 */
export function isTimed(t: Trial): t is TimedTrial {
  return t.outcome === "ok" && t.medianUs !== undefined && t.bucket !== null;
}

function trialKey(generator: number, target: string, bucket: number | null, config: string) {
  return `${generator} ${target} ${bucket} ${config}`;
}

/**
 * Whether a trial failed by timing out in a submit it shared with other configs: any of them
 * may have been the slow one, so each is tried again alone.
 *
 * @example
 * ```ts
 * import { sharedTimeout } from "./trial_log.ts";
 * const t = { generator: 1, target: "fused", bucket: null, config: "x", outcome: "runtime" as const, reason: "timed out after 1 s (check at m=3, in one submit with 7 other configs)", at: "" };
 * if (!sharedTimeout(t)) throw new Error("shared");
 * if (sharedTimeout({ ...t, reason: "timed out after 1 s (check at m=3)" })) throw new Error("alone");
 * ```
 */
export function sharedTimeout(t: Trial): boolean {
  return timedOutAfter(t) !== undefined &&
    /, in one submit with \d+ other configs\)$/.test(t.reason!);
}

/** Appends trials to a log as they finish. */
export class TrialLog {
  #path: string;
  #trials: Trial[];
  #runs: RunRecord[];
  #dirReady = false;
  /** The latest trial by generator, target, bucket and config (see `find`). */
  #latest = new Map<string, Trial>();

  private constructor(path: string, trials: Trial[], runs: RunRecord[]) {
    this.#path = path;
    this.#trials = trials;
    this.#runs = runs;
    for (const t of trials) this.#index(t);
  }

  /**
   * Opens a log, reading what earlier runs left. A run killed mid-write leaves a last line
   * without its newline: that torn tail is cut off the file (its trial is lost and runs again),
   * so the next append starts a fresh line and the file stays readable. The folder is created
   * by the first append, so opening a log writes nothing unless it has a torn tail.
   *
   * Where only a gzipped copy (`<path>.gz`, as logs are committed) exists, the log is unpacked
   * from it to `path` first, so that a tune resumes from the committed trials and appends to
   * them; the `.gz` is left as it is.
   *
   * @throws {SyntaxError} If a line other than the torn tail is not JSON.
   */
  static async open(path: string): Promise<TrialLog> {
    const bytes = await readIfPresent(path) ?? await unpackGzipped(path);
    if (!bytes) return new TrialLog(path, [], []);
    const end = bytes.lastIndexOf(0x0a) + 1; // 0 when there is no newline at all
    const { trials, runs } = parseLog(new TextDecoder().decode(bytes.subarray(0, end)), path);
    if (end < bytes.length) await Deno.truncate(path, end);
    return new TrialLog(path, trials, runs);
  }

  /** Every trial read or written, oldest first. */
  get trials(): readonly Trial[] {
    return this.#trials;
  }

  /** The run records, oldest first. */
  get runs(): readonly RunRecord[] {
    return this.#runs;
  }

  /** Where the log lives. */
  get path(): string {
    return this.#path;
  }

  /** The latest trial of the current generator for a target, bucket and config, if any. */
  find(
    target: string,
    bucket: number | null,
    config: string,
    generator: number,
  ): Trial | undefined {
    return this.#latest.get(trialKey(generator, target, bucket, config));
  }

  #index(t: Trial): void {
    this.#latest.set(trialKey(t.generator, t.target, t.bucket, t.config), t);
  }

  /**
   * Appends one trial (one write call of one line); creates the log's folder if need be. The
   * write is synchronous (see `#write`); the promise is the observer's signature.
   */
  append(trial: Trial): Promise<void> {
    this.#trials.push(trial);
    this.#index(trial);
    this.#write(trial);
    return Promise.resolve();
  }

  /** Appends a run record (see {@linkcode RunRecord}), like {@linkcode append}. */
  appendRun(record: RunRecord): Promise<void> {
    this.#runs.push(record);
    this.#write(record);
    return Promise.resolve();
  }

  /**
   * Appends a line with one synchronous write: an awaited write waits for the event loop,
   * which GPU waits keep busy (measured on the H100: 9 ms per trial, 15 s of a 185 s tune).
   */
  #write(line: Trial | RunRecord): void {
    if (!this.#dirReady) {
      const dir = this.#path.replace(/[/\\][^/\\]*$/, "");
      if (dir !== this.#path && dir !== "") Deno.mkdirSync(dir, { recursive: true });
      this.#dirReady = true;
    }
    Deno.writeTextFileSync(this.#path, JSON.stringify(line) + "\n", { append: true });
  }

  /**
   * Adds a trial that another writer already appended to the file (the watchdog, see
   * watchdog.ts), so that `find()` sees it without writing it twice.
   */
  remember(trial: Trial): void {
    this.#trials.push(trial);
    this.#index(trial);
  }
}
