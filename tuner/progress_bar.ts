/**
 * The tuner's progress bar on the terminal: an observer of the run's progress events.
 *
 * @module
 */
// @ts-types="npm:@types/cli-progress@3.11.6"
import cliProgress from "cli-progress";
import type { WeightDtype } from "../kernels/dtype.ts";
import type { ProgressEvent } from "./trial_book.ts";

/** A started progress bar: told each trial, stopped at the end or on an interrupt. */
export interface ProgressBar {
  /** Moves the bar to an event (a trial done, or the total changed). */
  onProgress(event: ProgressEvent): void;
  /** Stops the bar, leaving it on the terminal. */
  stop(): void;
}

/** Starts a bar for the tuning of one weight type: trials done, total, ETA and the last trial. */
export function startProgressBar(dtype: WeightDtype): ProgressBar {
  const bar = new cliProgress.SingleBar({
    format:
      `${dtype} [{bar}] {value}/{total} trials | ETA {eta_formatted} | m={bucket} {target} {config}`,
    hideCursor: true,
  }, cliProgress.Presets.shades_classic);
  bar.start(1, 0, { bucket: "", target: "", config: "" });
  return {
    onProgress: (e) => {
      bar.setTotal(e.total);
      bar.update(e.done, { bucket: e.bucket, target: e.target, config: e.config });
    },
    stop: () => bar.stop(),
  };
}
