/**
 * The search: a strategy asks for configs to evaluate and is told every result; a runner
 * evaluates them (on the GPU, or replayed from a log); the loop that joins them stops at the
 * budget. No Deno API here, so the same search can run in a page.
 *
 * @module
 */
import type { KernelConfig } from "../kernels/config.ts";

/** One evaluated config: its median time, or null where it failed (compile, check, timing). */
export interface Evaluation {
  config: KernelConfig;
  name: string;
  medianUs: number | null;
}

/** What a strategy searches: one stage at one bucket. */
export interface SearchContext {
  /** The valid configs, in the space's order. */
  candidates: readonly KernelConfig[];
  /** Configs worth trying first, for example the winners of neighbouring buckets. */
  hints: readonly KernelConfig[];
  /** The run's seeded generator for this stage and bucket. */
  random: () => number;
}

/** A strategy at work on one stage and bucket: it asks, and is told every result. */
export interface Search {
  /** Up to `n` configs not asked before; fewer (or none) when it has nothing more to try. */
  ask(n: number): KernelConfig[];
  /** The results of configs it asked for. */
  tell(results: readonly Evaluation[]): void;
}

/** Makes a strategy's search of one stage and bucket. */
export type Strategy = (context: SearchContext) => Search;

/** Evaluates configs, all or in part (a batch shares one GPU submit). */
export type Evaluate = (configs: KernelConfig[]) => Promise<Evaluation[]>;

/**
 * Runs a strategy until `budget` configs are evaluated or it has nothing more to try.
 *
 * @param batch Configs asked for at a time.
 * @returns Every evaluation, in the order they were made.
 */
export async function runSearch(
  strategy: Strategy,
  context: SearchContext,
  evaluate: Evaluate,
  budget: number,
  batch = 8,
): Promise<Evaluation[]> {
  const search = strategy(context);
  const done: Evaluation[] = [];
  while (done.length < budget) {
    const asked = search.ask(Math.min(batch, budget - done.length));
    if (asked.length === 0) break;
    const results = await evaluate(asked);
    if (results.length === 0) break; // the runner stopped (its time budget ran out)
    search.tell(results);
    done.push(...results);
  }
  return done;
}
