/**
 * Search strategies: given the candidates for one target and bucket, the order to try them.
 * The tuner stops when the budget runs out, so the order is the strategy. A new strategy is one
 * function of this signature added to `STRATEGIES`.
 *
 * @module
 */
import type { KernelConfig } from "../kernels/config.ts";
import { shuffled } from "./random.ts";

/** Orders candidates; `random` is the run's seeded generator. */
export type Strategy = (candidates: KernelConfig[], random: () => number) => KernelConfig[];

/** Every candidate, in the order the space lists them. */
export const exhaustive: Strategy = (candidates) => [...candidates];

/** Candidates in a seeded random order: with a trial budget, a uniform sample. */
export const randomOrder: Strategy = (candidates, random) => shuffled(candidates, random);

/** Strategies by their `--strategy` name. */
export const STRATEGIES: Record<string, Strategy> = { exhaustive, random: randomOrder };
