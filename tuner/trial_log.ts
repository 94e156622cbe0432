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
  /** Why the trial failed. */
  reason?: string;
  at: string;
}

/** Reads a log; a torn last line (from a kill mid-write) is skipped, other bad lines throw. */
export async function readTrials(path: string): Promise<Trial[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const lines = text.split("\n");
  const trials: Trial[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    try {
      trials.push(JSON.parse(line));
    } catch {
      if (i < lines.length - 1 && lines.slice(i + 1).some((l) => l.trim() !== "")) {
        throw new SyntaxError(`Cannot read trial log "${path}": line ${i + 1} is not JSON`);
      }
    }
  });
  return trials;
}

/** Appends trials to a log as they finish. */
export class TrialLog {
  #path: string;
  #trials: Trial[];

  private constructor(path: string, trials: Trial[]) {
    this.#path = path;
    this.#trials = trials;
  }

  /** Opens a log, reading what earlier runs left; creates its folder. */
  static async open(path: string): Promise<TrialLog> {
    const dir = path.replace(/[/\\][^/\\]*$/, "");
    if (dir !== path) await Deno.mkdir(dir, { recursive: true });
    const trials = await readTrials(path);
    // A run killed mid-write leaves a line without its newline: end it so the next append
    // starts a fresh line.
    const text = await Deno.readTextFile(path).catch(() => "");
    if (text !== "" && !text.endsWith("\n")) await Deno.writeTextFile(path, "\n", { append: true });
    return new TrialLog(path, trials);
  }

  /** Every trial read or written, oldest first. */
  get trials(): readonly Trial[] {
    return this.#trials;
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
    for (let i = this.#trials.length - 1; i >= 0; i--) {
      const t = this.#trials[i];
      if (
        t.generator === generator && t.target === target && t.bucket === bucket &&
        t.config === config
      ) return t;
    }
    return undefined;
  }

  /** Appends one trial (one write call of one line). */
  async append(trial: Trial): Promise<void> {
    this.#trials.push(trial);
    await Deno.writeTextFile(this.#path, JSON.stringify(trial) + "\n", { append: true });
  }
}
