/**
 * The GPU runner's timings (gpu_runner.ts): checked kernels, of one target or of several, timed
 * up to `TIMING_CHUNK` (gpu_checks.ts) in one submit under the time limit; a timing too noisy
 * to trust is measured once more with twice the repeats, and a submit that ran past the limit
 * is timed again a kernel at a time. Each trial is logged and reported as it finishes. No Deno
 * API here.
 *
 * @module
 */
import type { CompiledKernel, KernelBindGroup } from "../kernels/gpu.ts";
import { dispatchKernel } from "../kernels/gpu.ts";
import type { DeviceGuard } from "./device_guard.ts";
import { DeviceLostError } from "./gpu_device.ts";
import { submitChunks } from "./gpu_checks.ts";
import type { TimedItem, Timing, TimingOptions } from "./timing.ts";
import { settleTiming, timeItems, tooNoisy } from "./timing.ts";
import type { Ranked, TrialBook } from "./trial_book.ts";
import { newTrial } from "./trial_book.ts";
import { formatSeconds, TrialTimeoutError } from "./watchdog.ts";

/** One kernel to time: the target its trial is logged under, and its bind groups at m. */
export interface TimedEntry {
  logTarget: string;
  kernel: CompiledKernel;
  /** A bind group per weight copy; the repeats rotate through them. */
  groups: KernelBindGroup[];
  /** Where its ok timing goes. */
  into: Ranked[];
}

/** What {@linkcode ChunkTimer} needs besides the device. */
export interface ChunkTimerOptions {
  book: TrialBook;
  guard: DeviceGuard;
  timing: TimingOptions;
  /** Time limit of one submit, milliseconds, as named in failed trials. */
  limitMs: number;
  /** Runs GPU work, counting its wall time as timing. */
  timed: <T>(work: () => Promise<T>) => Promise<T>;
}

/** A timing's failure, to log for each kernel of its submit. */
interface Failed {
  reason: string;
  /** Whether the watchdog already wrote the failed trials to the log. */
  logged: boolean;
  /** Whether it ran past the time limit. */
  timedOut?: boolean;
}

/** Times checked kernels in shared submits (see the module documentation). */
export class ChunkTimer {
  #device: GPUDevice;
  #options: ChunkTimerOptions;

  constructor(device: GPUDevice, options: ChunkTimerOptions) {
    this.#device = device;
    this.#options = options;
  }

  /**
   * Times the entries at m, up to `TIMING_CHUNK` (gpu_checks.ts) per submit whatever their
   * target (one whose last trial timed out in a shared submit gets a submit of its own); each ok
   * timing goes to its entry's `into`.
   */
  async timeAll(entries: TimedEntry[], m: number): Promise<void> {
    const { book } = this.#options;
    const alone = (e: TimedEntry) => book.alone(e.logTarget, m, e.kernel.name);
    for (const chunk of submitChunks(entries, alone)) {
      await this.#timeChunk(chunk.map((i) => entries[i]), m);
    }
  }

  /** Times one submit, then measures again those too noisy to trust. */
  async #timeChunk(chunk: TimedEntry[], m: number): Promise<void> {
    const { book, timing } = this.#options;
    const timings = await this.#timeOrFail(chunk, m);
    if (!Array.isArray(timings) && timings.timedOut && chunk.length > 1) {
      // Any of them may have been the slow one: each is timed again alone.
      if (timings.logged) {
        for (const e of chunk) book.remember(this.#failure(e, m, timings.reason));
      }
      for (const e of chunk) await this.#timeChunk([e], m);
      return;
    }
    if (!Array.isArray(timings)) {
      for (const e of chunk) await this.#failed(e, m, timings);
      return;
    }
    for (const [i, entry] of chunk.entries()) {
      const first = timings[i];
      let again: Timing | undefined;
      if (tooNoisy(first)) {
        // Too noisy to trust: measure once more, with twice the repeats.
        const repeat = await this.#timeOrFail([entry], m, {
          ...timing,
          repeats: timing.repeats * 2,
        });
        if (!Array.isArray(repeat)) {
          await this.#failed(entry, m, repeat);
          continue;
        }
        again = repeat[0];
      }
      const t = settleTiming(first, again);
      const { logTarget, kernel } = entry;
      await book.record(newTrial(logTarget, m, kernel.name, "ok", t));
      book.report(m, logTarget, kernel.name, "ok");
      entry.into.push({ config: kernel.name, medianUs: t.medianUs, noisy: t.noisy });
    }
  }

  #failure(entry: TimedEntry, m: number, reason: string) {
    return newTrial(entry.logTarget, m, entry.kernel.name, "runtime", { reason });
  }

  async #failed(entry: TimedEntry, m: number, failed: Failed): Promise<void> {
    const { book } = this.#options;
    await book.record(this.#failure(entry, m, failed.reason), failed.logged);
    book.report(m, entry.logTarget, entry.kernel.name, "runtime");
  }

  /**
   * Times kernels at m in one submit under the time limit.
   *
   * @returns Their timings, or the failure to log for each (all of them: one submit).
   */
  async #timeOrFail(
    chunk: TimedEntry[],
    m: number,
    timing = this.#options.timing,
  ): Promise<Timing[] | Failed> {
    const { guard, limitMs, timed } = this.#options;
    const reason = (seconds: number) =>
      `timed out after ${formatSeconds(seconds)} s (timing at m=${m}${
        chunk.length > 1 ? `, in one submit with ${chunk.length - 1} other configs` : ""
      })`;
    const named = chunk.map((e) => `${e.logTarget} ${e.kernel.name}`).join(", ");
    try {
      return await guard.run(
        `the timing of ${named} at m=${m}`,
        chunk.map((e) => this.#failure(e, m, reason(limitMs / 1000))),
        () => timed(() => timeItems(this.#device, chunk.map((e) => itemOf(e, m)), timing)),
      );
    } catch (e) {
      if (e instanceof TrialTimeoutError) {
        return { reason: reason(e.seconds), logged: e.logged, timedOut: true };
      }
      const error = await guard.lostOr(e);
      if (error instanceof DeviceLostError) throw error;
      return { reason: (error as Error).message, logged: false };
    }
  }
}

/** A timed item that runs an entry's kernel at m, on the next weight copy each repeat. */
function itemOf({ kernel, groups }: TimedEntry, m: number): TimedItem {
  return {
    encode: (pass: GPUComputePassEncoder, rep: number) =>
      dispatchKernel(pass, kernel, groups[rep % groups.length], m),
  };
}
