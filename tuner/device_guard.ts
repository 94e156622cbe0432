/**
 * Guarding the GPU work of trials: a time limit on each check or timing submit (the watchdog,
 * injected as a {@linkcode TimeLimit}), and the device's loss told apart from a trial's failure.
 *
 * A lost device fails calls (a rejected mapAsync, "Parent device is lost") before its `lost`
 * promise settles: every GPU failure is first checked against it, so that no trial is logged as
 * failed because the device went away. No Deno API here.
 *
 * @module
 */
import { DeviceLostError } from "./gpu_device.ts";
import type { Trial } from "./trial_log.ts";
import { TrialTimeoutError } from "./watchdog.ts";

/**
 * Runs GPU work under a time limit, logging the trials at stake if it passes: `Watchdog`
 * (watchdog.ts) in Deno.
 */
export interface TimeLimit {
  /**
   * Runs `work` under the limit.
   *
   * @param what The trial(s) at stake, in words.
   * @param failures The trials to log if the limit passes.
   * @throws {TrialTimeoutError} If the work took longer than the limit; else what `work` throws.
   */
  run<T>(what: string, failures: Trial[], work: () => Promise<T>): Promise<T>;
  /** Stops guarding (ends the watchdog's worker). */
  close(): void;
}

/** The device's loss and the time limit, for the GPU work of trials. */
export class DeviceGuard {
  #device: GPUDevice;
  #logPath: string;
  #limit?: TimeLimit;
  #lostInfo: GPUDeviceLostInfo | undefined;

  /**
   * Watches the device for its loss.
   *
   * @param logPath The trial log, named in the {@linkcode DeviceLostError}.
   * @param limit The time limit; none for no limit.
   */
  constructor(device: GPUDevice, logPath: string, limit?: TimeLimit) {
    this.#device = device;
    this.#logPath = logPath;
    this.#limit = limit;
    device.lost.then((info) => (this.#lostInfo = info));
  }

  /** The error that ends a run on a lost device. */
  lostError(): DeviceLostError {
    return new DeviceLostError(this.#lostInfo?.message ?? "", this.#logPath);
  }

  /** Throws the {@linkcode DeviceLostError} if the device is known to be lost. */
  throwIfLost(): void {
    if (this.#lostInfo) throw this.lostError();
  }

  /** Whether the device is lost, waiting up to 100 ms for its `lost` promise to settle. */
  async isLost(): Promise<boolean> {
    return this.#lostInfo !== undefined ||
      await Promise.race([
        this.#device.lost.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 100)),
      ]);
  }

  /** What a GPU failure means: a DeviceLostError if the device is lost, else itself. */
  async lostOr(e: unknown): Promise<unknown> {
    return e instanceof DeviceLostError ? e : (await this.isLost()) ? this.lostError() : e;
  }

  /**
   * Runs GPU work of the trials `failures` would record, under the time limit.
   *
   * @throws {DeviceLostError} If the device is already lost.
   * @throws {TrialTimeoutError} If the work ran past the limit; else what `work` throws.
   */
  async run<T>(what: string, failures: Trial[], work: () => Promise<T>): Promise<T> {
    this.throwIfLost();
    if (!this.#limit) return await work();
    try {
      return await this.#limit.run(what, failures, work);
    } catch (e) {
      if (e instanceof TrialTimeoutError) {
        // Where waits do not block, the GPU may still be running it: let it finish first.
        await Promise.race([this.#device.queue.onSubmittedWorkDone(), this.#device.lost])
          .catch(() => {});
      }
      throw e;
    }
  }

  /** Stops the time limit's watchdog. */
  close(): void {
    this.#limit?.close();
  }
}
