/**
 * Search strategies, each one function of the `Strategy` signature (search.ts):
 * - `exhaustive`: every candidate, in the space's order;
 * - `random`: a seeded uniform sample;
 * - `local`: the hints (neighbouring buckets' winners) and a few random configs first, then
 *   always the untried one-knob neighbours of the best config so far (next best when those are
 *   used up), and a random restart when no evaluated config has an untried neighbour;
 * - `guided` (the default): like `local`, but within two knob steps of the best, ordered by a
 *   nearest-neighbour prediction of their time.
 *
 * @module
 */
import type { KernelConfig } from "../kernels/config.ts";
import { configName } from "../kernels/config.ts";
import { shuffled } from "./random.ts";
import type { Evaluation, Search, SearchContext, Strategy } from "./search.ts";

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

/** Random configs the local searches start from, besides the hints. */
const START = 4;

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

/**
 * Knob distance: steps apart in each numeric knob's sorted values, summed, plus 1 for each
 * differing boolean knob; configs of different families are far apart.
 */
function distance(a: KernelConfig, b: KernelConfig, steps: Map<string, number[]>): number {
  if (a.family !== b.family) return 100;
  let d = 0;
  for (const [knob, value] of Object.entries(a)) {
    const other = (b as unknown as Record<string, unknown>)[knob];
    if (other === value) continue;
    if (typeof value === "boolean") d += 1;
    else {
      const values = steps.get(`${a.family}.${knob}`)!;
      d += Math.abs(values.indexOf(value as number) - values.indexOf(other as number));
    }
  }
  return d;
}

/** What a local search's `pick` sees. */
interface Around {
  /** An evaluated config, best first, and the untried configs within reach of it. */
  best: Evaluation;
  near: KernelConfig[];
  /** Every successful evaluation so far. */
  timed: readonly Evaluation[];
  steps: Map<string, number[]>;
}

/**
 * A search that asks the hints and a few random configs first, then, for the best config so
 * far (the next best when it has nothing left within `reach` knob steps), the config `pick`
 * chooses among the untried ones in reach; a random untried config when no evaluated config
 * has any left.
 */
function aroundTheBest(
  { candidates, hints, random }: SearchContext,
  reach: number,
  pick: (around: Around) => KernelConfig,
): Search {
  const steps = knobSteps(candidates);
  const order = shuffled(candidates, random); // restarts, and ties
  const byName = new Map(candidates.map((c) => [configName(c), c]));
  const asked = new Set<string>();
  const timed: Evaluation[] = [];
  const start = [
    ...hints.filter((h) => byName.has(configName(h))).map((h) => byName.get(configName(h))!),
    ...order.slice(0, START),
  ];
  const untried = (c: KernelConfig) => !asked.has(configName(c));
  const next = (): KernelConfig | undefined => {
    const first = start.find(untried);
    if (first) return first;
    for (const best of [...timed].sort((a, b) => a.medianUs! - b.medianUs!)) {
      const near = order.filter((c) => untried(c) && distance(best.config, c, steps) <= reach);
      if (near.length > 0) return pick({ best, near, timed, steps });
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
}

/** Local search over one-knob neighbours of the best configs so far, in random order. */
export const local: Strategy = (context) => aroundTheBest(context, 1, ({ near }) => near[0]);

/** Evaluated configs nearest to a candidate that its predicted time averages over. */
const NEAREST = 2;
/** How much each knob step away from an evaluated config raises the prediction. */
const STEP_PENALTY = 0.25;

/**
 * A config's time predicted from its nearest evaluated configs: their mean time, each raised
 * by `STEP_PENALTY` per knob step away.
 */
function predict(c: KernelConfig, timed: readonly Evaluation[], steps: Map<string, number[]>) {
  const near = timed.map((t) => ({ d: distance(c, t.config, steps), us: t.medianUs! }))
    .sort((x, y) => x.d - y.d || x.us - y.us).slice(0, NEAREST);
  return near.reduce((s, n) => s + n.us * (1 + n.d * STEP_PENALTY), 0) / near.length;
}

/**
 * Guided local search: within two knob steps of the best config so far, the untried config
 * predicted fastest. Chosen by replay of the H100's exhaustive logs (README).
 */
export const guided: Strategy = (context) =>
  aroundTheBest(
    context,
    2,
    ({ near, timed, steps }) =>
      near.map((c) => ({ c, p: predict(c, timed, steps) })).sort((x, y) => x.p - y.p)[0].c,
  );

/** Strategies by their `--strategy` name. */
export const STRATEGIES: Record<string, Strategy> = { exhaustive, random, local, guided };
