/**
 * The GPU runner's checks (gpu_runner.ts): compiled kernels run on random non-zero inputs at
 * `CHECK_ROWS` rows, outputs poisoned first, against the float64 reference (verify.ts), up to
 * {@linkcode TIMING_CHUNK} kernels and every row count in one submit; a submit past the time
 * limit is checked again a kernel at a time. Failures are logged with their reason.
 *
 * @module
 */
import type { WeightDtype } from "../kernels/dtype.ts";
import type { CompiledKernel } from "../kernels/gpu.ts";
import type { DeviceGuard } from "./device_guard.ts";
import { DeviceLostError } from "./gpu_device.ts";
import type { Target } from "./targets.ts";
import type { TrialBook } from "./trial_book.ts";
import { newTrial } from "./trial_book.ts";
import type { Outcome } from "./trial_log.ts";
import type { CheckFailure } from "./verify.ts";
import type { CheckData } from "./verify.ts";
import { checkDataWithin, checkKernelsAt, destroyCheckData, makeCheckData } from "./verify.ts";
import { formatSeconds, TrialTimeoutError } from "./watchdog.ts";

/** Configs timed (or checked) per submit: a kill loses at most this many trials. */
export const TIMING_CHUNK = 8;

const CHECK_ROWS = [3, 67]; // ragged row counts: tails of every row block size

/**
 * Indices of kernels (or of anything that stands for one) in submits of up to
 * {@linkcode TIMING_CHUNK}; those `alone` says timed out in a shared submit before each get one
 * of their own.
 */
export function submitChunks<T>(kernels: T[], alone: (k: T) => boolean): number[][] {
  const single = [...kernels.keys()].filter((i) => alone(kernels[i]));
  const shared = [...kernels.keys()].filter((i) => !alone(kernels[i]));
  const chunks = single.map((i) => [i]);
  for (let at = 0; at < shared.length; at += TIMING_CHUNK) {
    chunks.push(shared.slice(at, at + TIMING_CHUNK));
  }
  return chunks;
}

/** Records configs' failures: on their target (so they are not tried again) and in the log. */
export class Failures {
  #book: TrialBook;
  #guard: DeviceGuard;

  constructor(book: TrialBook, guard: DeviceGuard) {
    this.#book = book;
    this.#guard = guard;
  }

  /** Logs a config's failure on its target and in the log (`logged` when the watchdog did). */
  async fail(
    target: Target,
    name: string,
    outcome: Outcome,
    reason: string,
    logged = false,
  ): Promise<undefined> {
    target.kernels.set(name, { outcome, reason });
    await this.#book.record(newTrial(target.name, null, name, outcome, { reason }), logged);
    return undefined;
  }

  /** Logs a thrown failure as `outcome`, unless it is the device's loss. */
  async failWith(target: Target, name: string, outcome: Outcome, e: unknown): Promise<undefined> {
    const error = await this.#guard.lostOr(e);
    if (error instanceof DeviceLostError) throw error;
    const logged = error instanceof TrialTimeoutError && error.logged;
    return await this.fail(target, name, outcome, (error as Error).message, logged);
  }
}

/** What {@linkcode GpuChecks} needs besides the device. */
export interface GpuChecksOptions {
  dtype: WeightDtype;
  /** Seeds the check data (plus m). */
  seed: number;
  /** Time limit of one check submit, milliseconds, as named in failed trials. */
  limitMs: number;
  guard: DeviceGuard;
  book: TrialBook;
  failures: Failures;
}

/** Checks compiled kernels (see the module documentation); owns the check data buffers. */
export class GpuChecks {
  #device: GPUDevice;
  #dtype: WeightDtype;
  #seed: number;
  #limitMs: number;
  #guard: DeviceGuard;
  #book: TrialBook;
  #failures: Failures;
  #checkData = new Map<string, CheckData>();
  /** Check data on the buffers of another target's (an unfused GEMM's on its stage's). */
  #views = new Map<string, CheckData>();

  constructor(device: GPUDevice, options: GpuChecksOptions) {
    this.#device = device;
    this.#dtype = options.dtype;
    this.#seed = options.seed;
    this.#limitMs = options.limitMs;
    this.#guard = options.guard;
    this.#book = options.book;
    this.#failures = options.failures;
  }

  /**
   * Checks compiled kernels at each of `CHECK_ROWS` rows, up to {@linkcode TIMING_CHUNK} in
   * one submit (every row count in it); failures are logged.
   *
   * @returns Per kernel, whether it passed.
   */
  async check(target: Target, kernels: CompiledKernel[]): Promise<boolean[]> {
    const passed = kernels.map(() => true);
    const chunks = submitChunks(kernels, (k) => this.#book.alone(target.name, null, k.name));
    for (const chunk of chunks) {
      const results = await this.#checkAt(target, chunk.map((i) => kernels[i]));
      chunk.forEach((i, j) => passed[i] = results[j]);
    }
    return passed;
  }

  /**
   * Checks kernels at each of `rowCounts` (default `CHECK_ROWS`) in one submit; failures are
   * logged.
   *
   * @returns Per kernel, whether it passed.
   */
  async #checkAt(
    target: Target,
    kernels: CompiledKernel[],
    rowCounts = CHECK_ROWS,
  ): Promise<boolean[]> {
    const sets = rowCounts.map((m) => this.#checkDataOf(target, m));
    const rows = rowCounts.join(", ");
    const others = kernels.length > 1
      ? `, in one submit with ${kernels.length - 1} other configs`
      : "";
    const timedOut = (name: string, seconds: number) =>
      newTrial(target.name, null, name, "runtime", {
        reason: `timed out after ${formatSeconds(seconds)} s (check at m=${rows}${others})`,
      });
    let failures: (CheckFailure | undefined)[];
    try {
      failures = await this.#guard.run(
        `the check of ${target.name} ${kernels.map((k) => k.name).join(", ")} at m=${rows}`,
        kernels.map((k) => timedOut(k.name, this.#limitMs / 1000)),
        () => checkKernelsAt(this.#device, kernels, sets),
      );
    } catch (e) {
      if (kernels.length > 1 && e instanceof TrialTimeoutError) {
        // Any of them may have been the slow one: each is checked again alone, a row count at
        // a time, so that a slow kernel runs past the limit once more, not once per count.
        if (e.logged) { for (const k of kernels) this.#book.remember(timedOut(k.name, e.seconds)); }
        const alone: boolean[] = [];
        for (const k of kernels) {
          let ok = true;
          for (const m of rowCounts) if (ok) ok = (await this.#checkAt(target, [k], [m]))[0];
          alone.push(ok);
        }
        return alone;
      }
      for (const k of kernels) {
        if (e instanceof TrialTimeoutError) {
          await this.#failures.fail(
            target,
            k.name,
            "runtime",
            timedOut(k.name, e.seconds).reason!,
            e.logged,
          );
        } else {
          await this.#failures.failWith(target, k.name, "runtime", e);
        }
      }
      return kernels.map(() => false);
    }
    // A lost device reads back garbage rather than failing, at times.
    if (failures.some((x) => x) && (await this.#guard.isLost())) throw this.#guard.lostError();
    const passed: boolean[] = [];
    for (const [i, k] of kernels.entries()) {
      const failed = failures[i];
      if (failed) {
        await this.#failures.fail(target, k.name, "verify", `at m=${failed.m}: ${failed.mismatch}`);
      }
      passed.push(!failed);
    }
    return passed;
  }

  /** Frees the check data. */
  destroy(): void {
    // A view's buffers, its scratch included, are its target's.
    for (const data of this.#checkData.values()) destroyCheckData(data);
  }

  #checkDataOf(target: Target, m: number): CheckData {
    const key = `${target.name}:${m}`;
    const known = this.#checkData.get(key) ?? this.#views.get(key);
    if (known) return known;
    if (target.within) {
      const view = checkDataWithin(this.#checkDataOf(target.within, m), target.shape);
      this.#views.set(key, view);
      return view;
    }
    const data = makeCheckData(this.#device, target.shape, this.#dtype, m, this.#seed + m);
    this.#checkData.set(key, data);
    return data;
  }
}
