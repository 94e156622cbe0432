/**
 * Time limits on GPU work of a trial (a check or a timing submit).
 *
 * WebGPU cannot stop a dispatch once submitted, and Deno's `mapAsync` and
 * `onSubmittedWorkDone` block the JavaScript thread until the GPU is done (measured on Mesa
 * llvmpipe: no timer fires during the wait), so a timer on the same thread cannot end a wait
 * that runs long. So the limit is kept two ways:
 *
 * - after the wait, its duration is compared with the limit: a submit that took longer is a
 *   failed trial ("runtime", "timed out after N s"), and the search goes on;
 * - a worker thread (watchdog_worker.ts), whose timers run while the main thread is blocked,
 *   appends those failed trials to the log as soon as the limit passes and says so on
 *   stderr. A kernel that never ends (a GPU without a watchdog of its own) blocks the tuner
 *   for good; killed and rerun, it resumes past the kernel, which the log already records as
 *   failed.
 *
 * Where waits do not block (browsers), a timer also ends the wait at the limit; the caller
 * then waits for the queue to drain before its next submit.
 *
 * @module
 */
import type { Trial } from "./trial_log.ts";

/** GPU work of a trial ran past its time limit. */
export class TrialTimeoutError extends Error {
  /**
   * @param seconds The limit.
   * @param logged Whether the watchdog already appended the failed trials to the log.
   */
  constructor(readonly seconds: number, readonly logged: boolean) {
    super(`timed out after ${formatSeconds(seconds)} s`);
    this.name = "TrialTimeoutError";
  }
}

/** Seconds as short text: 60, 1.5, 0.25. */
export function formatSeconds(seconds: number): string {
  return String(Math.round(seconds * 1000) / 1000);
}

/** What the main thread posts to the worker. */
export type WatchdogMessage =
  | { kind: "init"; state: SharedArrayBuffer; logPath: string; pid: number }
  | { kind: "arm"; seq: number; deadline: number; what: string; seconds: number; lines: string };

/** Runs GPU work under a time limit; see the module documentation. */
export class Watchdog {
  readonly limitMs: number;
  #worker: Worker;
  /** [0]: the sequence number of the armed wait, its negative once the worker fired, or 0. */
  #state: Int32Array;
  #seq = 0;
  #logged = new Map<number, () => void>();

  /**
   * @param limitMs Time limit of one guarded wait.
   * @param logPath The trial log the worker appends timed-out trials to.
   */
  constructor(limitMs: number, logPath: string) {
    this.limitMs = limitMs;
    this.#state = new Int32Array(new SharedArrayBuffer(4));
    this.#worker = new Worker(new URL("./watchdog_worker.ts", import.meta.url), {
      type: "module",
    });
    this.#worker.onmessage = (e: MessageEvent<{ seq: number }>) => {
      this.#logged.get(e.data.seq)?.();
    };
    this.#post({
      kind: "init",
      state: this.#state.buffer as SharedArrayBuffer,
      logPath,
      pid: Deno.pid,
    });
  }

  #post(message: WatchdogMessage): void {
    this.#worker.postMessage(message);
  }

  /**
   * Runs `work` under the limit.
   *
   * @param what The trial(s) at stake, in words, for the worker's notice.
   * @param failures The trials to log if the limit passes ("runtime", "timed out after N s").
   * @throws {TrialTimeoutError} If the work took longer than the limit (`logged` says whether
   * the worker wrote `failures` to the log); else what `work` throws.
   */
  async run<T>(what: string, failures: Trial[], work: () => Promise<T>): Promise<T> {
    const seq = ++this.#seq;
    const seconds = this.limitMs / 1000;
    const started = Date.now();
    const logged = new Promise<void>((resolve) => this.#logged.set(seq, resolve));
    Atomics.store(this.#state, 0, seq);
    this.#post({
      kind: "arm",
      seq,
      deadline: started + this.limitMs,
      what,
      seconds,
      lines: failures.map((t) => JSON.stringify(t) + "\n").join(""),
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<typeof LATE>((resolve) => {
      timer = setTimeout(() => resolve(LATE), this.limitMs);
    });
    let result: T | typeof LATE = LATE;
    let error: unknown;
    let failed = false;
    try {
      result = await Promise.race([work(), late]);
    } catch (e) {
      failed = true;
      error = e;
    } finally {
      clearTimeout(timer);
    }
    // Disarm; if the worker fired first, it has written (or is writing) the failures.
    const fired = Atomics.compareExchange(this.#state, 0, seq, 0) === -seq;
    if (fired) {
      await logged;
      Atomics.store(this.#state, 0, 0);
    }
    this.#logged.delete(seq);
    if (fired) throw new TrialTimeoutError(seconds, true);
    if (failed) throw error;
    if (result === LATE || Date.now() - started > this.limitMs) {
      throw new TrialTimeoutError(seconds, false);
    }
    return result as T;
  }

  /** Stops the worker. */
  close(): void {
    this.#worker.terminate();
  }
}

const LATE = Symbol("late");
