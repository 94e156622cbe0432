/**
 * Search strategies, each one function of the `Strategy` signature (search.ts):
 * - `exhaustive`: every candidate, in the space's order;
 * - `random`: a seeded uniform sample;
 * - `local`: the hints (neighbouring buckets' winners) and a few random configs first, then
 *   always the untried one-knob neighbours of the best config so far (next best when those are
 *   used up), and a random restart when no evaluated config has an untried neighbour.
 *
 * @module
 */
import type { KernelConfig } from "../kernels/config.ts";
import { configName } from "../kernels/config.ts";
import { shuffled } from "./random.ts";
import type { Evaluation, Search, Strategy } from "./search.ts";

/** A search that hands out a fixed order. */
function inOrder(order: readonly KernelConfig[]): Search {
  let next = 0;
  return {
    ask: (n) => order.slice(next, next += n),
    tell: () => {},
  };
}

/** Every candidate, in the order the space lists them. */
export const exhaustive: Strategy = ({ candidates }) => inOrder(candidates);

/** Candidates in a seeded random order: with a trial budget, a uniform sample. */
export const random: Strategy = ({ candidates, random }) => inOrder(shuffled(candidates, random));

/** Random configs the local search starts from, besides the hints. */
const LOCAL_START = 4;

/**
 * Whether two configs differ in exactly one knob, by one step in that knob's sorted values
 * (`steps`), or in a boolean knob.
 */
function neighbours(a: KernelConfig, b: KernelConfig, steps: Map<string, number[]>): boolean {
  if (a.family !== b.family) return false;
  let differ = 0;
  for (const [knob, value] of Object.entries(a)) {
    const other = (b as unknown as Record<string, unknown>)[knob];
    if (other === value) continue;
    if (++differ > 1) return false;
    if (typeof value === "boolean") continue;
    const values = steps.get(`${a.family}.${knob}`)!;
    if (Math.abs(values.indexOf(value as number) - values.indexOf(other as number)) !== 1) {
      return false;
    }
  }
  return differ === 1;
}

/** The sorted values of every numeric knob among the candidates, by "family.knob". */
function knobSteps(candidates: readonly KernelConfig[]): Map<string, number[]> {
  const steps = new Map<string, Set<number>>();
  for (const c of candidates) {
    for (const [knob, value] of Object.entries(c)) {
      if (typeof value !== "number") continue;
      const key = `${c.family}.${knob}`;
      if (!steps.has(key)) steps.set(key, new Set());
      steps.get(key)!.add(value);
    }
  }
  return new Map([...steps].map(([k, v]) => [k, [...v].sort((a, b) => a - b)]));
}

/** Local search over one-knob neighbours of the best configs so far (see the module doc). */
export const local: Strategy = ({ candidates, hints, random }) => {
  const steps = knobSteps(candidates);
  const order = shuffled(candidates, random); // restarts, and ties between neighbours
  const byName = new Map(candidates.map((c) => [configName(c), c]));
  const asked = new Set<string>();
  const timed: Evaluation[] = [];
  const start = [
    ...hints.filter((h) => byName.has(configName(h))).map((h) => byName.get(configName(h))!),
    ...order.slice(0, LOCAL_START),
  ];
  const untried = (c: KernelConfig) => !asked.has(configName(c));
  const next = (): KernelConfig | undefined => {
    const first = start.find(untried);
    if (first) return first;
    for (const best of [...timed].sort((a, b) => a.medianUs! - b.medianUs!)) {
      const near = order.find((c) => untried(c) && neighbours(best.config, c, steps));
      if (near) return near;
    }
    return order.find(untried);
  };
  return {
    ask(n) {
      const out: KernelConfig[] = [];
      while (out.length < n) {
        const c = next();
        if (!c) break;
        asked.add(configName(c));
        out.push(c);
      }
      return out;
    },
    tell(results) {
      timed.push(...results.filter((r) => r.medianUs !== null));
    },
  };
};

/** Strategies by their `--strategy` name. */
export const STRATEGIES: Record<string, Strategy> = { exhaustive, random, local };
