/**
 * The run's book of trials, between the search and its observers: it looks up what the trial
 * log already knows (so a finished trial is not run again), records each new trial in the log
 * and in the run's counts, and reports progress. No Deno API here: the log is reached through
 * {@linkcode TrialStore}, which `TrialLog` (trial_log.ts) implements with files.
 *
 * @module
 */
import { GENERATOR_VERSION } from "../cache/schema.ts";
import type { SettledTiming } from "./timing.ts";
import type { Outcome, Trial } from "./trial_log.ts";
import { sharedTimeout, timedOutAfter } from "./trial_log.ts";

/** What the book needs of a trial log (see `TrialLog` in trial_log.ts). */
export interface TrialStore {
  /** Where the log lives, for messages. */
  readonly path: string;
  /** Every trial read or written, oldest first. */
  readonly trials: readonly Trial[];
  /** The latest trial of a generator for a target, bucket and config, if any. */
  find(target: string, bucket: number | null, config: string, generator: number): Trial | undefined;
  /** Appends one trial. */
  append(trial: Trial): Promise<void>;
  /** Adds a trial another writer already appended (the watchdog), without writing it. */
  remember(trial: Trial): void;
}

/** Reported after each trial. */
export interface ProgressEvent {
  done: number;
  total: number;
  bucket: number;
  target: string;
  config: string;
  outcome: Outcome;
}

/** A timed config of a ranking. */
export interface Ranked {
  config: string;
  medianUs: number;
  noisy?: boolean;
}

/**
 * A trial of this generator, stamped now.
 *
 * @param bucket The m it ran at; null for a check (outcomes that do not depend on m).
 */
export function newTrial(
  target: string,
  bucket: number | null,
  config: string,
  outcome: Outcome,
  extra: Partial<SettledTiming> & { reason?: string },
): Trial {
  return {
    generator: GENERATOR_VERSION,
    target,
    bucket,
    config,
    outcome,
    ...extra,
    at: new Date().toISOString(),
  };
}

/** The trials of one run: lookups in the log, new trials, counts and progress. */
export class TrialBook {
  /** Count of trials by outcome in this run (resumed trials not counted). */
  readonly outcomes: Record<Outcome, number> = {
    ok: 0,
    invalid: 0,
    compile: 0,
    verify: 0,
    runtime: 0,
  };
  /** Trials taken from the log instead of run again. */
  resumed = 0;
  /** Trials the run expects, for progress; the loop corrects it as it learns more. */
  total = 0;
  #done = 0;
  #log: TrialStore;
  #limitMs: number;
  #onProgress?: (event: ProgressEvent) => void;

  /** Wall time spent writing trials to the log, milliseconds. */
  logMs = 0;

  /**
   * A book over a log, with nothing counted yet.
   *
   * @param log The trial log.
   * @param limitMs This run's time limit of one submit: a logged trial that timed out under a
   * smaller one is run again.
   * @param onProgress Called after each trial.
   */
  constructor(log: TrialStore, limitMs: number, onProgress?: (event: ProgressEvent) => void) {
    this.#log = log;
    this.#limitMs = limitMs;
    this.#onProgress = onProgress;
  }

  /** Where the log lives. */
  get path(): string {
    return this.#log.path;
  }

  /** Logs a trial and counts it; `logged` when the watchdog already wrote it to the file. */
  async record(t: Trial, logged = false): Promise<void> {
    if (t.bucket !== null || t.outcome !== "ok") this.outcomes[t.outcome]++; // a passed check is not a trial
    const t0 = performance.now();
    if (logged) this.#log.remember(t);
    else await this.#log.append(t);
    this.logMs += performance.now() - t0;
  }

  /** Adds a trial the watchdog already wrote to the file, without counting it as an outcome. */
  remember(t: Trial): void {
    this.#log.remember(t);
  }

  /** Reports one more trial done (run or resumed) to the progress observer. */
  report(bucket: number, target: string, config: string, outcome: Outcome): void {
    this.#done++;
    this.#onProgress?.({ done: this.#done, total: this.total, bucket, target, config, outcome });
  }

  /** The latest logged trial of this generator, final or not. */
  find(target: string, bucket: number | null, config: string): Trial | undefined {
    return this.#log.find(target, bucket, config, GENERATOR_VERSION);
  }

  /**
   * The logged trial of a config, if it is final: one that timed out under a smaller limit
   * than this run's, or in a submit shared with other configs, is tried again (alone, for the
   * latter: see {@linkcode alone}).
   */
  earlier(target: string, bucket: number | null, name: string): Trial | undefined {
    const t = this.find(target, bucket, name);
    if (t && sharedTimeout(t)) return undefined;
    const limit = t && timedOutAfter(t);
    return limit !== undefined && limit * 1000 < this.#limitMs ? undefined : t;
  }

  /** Whether a config's latest trial timed out in a shared submit: it is to be tried alone. */
  alone(target: string, bucket: number | null, name: string): boolean {
    const t = this.find(target, bucket, name);
    return t !== undefined && sharedTimeout(t);
  }

  /**
   * A stage's timings at m with every other valid config the log timed at m (earlier runs,
   * other strategies): the winner is the best of everything known.
   *
   * @param valid The names of the stage's valid configs at m.
   * @returns `ranking`, added to and sorted fastest first.
   */
  withLogged(ranking: Ranked[], target: string, valid: Set<string>, m: number): Ranked[] {
    const have = new Set(ranking.map((r) => r.config));
    const logged = new Set(
      this.#log.trials.filter((t) =>
        t.target === target && t.bucket === m && valid.has(t.config) && !have.has(t.config)
      ).map((t) => t.config),
    );
    for (const name of logged) {
      const t = this.earlier(target, m, name);
      if (t?.outcome === "ok") {
        ranking.push({ config: name, medianUs: t.medianUs!, noisy: t.noisy });
      }
    }
    return ranking.sort((a, b) => a.medianUs - b.medianUs);
  }
}
